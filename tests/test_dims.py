"""`dim` counts as in PyTorch (0 is the batch, 1 the channels, negative from the end), checked
against torch itself running the compiled model; a dim naming the batch is a located error."""
from __future__ import annotations

import pytest
import torch

import archspec
from archspec.errors import SpecError


def two_maps(merge: str) -> str:
    return f"""name: dims
input: [8, 16, 16]
layers:
  - {{type: identity, name: a}}
  - {{type: relu, name: b, from: input}}
  - {merge}
"""


@pytest.mark.parametrize("dim, shape", [(None, (16, 16, 16)), (1, (16, 16, 16)),
                                        (2, (8, 32, 16)), (3, (8, 16, 32)), (-1, (8, 16, 32)),
                                        (-2, (8, 32, 16)), (-3, (16, 16, 16))])
def test_concat_joins_along_pytorchs_dim(dim, shape):
    extra = "" if dim is None else f", dim: {dim}"
    spec = two_maps(f"{{type: concat, from: [a, b]{extra}}}")
    analysis = archspec.analyze(archspec.loads(spec))
    assert analysis.output_shapes == [shape]
    x = torch.randn(3, 8, 16, 16)
    out = archspec.compile(analysis.network)(x)
    expected = torch.cat([x, torch.relu(x)], dim=1 if dim is None else dim)
    assert torch.equal(out, expected) and tuple(out.shape[1:]) == shape


@pytest.mark.parametrize("merge", ["branches", "inception"])
def test_branches_concat_dim_counts_as_in_pytorch(merge):
    spec = f"""name: dims
input: [4, 6, 10]
layers:
  - {{type: {merge}, dim: 3, branches: [[identity], [relu]]}}
"""
    analysis = archspec.analyze(archspec.loads(spec))
    assert analysis.output_shapes == [(4, 6, 20)]
    x = torch.randn(2, 4, 6, 10)
    assert torch.equal(archspec.compile(analysis.network)(x), torch.cat([x, x.relu()], 3))


@pytest.mark.parametrize("kind, fn", [("softmax", torch.softmax), ("log_softmax", torch.log_softmax)])
@pytest.mark.parametrize("input_shape, dim", [([10], None), ([10], 1), ([10], -1),
                                              ([4, 5, 6], None), ([4, 5, 6], 2), ([4, 5, 6], 3),
                                              ([4, 5, 6], -1), ([4, 5, 6], -3)])
def test_softmax_dims_count_as_in_pytorch(kind, fn, input_shape, dim):
    extra = "" if dim is None else f", dim: {dim}"
    spec = f"name: s\ninput: {input_shape}\nlayers:\n  - {{type: {kind}{extra}}}\n"
    x = torch.randn(3, *input_shape)
    out = archspec.compile(archspec.loads(spec))(x)
    assert torch.allclose(out, fn(x, 1 if dim is None else dim), atol=1e-6)


@pytest.mark.parametrize("layer, column, message", [
    ("{type: concat, from: [a, b], dim: 0}", 39,
     "concat along dim 0, the batch dim, would change the batch size"),
    ("{type: concat, from: [a, b], dim: -4}", 39,
     "concat along dim -4, the batch dim, would change the batch size"),
    ("{type: concat, from: [a, b], dim: 4}", 39,
     "dim 4 is out of range for a batch of 8x16x16 (4 dims with the batch)"),
    ("{type: softmax, from: a, dim: 0}", 35,
     "softmax along dim 0, the batch dim, would mix the samples of a batch"),
    ("{type: log_softmax, from: b, dim: -4}", 39,
     "log_softmax along dim -4, the batch dim, would mix the samples of a batch"),
    ("{type: branches, dim: 0, branches: [[identity], [relu]]}", 27,
     "concat along dim 0, the batch dim, would change the batch size"),
])
def test_a_dim_naming_the_batch_is_a_located_error(layer, column, message):
    with pytest.raises(SpecError) as info:
        archspec.analyze(archspec.loads(two_maps(layer)))
    [d] = info.value.diagnostics
    assert d.message == message
    assert (d.line, d.column) == (6, column)
    assert "0 is the batch, 1 the channels" in d.hint
