"""The pure shape functions: a golden table derived by hand, and PyTorch as the oracle."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec import shapes

# (L, k, s, p_total, d) -> floor((L + p - d(k-1) - 1) / s) + 1, worked by hand
CONV_GOLDEN = [
    ((32, 5, 1, 0, 1), 28),     # LeNet conv1
    ((224, 11, 4, 4, 1), 55),   # AlexNet conv1: (224 + 4 - 10 - 1) // 4 + 1 = 55
    ((640, 5, 1, 4, 1), 640),   # seed 000, padding 2 each side
    ((7, 3, 2, 2, 1), 4),
    ((10, 3, 1, 0, 2), 6),      # dilated: span 5
]


@pytest.mark.parametrize("args, expected", CONV_GOLDEN)
def test_conv_output_length_golden(args, expected):
    assert shapes.conv_output_length(*args) == expected


@pytest.mark.parametrize("length, kernel, stride, expected", [
    (224, 7, 2, (2, 3)),   # out 112: total (111*2 + 7 - 224) = 5 -> 2 left, 3 right
    (5, 3, 1, (1, 1)),
    (4, 2, 1, (0, 1)),     # the odd pixel goes right
    (8, 1, 2, (0, 0)),
])
def test_same_padding_golden(length, kernel, stride, expected):
    assert shapes.same_padding(length, kernel, stride) == expected


def test_receptive_field_recurrences_alexnet_golden():
    """AlexNet features by hand: (k, s) = (11,4) (3,2) (5,1) (3,2) (3,1) (3,1) (3,1) (3,2)."""
    layers = [(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)]
    expected = [11, 19, 51, 67, 99, 131, 163, 195]
    r, j, got = 1, 1, []
    for k, s in layers:
        r, j = shapes.rf_size(r, j, k), shapes.rf_jump(j, s)
        got.append(r)
    assert got == expected
    assert j == 4 * 2 * 2 * 2


def test_rf_padding_accumulates_in_input_pixels():
    # conv k3 p1 s2, then conv k3 p1: P = 1 + 1*2 = 3
    assert shapes.rf_padding(shapes.rf_padding(0, 1, 1), 2, 1) == 3


@settings(max_examples=150, deadline=None)
@given(length=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 4),
       pad=st.integers(0, 3), dilation=st.integers(1, 3))
def test_conv_output_length_equals_pytorch(length, kernel, stride, pad, dilation):
    span = dilation * (kernel - 1) + 1
    if length + 2 * pad < span:
        return
    conv = torch.nn.Conv1d(1, 1, kernel, stride, pad, dilation)
    out = conv(torch.zeros(1, 1, length)).shape[-1]
    assert shapes.conv_output_length(length, kernel, stride, 2 * pad, dilation) == out


@settings(max_examples=150, deadline=None)
@given(length=st.integers(1, 40), kernel=st.integers(1, 6), stride=st.integers(1, 4),
       pad=st.integers(0, 3), ceil=st.booleans())
def test_pool_output_length_equals_pytorch(length, kernel, stride, pad, ceil):
    if pad * 2 > kernel or length + 2 * pad < kernel:
        return
    pool = torch.nn.MaxPool1d(kernel, stride, pad, ceil_mode=ceil)
    out = pool(torch.zeros(1, 1, length)).shape[-1]
    assert shapes.pool_output_length(length, kernel, stride, pad, 1, ceil) == out


@settings(max_examples=100, deadline=None)
@given(length=st.integers(1, 12), kernel=st.integers(1, 5), stride=st.integers(1, 3),
       pad=st.integers(0, 2), dilation=st.integers(1, 2), extra=st.integers(0, 2))
def test_transposed_output_length_equals_pytorch(length, kernel, stride, pad, dilation, extra):
    out_pad = min(extra, max(stride, dilation) - 1)
    expected = shapes.transposed_output_length(length, kernel, stride, pad, out_pad, dilation)
    if expected < 1:
        return
    conv = torch.nn.ConvTranspose1d(1, 1, kernel, stride, pad, out_pad, dilation=dilation)
    assert conv(torch.zeros(1, 1, length)).shape[-1] == expected


@settings(max_examples=100, deadline=None)
@given(length=st.integers(1, 40), kernel=st.integers(1, 7), stride=st.integers(1, 4),
       dilation=st.integers(1, 3))
def test_same_padding_gives_ceil(length, kernel, stride, dilation):
    lo, hi = shapes.same_padding(length, kernel, stride, dilation)
    assert 0 <= hi - lo <= 1
    assert shapes.conv_output_length(length, kernel, stride, lo + hi, dilation) == -(-length // stride)
