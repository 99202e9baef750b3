"""Shape arithmetic as small pure functions, shared by validation, analysis and the torch builder.

All sizes are Python ints (never floats or tensors), so huge networks cost nothing to analyze.
"""
from __future__ import annotations

import math


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """Span of a dilated kernel: d*(k-1) + 1."""
    return dilation * (kernel - 1) + 1


def conv_output_length(length: int, kernel: int, stride: int = 1, pad_total: int = 0,
                       dilation: int = 1) -> int:
    """PyTorch's floor((L + p_total - d*(k-1) - 1) / s) + 1, with p_total = left + right padding."""
    return (length + pad_total - effective_kernel(kernel, dilation)) // stride + 1


def pool_output_length(length: int, kernel: int, stride: int, pad: int, dilation: int = 1,
                       ceil_mode: bool = False) -> int:
    """Pooling output length; with ceil_mode a last window starting in the right padding is dropped."""
    span = length + 2 * pad - effective_kernel(kernel, dilation)
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= length + pad:
        out -= 1
    return out


def transposed_output_length(length: int, kernel: int, stride: int = 1, pad: int = 0,
                             output_padding: int = 0, dilation: int = 1) -> int:
    """(L - 1)*s - 2p + d*(k-1) + output_padding + 1 (PyTorch ConvTranspose)."""
    return (length - 1) * stride - 2 * pad + dilation * (kernel - 1) + output_padding + 1


def same_padding(length: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(left, right) padding giving output ceil(L / s); the odd pixel goes right/bottom
    (TensorFlow's rule)."""
    out = -(-length // stride)
    total = max((out - 1) * stride + effective_kernel(kernel, dilation) - length, 0)
    return total // 2, total - total // 2


def adaptive_windows(length: int, out: int) -> list[tuple[int, int]]:
    """PyTorch adaptive pooling windows [start, end) for each output index."""
    return [((i * length) // out, -(-((i + 1) * length) // out)) for i in range(out)]


def smallest_valid_input(kernel: int, pad_total: int, dilation: int = 1) -> int:
    """Smallest input length for which a window fits at least once."""
    return max(effective_kernel(kernel, dilation) - pad_total, 1)


# Receptive-field recurrences (Araujo, Norris, Sim, Distill 2019), one spatial dim at a time.
# A field is (size r, jump j = effective stride, start offset = -effective padding).

def rf_size(prev_size: int, prev_jump: int, kernel_eff: int) -> int:
    """r_l = r_{l-1} + (k_l - 1) * j_{l-1}."""
    return prev_size + (kernel_eff - 1) * prev_jump


def rf_jump(prev_jump: int, stride: int) -> int:
    """j_l = j_{l-1} * s_l."""
    return prev_jump * stride


def rf_padding(prev_padding: int, prev_jump: int, pad_left: int) -> int:
    """P_l = P_{l-1} + p_l * j_{l-1}: how far the first unit's field starts before the input."""
    return prev_padding + pad_left * prev_jump


def product(values) -> int:
    return math.prod(values)


def padded_length(length: int, left: int, right: int) -> int:
    """F.pad: L + left + right."""
    return length + left + right


def pad_pairs(padding: int | list[int], ndim: int) -> list[tuple[int, int]]:
    """(left, right) per spatial dim, first dim first, from F.pad's order (last dim first:
    left, right, top, bottom, front, back); an int pads every side, a shorter list only the
    last dims. The caller checks the list's length."""
    if isinstance(padding, int):
        return [(padding, padding)] * ndim
    pairs = [(padding[i], padding[i + 1]) for i in range(0, len(padding), 2)]
    return [(0, 0)] * (ndim - len(pairs)) + pairs[::-1]


def pixel_shuffle_shape(channels: int, height: int, width: int, factor: int) -> tuple[int, ...]:
    """nn.PixelShuffle(r): [C*r*r, H, W] -> [C, H*r, W*r]."""
    return channels // (factor * factor), height * factor, width * factor


def pixel_unshuffle_shape(channels: int, height: int, width: int,
                          factor: int) -> tuple[int, ...]:
    """nn.PixelUnshuffle(r): [C, H, W] -> [C*r*r, H/r, W/r]."""
    return channels * factor * factor, height // factor, width // factor
