"""Elementwise activations (and softmax over a dim). Shape-preserving, no parameters."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model

from .base import LayerConfig, LayerKind, ShapeProblem, register

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
    "softmax": ("Softmax", {"dim": (int, Field(0, description="Dim without batch; 0 = channels."))}),
    "log_softmax": ("LogSoftmax", {"dim": (int, Field(0, description="Dim without batch."))}),
    "identity": ("Identity", {}),
}


class _Activation(LayerKind):
    family = "activation"
    torch_name = ""

    def output_shape(self, cfg, inputs):
        dim = getattr(cfg, "dim", None)
        if dim is not None and not -len(inputs[0]) <= dim < len(inputs[0]):
            raise ShapeProblem(f"dim {dim} is out of range for a {len(inputs[0])}-dim input "
                               f"{list(inputs[0])}", field="dim",
                               hint="dims count without the batch dim; 0 is the channel dim")
        return inputs[0]

    def build_torch(self, cfg, inputs, output):
        import torch.nn as nn
        extra = cfg.model_dump(exclude={"type", "name", "from_", "trainable"})
        if "dim" in extra:  # the spec counts dims without the batch dim
            extra["dim"] = extra["dim"] + 1 if extra["dim"] >= 0 else extra["dim"]
        return getattr(nn, self.torch_name)(**extra)


for _name, (_torch_name, _fields) in ACTIVATIONS.items():
    _config = create_model(f"{_torch_name}Config", __base__=LayerConfig,
                           type=(Literal[_name], ...), **_fields)
    register(type(_torch_name, (_Activation,), {"name": _name, "Config": _config,
                                                 "torch_name": _torch_name}))
