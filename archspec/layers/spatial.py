"""Rearrangements of a channels-first map: pad (F.pad's modes), pixel_shuffle / pixel_unshuffle
(depth to space and back) and channel_shuffle. No parameters, 0 MACs."""
from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Len
from pydantic import Field

from .. import shapes
from .base import (SAVES_INPUT, LayerConfig, LayerKind, Offset, Real, RFStep, ShapeProblem, Size,
                   fmt_shape, register, require_spatial)
from .norm import divisor_hint

MAP = frozenset({"channels_first"})


class PadConfig(LayerConfig):
    type: Literal["pad"]
    padding: Offset | Annotated[list[Offset], Len(2, 6)] = Field(description=(
        "An int pads every side of every spatial dim; a list is F.pad's: two values per dim, "
        "last dim first ([left, right], [left, right, top, bottom], then front, back); a "
        "shorter list pads only the last dims."))
    mode: Literal["constant", "reflect", "replicate", "circular"] = "constant"
    value: Real | None = Field(None, description="The fill of mode constant (default 0).")


@register
class Pad(LayerKind):
    """F.pad on the spatial dims, lowered to nn.ConstantPadNd / ReflectionPadNd /
    ReplicationPadNd / CircularPadNd with every spatial dim listed."""
    name = "pad"
    family = "reshape"
    Config = PadConfig
    layouts = MAP

    def pairs(self, cfg, shape) -> list[tuple[int, int]]:
        nd = require_spatial("pad", shape)
        if isinstance(cfg.padding, list) and (len(cfg.padding) % 2 or
                                              len(cfg.padding) > 2 * nd):
            raise ShapeProblem(f"padding has {len(cfg.padding)} values but a {nd}-D map takes two "
                               f"per spatial dim (at most {2 * nd})", field="padding",
                               hint=f"give [left, right] pairs, last dim first, e.g. "
                                    f"{[1] * (2 * nd)}, or one int for every side")
        if cfg.value is not None and cfg.mode != "constant":
            raise ShapeProblem(f"value applies to mode constant only, not to '{cfg.mode}'",
                               field="value", hint="remove value, or use mode: constant")
        pairs = shapes.pad_pairs(cfg.padding, nd)
        for axis, (n, (lo, hi)) in enumerate(zip(shape[1:], pairs)):
            limit = n - 1 if cfg.mode == "reflect" else n if cfg.mode == "circular" else None
            if limit is not None and max(lo, hi) > limit:
                rule = "less than" if cfg.mode == "reflect" else "at most"
                raise ShapeProblem(
                    f"{cfg.mode} padding {max(lo, hi)} is too large for dim {axis + 2} of the "
                    f"input {fmt_shape(shape)} (size {n}): PyTorch's {cfg.mode} pad must be "
                    f"{rule} the size", field="padding",
                    hint=f"pad at most {limit} there, or use mode: replicate or constant")
        return pairs

    def output_shape(self, cfg, inputs):
        shape = inputs[0]
        pairs = self.pairs(cfg, shape)
        return (shape[0],) + tuple(shapes.padded_length(n, lo, hi)
                                   for n, (lo, hi) in zip(shape[1:], pairs))

    def rf_steps(self, cfg, inputs):
        """A window of 1 that starts `left` before the input, as a conv's padding; reflect,
        replicate and circular fill the border from the input as a conv's padding_mode does,
        with the same field."""
        return [RFStep(1, 1, lo) for lo, _ in self.pairs(cfg, inputs[0])]

    def label(self, cfg, inputs):
        pairs = self.pairs(cfg, inputs[0])
        sides = {side for pair in pairs for side in pair}
        # F.pad's order, every spatial dim: last dim first
        text = str(pairs[0][0]) if len(sides) == 1 else \
            str([v for lo_hi in reversed(pairs) for v in lo_hi])
        fill = f" {cfg.value:g}" if cfg.value else ""
        return f"pad {text} ({cfg.mode}{fill})"

    def saved(self, cfg, inputs, output, grad):
        """The reflect and replicate pads' backward reads the input; constant and circular
        padding keep nothing."""
        return [SAVES_INPUT] if cfg.mode in ("reflect", "replicate") and grad.inputs[0] else []


class PixelShuffleConfig(LayerConfig):
    type: Literal["pixel_shuffle"]
    upscale_factor: Size = Field(description="r: [C*r*r, H, W] -> [C, H*r, W*r].")


@register
class PixelShuffle(LayerKind):
    """nn.PixelShuffle (depth to space) on a [C, H, W] map."""
    name = "pixel_shuffle"
    family = "reshape"
    Config = PixelShuffleConfig
    layouts = MAP

    def output_shape(self, cfg, inputs):
        shape, r = inputs[0], cfg.upscale_factor
        two_d("pixel_shuffle", shape)
        if shape[0] % (r * r):
            raise ShapeProblem(f"pixel_shuffle with upscale_factor {r} needs channels divisible "
                               f"by {r}x{r} = {r * r}, but the input has {shape[0]}",
                               field="upscale_factor",
                               hint=f"give the conv before it a multiple of {r * r} channels, or "
                                    "another upscale_factor")
        return shapes.pixel_shuffle_shape(*shape, r)

    def rf_steps(self, cfg, inputs):
        return None  # output position i reads input i // r: a jump of 1/r, no integer window

    def label(self, cfg, inputs):
        return f"pixel shuffle x{cfg.upscale_factor}"

    def saved(self, cfg, inputs, output, grad):
        return []  # its backward is a pixel unshuffle of the gradient


class PixelUnshuffleConfig(LayerConfig):
    type: Literal["pixel_unshuffle"]
    downscale_factor: Size = Field(description="r: [C, H, W] -> [C*r*r, H/r, W/r].")


@register
class PixelUnshuffle(LayerKind):
    """nn.PixelUnshuffle (space to depth) on a [C, H, W] map."""
    name = "pixel_unshuffle"
    family = "reshape"
    Config = PixelUnshuffleConfig
    layouts = MAP

    def output_shape(self, cfg, inputs):
        shape, r = inputs[0], cfg.downscale_factor
        two_d("pixel_unshuffle", shape)
        if shape[1] % r or shape[2] % r:
            raise ShapeProblem(f"pixel_unshuffle with downscale_factor {r} needs height and "
                               f"width divisible by {r}, but the input is {fmt_shape(shape)}",
                               field="downscale_factor",
                               hint=f"choose a factor dividing both {shape[1]} and {shape[2]}, "
                                    "or pad or crop the map first")
        return shapes.pixel_unshuffle_shape(*shape, r)

    def rf_steps(self, cfg, inputs):
        """Output position i holds input positions i*r .. i*r + r - 1 (in its r*r channel
        copies): an r-wide window at stride r, as a space-to-depth conv of kernel r."""
        r = cfg.downscale_factor
        return [RFStep(r, r, 0)] * 2

    def label(self, cfg, inputs):
        return f"pixel unshuffle /{cfg.downscale_factor}"

    def saved(self, cfg, inputs, output, grad):
        return []  # its backward is a pixel shuffle of the gradient


class ChannelShuffleConfig(LayerConfig):
    type: Literal["channel_shuffle"]
    groups: Size = Field(description="ShuffleNet's groups: must divide the channels.")


@register
class ChannelShuffle(LayerKind):
    """nn.ChannelShuffle: [C, ...] viewed as [groups, C/groups, ...], transposed, flattened."""
    name = "channel_shuffle"
    family = "reshape"
    Config = ChannelShuffleConfig
    layouts = MAP

    def output_shape(self, cfg, inputs):
        shape = inputs[0]
        require_spatial("channel_shuffle", shape)
        if shape[0] % cfg.groups:
            raise ShapeProblem(f"channel_shuffle groups {cfg.groups} does not divide the "
                               f"{shape[0]} channels", field="groups",
                               hint=divisor_hint("groups", shape[0], "channels"))
        return shape

    def label(self, cfg, inputs):
        return f"channel shuffle g{cfg.groups}"

    def saved(self, cfg, inputs, output, grad):
        return []  # a permutation: its backward needs only the sizes


def two_d(kind: str, shape) -> None:
    if len(shape) != 3:
        raise ShapeProblem(f"{kind} needs a [C, H, W] map, got {fmt_shape(shape)}",
                           hint="PyTorch's pixel shuffles rearrange two spatial dims only")
