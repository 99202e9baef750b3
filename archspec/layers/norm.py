"""Batch norm, layer norm, group norm, instance norm, local response norm, dropout and
stochastic depth."""
from __future__ import annotations

from typing import Annotated, Literal

from annotated_types import Len

from pydantic import Field, confloat

from .. import shapes
from .base import (CHANNELS_FIRST, CHANNELS_LAST, SAVES_INPUT, Counts, LayerConfig, LayerKind, PositiveReal, Real, RFStep,
                   Saved, ShapeProblem, Size, check_declared, fmt_shape, register, require_spatial,
                   stats)


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
    layouts = CHANNELS_FIRST

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


class LayerNormConfig(LayerConfig):
    type: Literal["layer_norm"]
    normalized_shape: Size | Annotated[list[Size], Len(1, 4)] | None = Field(None, description=(
        "The last dims to normalize over (nn.LayerNorm's); inferred: the last dim (the channels "
        "with channels_first); a list normalizes over that many last dims, checked."))
    eps: PositiveReal = 1e-5
    elementwise_affine: bool = Field(True, description="A learned weight (and bias), one per "
                                                       "normalized value.")
    bias: bool = Field(True, description="With elementwise_affine: a learned bias too.")
    channels_first: bool = Field(False, description=(
        "Normalize over the channels of a [C, ...] map at every position (ConvNeXt's "
        "LayerNorm2d: permuted to channels last and back); weight and bias [C]."))


@register
class LayerNorm(LayerKind):
    """nn.LayerNorm over the last dims; with channels_first, over dim 1 of a channels-first map."""
    name = "layer_norm"
    family = "norm"
    Config = LayerNormConfig
    base_name = "ln"

    def accepts(self, cfg):
        return CHANNELS_FIRST if cfg.channels_first else CHANNELS_LAST

    def layout_problem(self, cfg, shape, layout):
        problem = super().layout_problem(cfg, shape, layout)
        if layout == "channels_first" and not cfg.channels_first:
            problem.hint = ("set channels_first: true to normalize over the channels at every "
                            f"position (ConvNeXt's LayerNorm2d), or {problem.hint}")
        return problem

    def normalized(self, cfg, shape) -> tuple[int, ...]:
        given = cfg.normalized_shape
        if cfg.channels_first:
            if len(shape) < 2:
                raise ShapeProblem(f"layer_norm with channels_first needs a [C, ...] map, got "
                                   f"{fmt_shape(shape)}", field="channels_first",
                                   hint="remove channels_first: true to normalize the last dim")
            if isinstance(given, list) and len(given) != 1:
                raise ShapeProblem("with channels_first, layer_norm normalizes over the channels "
                                   f"only, but normalized_shape is {given}",
                                   field="normalized_shape",
                                   hint=f"give normalized_shape: {shape[0]}, or leave it out")
            dims = (shape[0],)
        else:
            count = len(given) if isinstance(given, list) else 1
            if count > len(shape):
                raise ShapeProblem(f"normalized_shape {given} has {count} dims but the input "
                                   f"{fmt_shape(shape)} has {len(shape)}",
                                   field="normalized_shape",
                                   hint=f"give at most {len(shape)} dims")
            dims = tuple(shape[len(shape) - count:])
        wanted = tuple(given) if isinstance(given, list) else (given,) if given else dims
        if wanted != dims:
            raise ShapeProblem(f"normalized_shape is {list(wanted)} but the input's "
                               f"{'channels are' if cfg.channels_first else 'last dims are'} "
                               f"{list(dims)}", field="normalized_shape",
                               hint=f"remove normalized_shape (it is inferred) or set it to "
                                    f"{list(dims) if len(dims) > 1 else dims[0]}")
        return dims

    def output_shape(self, cfg, inputs):
        self.normalized(cfg, inputs[0])
        return inputs[0]

    def counts(self, cfg, inputs, output):
        n = shapes.product(self.normalized(cfg, inputs[0]))
        tensors = (1 + cfg.bias) if cfg.elementwise_affine else 0
        return Counts(params=n * tensors, param_tensors=tensors)

    def rf_steps(self, cfg, inputs):
        if not cfg.channels_first and isinstance(cfg.normalized_shape, list) and \
                len(cfg.normalized_shape) > 1:
            return None  # statistics over several positions: no window
        return [RFStep(1, 1, 0)] * (len(inputs[0]) - 1)

    def label(self, cfg, inputs):
        return "layer norm" + (" (channels)" if cfg.channels_first else "")

    def saved(self, cfg, inputs, output, grad):
        """native_layer_norm keeps its input and the mean and 1/std of every normalized group
        (each as large as the dims left over); the weight and bias are parameters."""
        if not grad.any:
            return []
        groups = shapes.product(inputs[0]) // shapes.product(self.normalized(cfg, inputs[0]))
        return [SAVES_INPUT] + [Saved("new", shape=(groups,))] * 2


WHOLE_MAP = ("its statistics are taken over every position of the sample, so each output "
             "depends on the whole input: no receptive field")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def divisor_hint(field: str, n: int, what: str) -> str:
    found = divisors(n)
    shown = ", ".join(map(str, found[:12])) + (", ..." if len(found) > 12 else "")
    return f"{field} must divide the {n} {what}: one of {shown}"


class GroupNormConfig(LayerConfig):
    type: Literal["group_norm"]
    num_groups: Size = Field(description="Channel groups, each normalized over its channels "
                                         "and every position; must divide the channels.")
    eps: PositiveReal = 1e-5
    affine: bool = Field(True, description="A learned weight and bias per channel.")
    num_channels: Size | None = Field(None, description="Inferred; checked if given.")


@register
class GroupNorm(LayerKind):
    """nn.GroupNorm on a channels-first map (or a vector of channels)."""
    name = "group_norm"
    family = "norm"
    Config = GroupNormConfig
    base_name = "gn"
    layouts = CHANNELS_FIRST

    def output_shape(self, cfg, inputs):
        c = inputs[0][0]
        check_declared(cfg, "num_channels", c)
        if c % cfg.num_groups:
            raise ShapeProblem(f"num_groups {cfg.num_groups} does not divide the {c} channels",
                               field="num_groups", hint=divisor_hint("num_groups", c, "channels"))
        return inputs[0]

    def counts(self, cfg, inputs, output):
        c = inputs[0][0]
        return Counts(params=2 * c if cfg.affine else 0, param_tensors=2 if cfg.affine else 0)

    def rf_steps(self, cfg, inputs):
        return None if len(inputs[0]) > 1 else []

    def notes(self, cfg, inputs):
        return [f"group_norm: {WHOLE_MAP}"] if len(inputs[0]) > 1 else []

    def label(self, cfg, inputs):
        return f"group norm {cfg.num_groups}"

    def saved(self, cfg, inputs, output, grad):
        """native_group_norm keeps its input and the mean and 1/std of every group."""
        if not grad.any:
            return []
        return [SAVES_INPUT] + [Saved("new", shape=(cfg.num_groups,))] * 2


class InstanceNormConfig(LayerConfig):
    type: Literal["instance_norm"]
    eps: PositiveReal = 1e-5
    momentum: confloat(ge=0, le=1) | None = 0.1
    affine: bool = Field(False, description="A learned weight and bias per channel.")
    track_running_stats: bool = Field(False, description=(
        "Keep running averages (buffers) and normalize with them in eval."))
    num_features: Size | None = Field(None, description="Inferred; checked if given.")


@register
class InstanceNorm(LayerKind):
    """nn.InstanceNorm1d/2d/3d by the input's rank: each channel of each sample normalized over
    its positions."""
    name = "instance_norm"
    family = "norm"
    Config = InstanceNormConfig
    base_name = "inorm"
    layouts = frozenset({"channels_first"})

    def output_shape(self, cfg, inputs):
        require_spatial("instance_norm", inputs[0])
        check_declared(cfg, "num_features", inputs[0][0])
        return inputs[0]

    def counts(self, cfg, inputs, output):
        c = inputs[0][0]
        return Counts(params=2 * c if cfg.affine else 0,
                      buffers=2 * c + 1 if cfg.track_running_stats else 0,
                      param_tensors=2 if cfg.affine else 0)

    def rf_steps(self, cfg, inputs):
        if cfg.track_running_stats:  # eval normalizes with the running averages: per position
            return [RFStep(1, 1, 0)] * (len(inputs[0]) - 1)
        return None

    def notes(self, cfg, inputs):
        return [] if cfg.track_running_stats else [f"instance_norm: {WHOLE_MAP}"]

    def label(self, cfg, inputs):
        return "instance norm"

    def saved(self, cfg, inputs, output, grad):
        """F.instance_norm is a batch norm over [1, N*C, ...]: it keeps the input (a view),
        the mean and 1/std of every channel of every sample, and the weight and running
        averages repeated once per sample (new tensors, [N*C] each)."""
        if not grad.any:
            return []
        c = inputs[0][0]
        repeated = [Saved("new", shape=(c,))] * (cfg.affine + 2 * cfg.track_running_stats)
        return [SAVES_INPUT] + [Saved("new", shape=(c,))] * 2 + repeated


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
    layouts = CHANNELS_FIRST

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


class StochasticDepthConfig(LayerConfig):
    type: Literal["stochastic_depth"]
    p: confloat(ge=0, le=1) = Field(description="Probability of dropping a sample's path "
                                                "(torchvision's StochasticDepth p).")
    mode: Literal["row", "batch"] = Field("row", description=(
        "row: each sample kept or zeroed on its own; batch: the whole batch at once."))


@register
class StochasticDepth(LayerKind):
    """torchvision.ops.StochasticDepth (drop path): in training, zeroes a sample's input (row)
    or the whole batch's (batch) with probability p and scales the rest by 1 / (1 - p);
    the identity in eval."""
    name = "stochastic_depth"
    family = "dropout"
    Config = StochasticDepthConfig
    base_name = "drop_path"

    def label(self, cfg, inputs):
        return f"stochastic depth {cfg.p:g} ({cfg.mode})"

    def saved(self, cfg, inputs, output, grad):
        """input * noise keeps the noise (input's dtype): one value per sample (row) or a single
        one (batch); p=0 returns its input."""
        if cfg.p == 0 or not grad.inputs[0]:
            return []
        return [Saved("new", shape=(1,) * len(inputs[0]), batched=cfg.mode == "row")]

    def aliases_input(self, cfg, inputs, training):
        return cfg.p == 0 or not training
