"""Elementwise activations (and softmax over a dim), shape-preserving: no parameters but
prelu's learned slopes."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, create_model

from .base import (CHANNELS_FIRST, DIM_DOC, FLOATS, SAVES_INPUT, SAVES_OUTPUT, Counts,
                   LayerConfig, LayerKind, PositiveReal, Real, ShapeProblem, Size, register,
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
    "swish": ("SiLU", "input", {}),
    "mish": ("Mish", "input", {}),
    "softplus": ("Softplus", "input", {"beta": (PositiveReal, 1.0), "threshold": (Real, 20.0)}),
    "hardswish": ("Hardswish", "input", {}),
    "hardsigmoid": ("Hardsigmoid", "input", {}),
    "sigmoid": ("Sigmoid", "output", {}),
    "tanh": ("Tanh", "output", {}),
    "softmax": ("Softmax", "output", {"dim": (int, Field(1, description=DIM_DOC))}),
    "log_softmax": ("LogSoftmax", "output", {"dim": (int, Field(1, description=DIM_DOC))}),
    "identity": ("Identity", None, {}),
}

ALIASES = {"swish": "silu"}  # another name of the same activation: the same nn.SiLU


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
    _title = _name.title() if _name in ALIASES else _torch_name  # SwishConfig beside SiLUConfig
    _config = create_model(f"{_title}Config", __base__=LayerConfig,
                           type=(Literal[_name], ...), **_fields)
    register(type(_title, (_Activation,), {"name": _name, "Config": _config,
                                                 "torch_name": _torch_name, "keeps": _keeps,
                                                 "inplace_capable": _torch_name in
                                                 INPLACE_CAPABLE}))


class PReLUConfig(LayerConfig):
    type: Literal["prelu"]
    num_parameters: Size = Field(1, description=(
        "Learned slopes: 1 (one for every channel) or the number of channels (dim 1), "
        "as nn.PReLU."))
    init: Real = Field(0.25, description="Initial slope of the negative part.")


@register
class PReLU(LayerKind):
    """nn.PReLU: max(0, x) + a * min(0, x) with a learned slope a, one or one per channel."""
    name = "prelu"
    family = "activation"
    Config = PReLUConfig
    torch_name = "PReLU"

    def accepts(self, cfg):
        return FLOATS if cfg.num_parameters == 1 else CHANNELS_FIRST  # per channel: dim 1

    def output_shape(self, cfg, inputs):
        c = inputs[0][0]
        if cfg.num_parameters not in (1, c):
            raise ShapeProblem(f"num_parameters is {cfg.num_parameters} but prelu takes 1 or the "
                               f"input's {c} channels", field="num_parameters",
                               hint=f"set num_parameters: {c} (a slope per channel) or 1")
        return inputs[0]

    def counts(self, cfg, inputs, output):
        return Counts(params=cfg.num_parameters, param_tensors=1)

    def label(self, cfg, inputs):
        return "prelu" if cfg.num_parameters == 1 else "prelu (per channel)"

    def saved(self, cfg, inputs, output, grad):
        """_prelu_kernel keeps its input (the weight, a parameter, aside) for either gradient."""
        return [SAVES_INPUT] if grad.any else []
