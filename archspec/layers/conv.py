"""Convolution and transposed convolution, 1-D/2-D/3-D (the dimension follows the input rank)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import shapes
from .base import (CHANNELS_FIRST, SAVES_INPUT, ActivationField, Counts, FixedWeights, LayerConfig, LayerKind,
                   Offset, Real, RFStep, Saved, Size, check_declared,
                   ShapeProblem, check_bias_literal, check_literal, dims_text,
                   per_dim, register, require_spatial, step_text)

Padding = Offset | list[Offset] | Literal["valid", "same"]


class ConvConfig(LayerConfig, ActivationField, FixedWeights):
    type: Literal["conv"]
    out_channels: Size
    kernel_size: Size | list[Size]
    stride: Size | list[Size] = 1
    padding: Padding = Field(0, description="int, one per dim, 'valid' or 'same' (any stride).")
    dilation: Size | list[Size] = 1
    groups: Size = 1
    bias: bool | list[Real] = True
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"
    in_channels: Size | None = Field(None, description="Inferred; checked if given.")


def check_groups(cfg, c_in: int, c_out: int) -> None:
    for what, n in (("in", c_in), ("out", c_out)):
        if n % cfg.groups:
            raise ShapeProblem(f"groups={cfg.groups} does not divide the {n} {what}put channels",
                               field="groups", hint="groups must divide both in and out channels")


def conv_padding(cfg, spatial: tuple[int, ...]) -> list[tuple[int, int]]:
    """(left, right) padding per spatial dim for a conv or pool config."""
    nd = len(spatial)
    kernel = per_dim(cfg.kernel_size, nd, "kernel_size")
    stride = per_dim(cfg.stride or cfg.kernel_size, nd, "stride")
    dilation = per_dim(getattr(cfg, "dilation", 1), nd, "dilation")
    if cfg.padding == "valid":
        return [(0, 0)] * nd
    if cfg.padding == "same":
        return [shapes.same_padding(n, k, s, d)
                for n, k, s, d in zip(spatial, kernel, stride, dilation)]
    return [(p, p) for p in per_dim(cfg.padding, nd, "padding")]


AXES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def window_too_large(what: str, axis: str, n: int, k: int, d: int, lo: int, hi: int,
                     hint: str) -> ShapeProblem:
    """The error for a window that does not fit once in its padded input, naming the smallest
    input size that would work."""
    span = shapes.effective_kernel(k, d)
    size = f"{what} {k}" if d == 1 else f"{what} {k} dilated by {d} (spanning {span})"
    return ShapeProblem(
        f"{size} is larger than the padded input: {axis} {n} + padding {lo}+{hi} = "
        f"{n + lo + hi}; the smallest {axis} that works is "
        f"{shapes.smallest_valid_input(k, lo + hi, d)}", field="kernel_size", hint=hint)


def window_output(kind: str, spatial, kernel, stride, dilation, pads) -> tuple[int, ...]:
    out = []
    axes = AXES.get(len(spatial), ("size",) * len(spatial))
    for axis, n, k, s, d, (lo, hi) in zip(axes, spatial, kernel, stride, dilation, pads):
        if n + lo + hi < shapes.effective_kernel(k, d):
            raise window_too_large(f"{kind} kernel", axis, n, k, d, lo, hi,
                                   "use a smaller kernel_size, more padding (or padding: same), "
                                   "or fewer downsampling layers before it")
        out.append(shapes.conv_output_length(n, k, s, lo + hi, d))
    return tuple(out)


def torch_pad_args(pads: list[tuple[int, int]]) -> tuple[int, ...]:
    """F.pad wants the last dim first."""
    return tuple(v for lo_hi in reversed(pads) for v in lo_hi)


def is_symmetric(pads: list[tuple[int, int]]) -> bool:
    return all(lo == hi for lo, hi in pads)


def padded_copy(shape, pads: list[tuple[int, int]]) -> Saved:
    """The input padded explicitly (F.pad) before a conv or pool, which then saves that copy."""
    return Saved("new", shape=(shape[0],) + tuple(n + lo + hi for n, (lo, hi) in zip(shape[1:],
                                                                                      pads)))


@register
class Conv(LayerKind):
    name = "conv"
    family = "conv"
    layouts = CHANNELS_FIRST
    Config = ConvConfig

    def geometry(self, cfg, shape):
        nd = require_spatial("conv", shape)
        kernel = per_dim(cfg.kernel_size, nd, "kernel_size")
        stride = per_dim(cfg.stride, nd, "stride")
        dilation = per_dim(cfg.dilation, nd, "dilation")
        return kernel, stride, dilation, conv_padding(cfg, shape[1:])

    def output_shape(self, cfg, inputs):
        shape = inputs[0]
        check_declared(cfg, "in_channels", shape[0])
        check_groups(cfg, shape[0], cfg.out_channels)
        kernel, stride, dilation, pads = self.geometry(cfg, shape)
        if cfg.padding_mode != "zeros":
            for n, (lo, hi) in zip(shape[1:], pads):
                if cfg.padding_mode == "reflect" and max(lo, hi) >= n:
                    raise ShapeProblem(f"reflect padding {max(lo, hi)} needs an input larger than "
                                       f"the padding, got {n}", field="padding")
                if cfg.padding_mode == "circular" and max(lo, hi) > n:
                    raise ShapeProblem(f"circular padding {max(lo, hi)} would wrap around an input "
                                       f"of {n} more than once", field="padding",
                                       hint=f"use padding <= {n} or another padding_mode")
        if cfg.weight is not None:
            check_literal(cfg.weight, (cfg.out_channels, shape[0] // cfg.groups) + kernel, "weight")
        check_bias_literal(cfg.bias, cfg.out_channels)
        return (cfg.out_channels,) + window_output("conv", shape[1:], kernel, stride, dilation, pads)

    def counts(self, cfg, inputs, output):
        kernel, *_ = self.geometry(cfg, inputs[0])
        fan_in = inputs[0][0] // cfg.groups * shapes.product(kernel)
        params = fan_in * cfg.out_channels + (cfg.out_channels if cfg.bias is not False else 0)
        macs = shapes.product(output) * fan_in
        return Counts(params=params, macs=macs, param_tensors=1 + (cfg.bias is not False))

    def rf_steps(self, cfg, inputs):
        kernel, stride, dilation, pads = self.geometry(cfg, inputs[0])
        return [RFStep(shapes.effective_kernel(k, d), s, lo)
                for k, s, d, (lo, _) in zip(kernel, stride, dilation, pads)]

    def label(self, cfg, inputs):
        kernel, stride, dilation, _ = self.geometry(cfg, inputs[0])
        text = f"conv {dims_text(kernel)}"
        if set(stride) != {1}:
            text += f"/{step_text(stride)}"
        if set(dilation) != {1}:
            text += f" d{step_text(dilation)}"
        if cfg.groups > 1:
            text += " dw" if cfg.groups == inputs[0][0] else f" g{cfg.groups}"
        return f"{text}, {cfg.out_channels}"

    def saved(self, cfg, inputs, output, grad):
        """The conv keeps the tensor it convolves (for the weight's gradient, and it keeps it
        even when only the input needs one); a reflect/replicate pad also keeps the input."""
        if not grad.any:
            return []
        *_, pads = self.geometry(cfg, inputs[0])
        if is_symmetric(pads) and cfg.padding_mode == "zeros":
            return [SAVES_INPUT]
        pad_keeps_input = cfg.padding_mode in ("reflect", "replicate") and grad.inputs[0]
        return [SAVES_INPUT] * pad_keeps_input + [padded_copy(inputs[0], pads)]


class ConvTransposeConfig(LayerConfig, ActivationField, FixedWeights):
    type: Literal["conv_transpose"]
    out_channels: Size
    kernel_size: Size | list[Size]
    stride: Size | list[Size] = 1
    padding: Offset | list[Offset] = 0
    output_padding: Offset | list[Offset] = 0
    dilation: Size | list[Size] = 1
    groups: Size = 1
    bias: bool | list[Real] = True
    in_channels: Size | None = None


@register
class ConvTranspose(LayerKind):
    name = "conv_transpose"
    family = "upsample"
    layouts = CHANNELS_FIRST
    Config = ConvTransposeConfig
    base_name = "upconv"

    def geometry(self, cfg, shape):
        nd = require_spatial("conv_transpose", shape)
        return tuple(per_dim(getattr(cfg, f), nd, f)
                     for f in ("kernel_size", "stride", "padding", "output_padding", "dilation"))

    def output_shape(self, cfg, inputs):
        shape = inputs[0]
        check_declared(cfg, "in_channels", shape[0])
        check_groups(cfg, shape[0], cfg.out_channels)
        kernel, stride, pad, out_pad, dilation = self.geometry(cfg, shape)
        for op, s, d in zip(out_pad, stride, dilation):
            if op >= max(s, d):
                raise ShapeProblem(f"output_padding {op} must be smaller than stride or dilation",
                                   field="output_padding",
                                   hint=f"use output_padding below {max(s, d)} (it only picks "
                                        f"among the output sizes a stride of {s} allows)")
        out = tuple(shapes.transposed_output_length(n, k, s, p, op, d)
                    for n, k, s, p, op, d in zip(shape[1:], kernel, stride, pad, out_pad, dilation))
        if min(out) < 1:
            raise ShapeProblem(f"padding {list(pad)} leaves no output for input {list(shape[1:])}",
                               field="padding", hint="reduce the padding")
        if cfg.weight is not None:
            check_literal(cfg.weight, (shape[0], cfg.out_channels // cfg.groups) + kernel, "weight")
        check_bias_literal(cfg.bias, cfg.out_channels)
        return (cfg.out_channels,) + out

    def counts(self, cfg, inputs, output):
        kernel = self.geometry(cfg, inputs[0])[0]
        per_input = cfg.out_channels // cfg.groups * shapes.product(kernel)
        params = inputs[0][0] * per_input + (cfg.out_channels if cfg.bias is not False else 0)
        return Counts(params=params, macs=shapes.product(inputs[0]) * per_input,
                      param_tensors=1 + (cfg.bias is not False))

    def rf_steps(self, cfg, inputs):
        return None  # an upsampled unit's field depends on its position: no single window

    def label(self, cfg, inputs):
        kernel, stride, *_ = self.geometry(cfg, inputs[0])
        return f"upconv {dims_text(kernel)}/{step_text(stride)}, {cfg.out_channels}"

    def saved(self, cfg, inputs, output, grad):
        return [SAVES_INPUT] if grad.any else []


class DepthwiseConvConfig(LayerConfig, ActivationField, FixedWeights):
    type: Literal["depthwise_conv"]
    kernel_size: Size | list[Size]
    stride: Size | list[Size] = 1
    padding: Padding = 0
    dilation: Size | list[Size] = 1
    depth_multiplier: Size = Field(1, description="Output channels per input channel.")
    bias: bool | list[Real] = True
    padding_mode: Literal["zeros", "reflect", "replicate", "circular"] = "zeros"


@register
class DepthwiseConv(LayerKind):
    """A conv with groups = in_channels; out_channels = in_channels * depth_multiplier."""
    name = "depthwise_conv"
    family = "conv"
    layouts = CHANNELS_FIRST
    Config = DepthwiseConvConfig
    base_name = "dwconv"

    def as_conv(self, cfg, inputs) -> ConvConfig:
        channels = inputs[0][0]
        fields = cfg.model_dump(exclude={"type", "depth_multiplier"})
        return ConvConfig.model_construct(
            type="conv", out_channels=channels * cfg.depth_multiplier, groups=channels,
            in_channels=None, **fields)

    def output_shape(self, cfg, inputs):
        return Conv.output_shape(self, self.as_conv(cfg, inputs), inputs)

    def counts(self, cfg, inputs, output):
        return Conv.counts(self, self.as_conv(cfg, inputs), inputs, output)

    def rf_steps(self, cfg, inputs):
        return Conv.rf_steps(self, self.as_conv(cfg, inputs), inputs)

    def label(self, cfg, inputs):
        return Conv.label(self, self.as_conv(cfg, inputs), inputs)

    def saved(self, cfg, inputs, output, grad):
        return Conv.saved(self, self.as_conv(cfg, inputs), inputs, output, grad)

    geometry = Conv.geometry
