"""Max/avg pooling, adaptive pooling and global pooling."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import shapes
from .base import (CHANNELS_FIRST, SAVES_INPUT, SAVES_OUTPUT, LayerConfig, LayerKind, RFStep, Saved,
                   ShapeProblem, Size, dims_text, per_dim, register, require_spatial, step_text)
from .conv import AXES, Padding, conv_padding, is_symmetric, padded_copy, window_too_large


def indices(output) -> Saved:
    """Max pooling keeps where each maximum was: one int64 per output value."""
    return Saved("new", shape=tuple(output), int64=True)


class PoolConfig(LayerConfig):
    kernel_size: Size | list[Size]
    stride: Size | list[Size] | None = Field(None, description="Default: kernel_size.")
    padding: Padding = 0
    ceil_mode: bool = False


class MaxPoolConfig(PoolConfig):
    type: Literal["max_pool"]
    dilation: Size | list[Size] = 1


class AvgPoolConfig(PoolConfig):
    type: Literal["avg_pool"]
    count_include_pad: bool = True


class _Pool(LayerKind):
    family = "pool"
    layouts = CHANNELS_FIRST
    base_name = "pool"
    op = ""

    def geometry(self, cfg, shape):
        nd = require_spatial(self.name, shape)
        kernel = per_dim(cfg.kernel_size, nd, "kernel_size")
        stride = per_dim(cfg.stride or cfg.kernel_size, nd, "stride")
        dilation = per_dim(getattr(cfg, "dilation", 1), nd, "dilation")
        return kernel, stride, dilation, conv_padding(cfg, shape[1:])

    def output_shape(self, cfg, inputs):
        shape = inputs[0]
        kernel, stride, dilation, pads = self.geometry(cfg, shape)
        out = []
        axes = AXES.get(len(kernel), ("size",) * len(kernel))
        for axis, n, k, s, d, (lo, hi) in zip(axes, shape[1:], kernel, stride, dilation, pads):
            if 2 * max(lo, hi) > k and cfg.padding != "same":  # PyTorch: the undilated kernel
                raise ShapeProblem(f"padding {max(lo, hi)} is more than half the kernel {k}",
                                   field="padding", hint=f"use padding <= {k // 2}")
            seen = n if lo == hi else n + lo + hi  # uneven padding is applied before the pool
            if self.op == "avgpool" and len(kernel) == 3 and seen < k:
                raise ShapeProblem(  # a limit of PyTorch's avg_pool3d, whatever the padding
                    f"3-D average pooling needs every input dim to be at least the kernel, got "
                    f"{n} < {k}", field="kernel_size",
                    hint="use a smaller kernel, or a max pool, or pad with a conv first")
            if lo == hi:
                length = shapes.pool_output_length(n, k, s, lo, d, cfg.ceil_mode)
            else:
                length = shapes.pool_output_length(n + lo + hi, k, s, 0, d, cfg.ceil_mode)
            if length < 1:  # with ceil_mode a window may overhang the input, as in PyTorch
                raise window_too_large(f"{self.name} window", axis, n, k, d, lo, hi,
                                       "use a smaller kernel_size, or fewer downsampling layers "
                                       "before it")
            out.append(length)
        return (shape[0],) + tuple(out)

    def rf_steps(self, cfg, inputs):
        kernel, stride, dilation, pads = self.geometry(cfg, inputs[0])
        return [RFStep(shapes.effective_kernel(k, d), s, lo)
                for k, s, d, (lo, _) in zip(kernel, stride, dilation, pads)]

    def label(self, cfg, inputs):
        kernel, stride, *_ = self.geometry(cfg, inputs[0])
        text = f"{self.op} {dims_text(kernel)}"
        return text + (f"/{step_text(stride)}" if stride != kernel else "")

    def pads_itself(self, cfg, shape) -> bool:
        """PyTorch pads at most half the kernel itself ('same' with dilation can need more);
        otherwise the input is padded explicitly first."""
        kernel, _, _, pads = self.geometry(cfg, shape)
        return is_symmetric(pads) and all(2 * lo <= k for (lo, _), k in zip(pads, kernel))

    def saved(self, cfg, inputs, output, grad):
        """The pool keeps the tensor it pools (the input, or its padded copy); a max pool also
        its indices; an average pool that excludes explicit padding divides by a map of
        counts, which the division keeps."""
        if not grad.inputs[0]:
            return []
        *_, pads = self.geometry(cfg, inputs[0])
        pooled = SAVES_INPUT if self.pads_itself(cfg, inputs[0]) else padded_copy(inputs[0], pads)
        if self.op == "maxpool":
            return [pooled, indices(output)]
        if pooled is SAVES_INPUT or cfg.count_include_pad:
            return [pooled]
        return [pooled, Saved("new", shape=tuple(output[1:]), batched=False)]


@register
class MaxPool(_Pool):
    name = "max_pool"
    Config = MaxPoolConfig
    op = "maxpool"


@register
class AvgPool(_Pool):
    name = "avg_pool"
    Config = AvgPoolConfig
    op = "avgpool"


class AdaptiveConfig(LayerConfig):
    output_size: Size | list[Size]


class AdaptiveAvgConfig(AdaptiveConfig):
    type: Literal["adaptive_avg_pool"]


class AdaptiveMaxConfig(AdaptiveConfig):
    type: Literal["adaptive_max_pool"]


class _Adaptive(LayerKind):
    family = "pool"
    layouts = CHANNELS_FIRST
    base_name = "pool"
    op = ""

    def output_shape(self, cfg, inputs):
        nd = require_spatial(self.name, inputs[0])
        return (inputs[0][0],) + per_dim(cfg.output_size, nd, "output_size")

    def rf_steps(self, cfg, inputs):
        spatial = inputs[0][1:]
        out = per_dim(cfg.output_size, len(spatial), "output_size")
        if any(n % o for n, o in zip(spatial, out)):
            return None  # uneven windows: no single kernel describes them
        return [RFStep(n // o, n // o, 0) for n, o in zip(spatial, out)]

    def size_period(self, cfg, inputs):
        return 1  # a fixed output size, whatever the window

    def label(self, cfg, inputs):
        return f"adaptive {self.op} {dims_text(self.output_shape(cfg, inputs)[1:])}"

    def saved(self, cfg, inputs, output, grad):
        """Adaptive max keeps its input and indices; adaptive average its input, except that
        PyTorch computes an all-ones output size as a mean, which keeps nothing."""
        if not grad.inputs[0]:
            return []
        if self.op == "max":
            return [SAVES_INPUT, indices(output)]
        return [] if set(output[1:]) == {1} else [SAVES_INPUT]


@register
class AdaptiveAvgPool(_Adaptive):
    name = "adaptive_avg_pool"
    Config = AdaptiveAvgConfig
    op = "avg"


@register
class AdaptiveMaxPool(_Adaptive):
    name = "adaptive_max_pool"
    Config = AdaptiveMaxConfig
    op = "max"


class GlobalAvgConfig(LayerConfig):
    type: Literal["global_avg_pool"]


class GlobalMaxConfig(LayerConfig):
    type: Literal["global_max_pool"]


class _Global(LayerKind):
    """Pools each channel over all positions and drops the spatial dims: [C, ...] -> [C]."""
    family = "pool"
    layouts = CHANNELS_FIRST
    base_name = "gap"
    op = ""

    def output_shape(self, cfg, inputs):
        require_spatial(self.name, inputs[0])
        return (inputs[0][0],)

    def rf_steps(self, cfg, inputs):
        return None

    def label(self, cfg, inputs):
        return f"global {self.op} pool"

    def saved(self, cfg, inputs, output, grad):
        """mean keeps nothing; amax keeps its input and its result (to find the maxima)."""
        if self.op == "avg" or not grad.inputs[0]:
            return []
        return [SAVES_INPUT, SAVES_OUTPUT]


@register
class GlobalAvgPool(_Global):
    name = "global_avg_pool"
    Config = GlobalAvgConfig
    op = "avg"


@register
class GlobalMaxPool(_Global):
    name = "global_max_pool"
    Config = GlobalMaxConfig
    op = "max"
    base_name = "gmp"
