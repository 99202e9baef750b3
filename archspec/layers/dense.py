"""Fully connected layers (flatten is a shape kind: layers/reshape.py)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import shapes
from .base import (CHANNELS_LAST, SAVES_INPUT, RFStep, ActivationField, Counts, FixedWeights, LayerConfig, LayerKind,
                   Real, ShapeProblem, Size, check_declared,
                   check_bias_literal, check_literal, fmt_shape, register)


class DenseConfig(LayerConfig, ActivationField, FixedWeights):
    type: Literal["dense"]
    out_features: Size
    bias: bool | list[Real] = True
    in_features: Size | None = Field(None, description="Inferred; checked if given.")


@register
class Dense(LayerKind):
    name = "dense"
    family = "dense"
    Config = DenseConfig
    layouts = CHANNELS_LAST  # nn.Linear maps the last axis: a vector, or every position

    def layout_problem(self, cfg, shape, layout):
        if layout != "channels_first":
            return super().layout_problem(cfg, shape, layout)
        return ShapeProblem(
            f"dense needs a feature vector but its input is a {fmt_shape(shape)} map: "
            f"a flatten or a global pool is missing before it",
            hint=f"insert '- flatten' before it ({shapes.product(shape)} features) or "
                 f"'- global_avg_pool' ({shape[0]} features)")

    def output_shape(self, cfg, inputs):
        shape = inputs[0]
        check_declared(cfg, "in_features", shape[-1], "features")
        if cfg.weight is not None:
            check_literal(cfg.weight, (cfg.out_features, shape[-1]), "weight")
        check_bias_literal(cfg.bias, cfg.out_features)
        return shape[:-1] + (cfg.out_features,)

    def counts(self, cfg, inputs, output):
        n_in, positions = inputs[0][-1], shapes.product(inputs[0][:-1])
        bias = cfg.out_features if cfg.bias is not False else 0
        return Counts(params=n_in * cfg.out_features + bias,
                      macs=positions * n_in * cfg.out_features,
                      param_tensors=1 + (cfg.bias is not False))

    def rf_steps(self, cfg, inputs):
        if len(inputs[0]) == 1:
            return None
        return [RFStep(1, 1, 0)] * (len(inputs[0]) - 1)  # each position on its own

    def label(self, cfg, inputs):
        return f"dense {cfg.out_features}"

    def saved(self, cfg, inputs, output, grad):
        """addmm/mm keep the input only for the weight's gradient (the weight, a parameter, is
        what the input's gradient needs)."""
        return [SAVES_INPUT] if grad.params else []
