"""The lecture notes' worked examples, run through archspec-compiled models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import archspec


def run(spec: str, x) -> torch.Tensor:
    model = archspec.compile(archspec.loads(spec))
    with torch.no_grad():
        return model(torch.tensor(x, dtype=torch.float32).unsqueeze(0))[0]


def test_seed_000_conv1d_is_numpy_convolve():
    spec = """
name: conv1d_seed000
input: [1, 4]
layers:
  - {type: conv, out_channels: 1, kernel_size: 3, padding: 2, bias: false, weight: [3, 2, 1]}
"""
    out = run(spec, [[4, 5, 6, 7]])
    expected = np.convolve([1, 2, 3], [4, 5, 6, 7])
    assert out[0].tolist() == [4, 13, 28, 34, 32, 21] == expected.tolist()


def test_seed_002_transposed_convolution():
    spec = """
name: upconv_seed002
input: [1, 2, 2]
layers:
  - {type: conv_transpose, out_channels: 1, kernel_size: 2, bias: false,
     weight: [[0, 1], [2, 3]]}
"""
    out = run(spec, [[[0, 1], [2, 3]]])
    assert out[0].tolist() == [[0, 0, 1], [0, 4, 6], [4, 12, 9]]


@pytest.mark.parametrize("padding, shape", [(0, (12, 636, 476)), (2, (12, 640, 480))])
def test_seed_000_conv_on_640x480(padding, shape):
    a = archspec.analyze(archspec.loads(f"""
name: photo
input: [3, 640, 480]
layers:
  - {{type: conv, out_channels: 12, kernel_size: 5, padding: {padding}}}
  - {{type: max_pool, kernel_size: 2}}
"""))
    conv, pool = a.layers.values()
    assert conv.output_shape == shape
    assert pool.output_shape == (12, shape[1] // 2, shape[2] // 2)
    if padding == 2:
        assert pool.output_shape == (12, 320, 240)


def test_seed_001_conv_weight_and_bias_shapes():
    model = archspec.compile(archspec.loads("""
name: c
input: [3, 32, 32]
layers: [{type: conv, out_channels: 16, kernel_size: 5}]
"""))
    assert tuple(model.conv1.weight.shape) == (16, 3, 5, 5)
    assert tuple(model.conv1.bias.shape) == (16,)


@pytest.mark.parametrize("size, kernel, stride", [(7, 3, 2), (8, 3, 2), (224, 7, 2), (10, 4, 3),
                                                  (5, 1, 2), (9, 5, 4)])
def test_same_padding_with_stride_gives_ceil(size, kernel, stride):
    """PyTorch refuses padding='same' with stride > 1; archspec gives ceil(size / stride)."""
    spec = f"""
name: same
input: [2, {size}, {size + 1}]
layers: [{{type: conv, out_channels: 3, kernel_size: {kernel}, stride: {stride}, padding: same}},
         {{type: max_pool, kernel_size: {kernel}, stride: {stride}, padding: same}}]
"""
    a = archspec.analyze(archspec.loads(spec))
    conv = a.layers["conv1"]
    expected = (-(-size // stride), -(-(size + 1) // stride))
    assert conv.output_shape == (3,) + expected
    model = archspec.compile(a.network)
    assert tuple(model(torch.randn(1, 2, size, size + 1)).shape[2:]) == \
        (-(-expected[0] // stride), -(-expected[1] // stride))


def test_same_padding_puts_the_extra_pixel_bottom_right():
    """Input 4, kernel 2, stride 1: one pixel of padding in all, on the right (TensorFlow's rule)."""
    spec = """
name: same_even
input: [1, 1, 4]
layers: [{type: conv, out_channels: 1, kernel_size: [1, 2], padding: same, bias: false,
          weight: [[1, 1]]}]
"""
    out = run(spec, [[[1, 2, 3, 4]]])
    assert out[0, 0].tolist() == [3, 5, 7, 4]


@pytest.mark.parametrize("include, expected", [(True, [1, 1, 1, 0.5]), (False, [1, 1, 1, 1])])
def test_uneven_same_avg_pool_honours_count_include_pad(include, expected):
    """Kernel 2 at stride 1 on 4 values: one zero of padding on the right. Counted, the last
    window averages (1 + 0) / 2; not counted, it averages the single real value."""
    spec = f"""
name: same_avg
input: [1, 4]
layers: [{{type: avg_pool, kernel_size: 2, stride: 1, padding: same,
          count_include_pad: {str(include).lower()}}}]
"""
    assert run(spec, [[1, 1, 1, 1]])[0].tolist() == expected


def test_auto_names_of_types_ending_in_a_digit():
    a = archspec.analyze(archspec.loads("name: n\ninput: [2, 4]\nlayers: [relu6, relu6]\n"))
    assert list(a.layers) == ["relu6_1", "relu6_2"]
