"""Elementwise activations (and softmax over a dim). Shape-preserving, no parameters."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model

from .base import DIM_DOC, LayerConfig, LayerKind, register, sample_axis

# name -> (torch.nn class, extra fields {field: (type, default)})
ACTIVATIONS: dict[str, tuple[str, dict[str, tuple[Any, Any]]]] = {
    "relu": ("ReLU", {}),
    "leaky_relu": ("LeakyReLU", {"negative_slope": (float, 0.01)}),
    "relu6": ("ReLU6", {}),
    "elu": ("ELU", {"alpha": (float, 1.0)}),
    "gelu": ("GELU", {"approximate": (Literal["none", "tanh"], "none")}),
    "silu": ("SiLU", {}),
    "hardswish": ("Hardswish", {}),
    "hardsigmoid": ("Hardsigmoid", {}),
    "sigmoid": ("Sigmoid", {}),
    "tanh": ("Tanh", {}),
    "softmax": ("Softmax", {"dim": (int, Field(1, description=DIM_DOC))}),
    "log_softmax": ("LogSoftmax", {"dim": (int, Field(1, description=DIM_DOC))}),
    "identity": ("Identity", {}),
}


class _Activation(LayerKind):
    family = "activation"
    torch_name = ""

    def output_shape(self, cfg, inputs):
        if getattr(cfg, "dim", None) is not None:
            sample_axis(cfg.dim, inputs[0], self.name, "would mix the samples of a batch")
        return inputs[0]

    def build_torch(self, cfg, inputs, output):
        import torch.nn as nn
        extra = cfg.model_dump(exclude={"type", "name", "from_", "trainable"})
        return getattr(nn, self.torch_name)(**extra)  # dim counts as in PyTorch


for _name, (_torch_name, _fields) in ACTIVATIONS.items():
    _config = create_model(f"{_torch_name}Config", __base__=LayerConfig,
                           type=(Literal[_name], ...), **_fields)
    register(type(_torch_name, (_Activation,), {"name": _name, "Config": _config,
                                                 "torch_name": _torch_name}))
