"""Elementwise activations (and softmax over a dim). Shape-preserving, no parameters."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model

from .base import (DIM_DOC, SAVES_INPUT, SAVES_OUTPUT, LayerConfig, LayerKind, Real, register,
                   sample_axis)

# run in place where safe, as torchvision does; ReLU's backward needs only its result (an
# in-place ReLU6 saves a copy of its input: no saving; the others need their input or a slope)
INPLACE_CAPABLE = {"ReLU"}

# name -> (torch.nn class, what its backward keeps, extra fields {field: (type, default)});
# "output" for the ops whose derivative PyTorch writes with the result (relu, sigmoid, tanh,
# softmax), "input" for the rest, None for the identity (which returns its input)
ACTIVATIONS: dict[str, tuple[str, str | None, dict[str, tuple[Any, Any]]]] = {
    "relu": ("ReLU", "output", {}),
    "leaky_relu": ("LeakyReLU", "input", {"negative_slope": (Real, 0.01)}),
    "relu6": ("ReLU6", "input", {}),
    "elu": ("ELU", "input", {"alpha": (Real, 1.0)}),
    "gelu": ("GELU", "input", {"approximate": (Literal["none", "tanh"], "none")}),
    "silu": ("SiLU", "input", {}),
    "hardswish": ("Hardswish", "input", {}),
    "hardsigmoid": ("Hardsigmoid", "input", {}),
    "sigmoid": ("Sigmoid", "output", {}),
    "tanh": ("Tanh", "output", {}),
    "softmax": ("Softmax", "output", {"dim": (int, Field(1, description=DIM_DOC))}),
    "log_softmax": ("LogSoftmax", "output", {"dim": (int, Field(1, description=DIM_DOC))}),
    "identity": ("Identity", None, {}),
}


class _Activation(LayerKind):
    family = "activation"
    torch_name = ""
    keeps: str | None = None

    def accepts(self, cfg):
        return None if self.keeps is None else self.layouts  # the identity passes ids on too

    def saved(self, cfg, inputs, output, grad):
        if self.keeps is None or not grad.inputs[0]:
            return []
        return [SAVES_OUTPUT if self.keeps == "output" else SAVES_INPUT]

    def aliases_input(self, cfg, inputs, training):
        return self.keeps is None

    def output_shape(self, cfg, inputs):
        if getattr(cfg, "dim", None) is not None:
            sample_axis(cfg.dim, inputs[0], self.name, "would mix the samples of a batch")
        return inputs[0]


for _name, (_torch_name, _keeps, _fields) in ACTIVATIONS.items():
    _config = create_model(f"{_torch_name}Config", __base__=LayerConfig,
                           type=(Literal[_name], ...), **_fields)
    register(type(_torch_name, (_Activation,), {"name": _name, "Config": _config,
                                                 "torch_name": _torch_name, "keeps": _keeps,
                                                 "inplace_capable": _torch_name in
                                                 INPLACE_CAPABLE}))
