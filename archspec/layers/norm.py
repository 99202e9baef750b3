"""Batch norm, local response norm and dropout."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, confloat

from .. import shapes
from .base import (SAVES_INPUT, Counts, LayerConfig, LayerKind, PositiveReal, Real, Saved,
                   ShapeProblem, Size, check_declared, register, stats)


class BatchNormConfig(LayerConfig):
    type: Literal["batch_norm"]
    eps: PositiveReal = 1e-5
    momentum: confloat(ge=0, le=1) | None = 0.1
    affine: bool = True
    track_running_stats: bool = True
    num_features: Size | None = Field(None, description="Inferred; checked if given.")


@register
class BatchNorm(LayerKind):
    name = "batch_norm"
    family = "norm"
    Config = BatchNormConfig
    base_name = "bn"

    def output_shape(self, cfg, inputs):
        check_declared(cfg, "num_features", inputs[0][0])
        return inputs[0]

    def counts(self, cfg, inputs, output):
        c = inputs[0][0]
        return Counts(params=2 * c if cfg.affine else 0,
                      buffers=2 * c + 1 if cfg.track_running_stats else 0,
                      param_tensors=2 if cfg.affine else 0)

    def label(self, cfg, inputs):
        return "batch norm"

    def saved(self, cfg, inputs, output, grad):
        return [SAVES_INPUT] + stats(inputs[0][0]) if grad.any else []


class LRNConfig(LayerConfig):
    type: Literal["local_response_norm"]
    size: Size
    alpha: Real = 1e-4
    beta: Real = 0.75
    k: Real = 1.0


@register
class LocalResponseNorm(LayerKind):
    name = "local_response_norm"
    family = "norm"
    Config = LRNConfig
    base_name = "lrn"

    def output_shape(self, cfg, inputs):
        if len(inputs[0]) < 2:
            raise ShapeProblem("local_response_norm needs a [C, ...] map with spatial dims",
                               hint="use it after a conv, before the flatten")
        return inputs[0]

    def label(self, cfg, inputs):
        return f"LRN {cfg.size}"

    def saved(self, cfg, inputs, output, grad):
        """F.local_response_norm is composite: x*x (keeps x), an average pool over the channels
        padded by size-1 (keeps that copy), then pow (keeps its base) and x / div (keeps div)."""
        if not grad.inputs[0]:
            return []
        c, *spatial = inputs[0]
        padded = Saved("new", shape=(c + cfg.size - 1, shapes.product(spatial)))
        return [SAVES_INPUT, padded, Saved("new", shape=output), Saved("new", shape=output)]


class DropoutConfig(LayerConfig):
    type: Literal["dropout"]
    p: confloat(ge=0, le=1) = 0.5


@register
class Dropout(LayerKind):
    name = "dropout"
    family = "dropout"
    Config = DropoutConfig
    base_name = "drop"

    def label(self, cfg, inputs):
        return f"dropout {cfg.p:g}"

    def saved(self, cfg, inputs, output, grad):
        """On the CPU, dropout multiplies by a mask of the input's dtype and keeps the mask
        (p=1: a single zero); p=0 returns its input."""
        if cfg.p == 0 or not grad.inputs[0]:
            return []
        return [Saved("new", shape=() if cfg.p == 1 else inputs[0], batched=cfg.p != 1)]

    def aliases_input(self, cfg, inputs, training):
        return cfg.p == 0 or not training
