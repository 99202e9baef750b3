"""Upsampling by interpolation (nearest, linear/bilinear/trilinear)."""
from __future__ import annotations

from typing import Literal

from .base import (CHANNELS_FIRST, LayerConfig, LayerKind, ShapeProblem, Size, dims_text, per_dim, register,
                   require_spatial)

MODES_BY_DIMS = {1: "linear", 2: "bilinear", 3: "trilinear"}


class UpsampleConfig(LayerConfig):
    type: Literal["upsample"]
    scale_factor: Size | list[Size] | None = None
    size: Size | list[Size] | None = None
    mode: Literal["nearest", "linear", "bilinear", "trilinear"] = "nearest"
    align_corners: bool | None = None


@register
class Upsample(LayerKind):
    name = "upsample"
    family = "upsample"
    layouts = CHANNELS_FIRST
    Config = UpsampleConfig
    base_name = "up"

    def output_shape(self, cfg, inputs):
        nd = require_spatial("upsample", inputs[0])
        if (cfg.scale_factor is None) == (cfg.size is None):
            raise ShapeProblem("upsample needs exactly one of scale_factor and size",
                               field="scale_factor",
                               hint="remove one of them" if cfg.size is not None else
                               "e.g. scale_factor: 2, or size: [64, 64]")
        if cfg.mode == "nearest" and cfg.align_corners is not None:
            raise ShapeProblem("align_corners applies only to the interpolating modes "
                               "(linear, bilinear, trilinear), not to 'nearest'",
                               field="align_corners", hint=f"remove align_corners, or use "
                                                           f"mode: {MODES_BY_DIMS[nd]}")
        if cfg.mode != "nearest" and cfg.mode != MODES_BY_DIMS[nd]:
            raise ShapeProblem(f"mode '{cfg.mode}' does not fit a {nd}-D input", field="mode",
                               hint=f"use 'nearest' or '{MODES_BY_DIMS[nd]}'")
        if cfg.size is not None:
            return (inputs[0][0],) + per_dim(cfg.size, nd, "size")
        scale = per_dim(cfg.scale_factor, nd, "scale_factor")
        return (inputs[0][0],) + tuple(n * s for n, s in zip(inputs[0][1:], scale))

    def rf_steps(self, cfg, inputs):
        return None  # an upsampled unit's field depends on its position

    def saved(self, cfg, inputs, output, grad):
        return []  # interpolation's backward needs only the sizes

    def label(self, cfg, inputs):
        if cfg.size is not None:
            return f"upsample to {dims_text(self.output_shape(cfg, inputs)[1:])} ({cfg.mode})"
        scale = per_dim(cfg.scale_factor, len(inputs[0]) - 1, "scale_factor")
        return f"upsample x{dims_text(scale)} ({cfg.mode})"
