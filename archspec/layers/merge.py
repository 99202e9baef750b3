"""Layers that join paths: concat, add, multiply, and the residual projection shortcut."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .. import shapes
from .base import (CHANNELS_FIRST, DIM_DOC, SAVES_INPUT, Counts, LayerConfig, LayerKind, RFStep, Saved,
                   ShapeProblem, fmt_shape, register, sample_axis, stats)


def listing(inputs) -> str:
    return ", ".join(fmt_shape(s) for s in inputs)


class ConcatConfig(LayerConfig):
    type: Literal["concat"]
    dim: int = Field(1, description=DIM_DOC)


class _Merge(LayerKind):
    family = "merge"
    min_inputs = 2
    max_inputs = None

    def saved(self, cfg, inputs, output, grad):
        return []  # cat and + need only sizes for their backward


@register
class Concat(_Merge):
    name = "concat"
    Config = ConcatConfig

    def output_shape(self, cfg, inputs):
        rank = len(inputs[0])
        if any(len(s) != rank for s in inputs):
            raise ShapeProblem(f"concat inputs have different ranks: {listing(inputs)}",
                               hint="flatten or pool the inputs to the same rank first")
        axis = sample_axis(cfg.dim, inputs[0], "concat", "would change the batch size")
        for other in range(rank):
            if other != axis and len({s[other] for s in inputs}) > 1:
                raise ShapeProblem(
                    f"concat along dim {axis + 1} needs equal sizes in dim {other + 1}, got "
                    f"{listing(inputs)}",
                    hint="make the branches downsample alike (same strides and 'same' padding), "
                         "or crop/upsample one of them")
        total = sum(s[axis] for s in inputs)
        return inputs[0][:axis] + (total,) + inputs[0][axis + 1:]

    def label(self, cfg, inputs):
        axis = sample_axis(cfg.dim, inputs[0], "concat", "")
        return "concat" if axis == 0 else f"concat dim {axis + 1}"


class AddConfig(LayerConfig):
    type: Literal["add"]


@register
class Add(_Merge):
    name = "add"
    Config = AddConfig
    inplace_capable = True  # `out += identity`, as torchvision writes a residual block

    def output_shape(self, cfg, inputs):
        if len(set(inputs)) > 1:
            raise ShapeProblem(f"add needs inputs of one shape, got {listing(inputs)}",
                               hint="make the inputs' shapes equal; in a residual block, "
                                    "'shortcut: projection' maps the block input to the body's "
                                    "output shape")
        return inputs[0]

    def label(self, cfg, inputs):
        return "add"


class MultiplyConfig(LayerConfig):
    type: Literal["multiply"]


@register
class Multiply(_Merge):
    """Elementwise product; size-1 dims broadcast (squeeze-and-excitation gates)."""
    name = "multiply"
    Config = MultiplyConfig
    base_name = "mul"
    broadcasts = True

    def output_shape(self, cfg, inputs):
        rank = len(inputs[0])
        if any(len(s) != rank for s in inputs):
            raise ShapeProblem(f"multiply inputs have different ranks: {listing(inputs)}")
        out = []
        for axis in range(rank):
            sizes = {s[axis] for s in inputs} - {1}
            if len(sizes) > 1:
                raise ShapeProblem(f"multiply inputs disagree in dim {axis}: {listing(inputs)}",
                                   hint="sizes must match or be 1 (broadcast)")
            out.append(sizes.pop() if sizes else 1)
        return tuple(out)

    def label(self, cfg, inputs):
        return "multiply"

    def saved(self, cfg, inputs, output, grad):
        """x1 * x2 * ... runs as a chain of products; each keeps one factor for the other's
        gradient (only when the other requires grad), and the partial products are new."""
        kept: list[Saved] = []
        left, left_grad = Saved("input", 0), grad.inputs[0]
        left_shape = inputs[0]
        for i in range(1, len(inputs)):
            if left_grad:
                kept.append(Saved("input", i))
            if grad.inputs[i]:
                kept.append(left)
            left_shape = tuple(max(a, b) for a, b in zip(left_shape, inputs[i]))
            left, left_grad = Saved("new", shape=left_shape), left_grad or grad.inputs[i]
        return kept


class ProjectionConfig(LayerConfig):
    type: Literal["projection"]
    norm: bool = Field(True, description="Follow the 1x1 conv with batch norm.")


@register
class Projection(LayerKind):
    """Residual shortcut: identity when shapes match, else 1x1 conv (+BN) to the body's shape.
    Inputs: [block input, body output]; the second is read for its shape only."""
    name = "projection"
    family = "conv"
    base_name = "shortcut"
    layouts = CHANNELS_FIRST
    min_inputs = max_inputs = 2
    data_inputs: ClassVar[int] = 1

    Config = ProjectionConfig

    def strides(self, inputs) -> tuple[int, ...] | None:
        (x, ref) = inputs
        if x == ref:
            return None
        if len(x) != len(ref):
            raise ShapeProblem(f"cannot project {fmt_shape(x)} to {fmt_shape(ref)}: ranks differ")
        if len(x) == 1:  # a 1x1 conv needs spatial dims; vectors take a dense shortcut
            raise ShapeProblem(
                f"a projection shortcut maps feature maps, not vectors ({fmt_shape(x)} to "
                f"{fmt_shape(ref)})",
                hint=f"give the shortcut as layers: shortcut: [{{type: dense, out_features: "
                     f"{ref[0]}}}]")
        strides = tuple(-(-n // o) for n, o in zip(x[1:], ref[1:]))
        if any(shapes.conv_output_length(n, 1, s) != o for n, s, o in zip(x[1:], strides, ref[1:])):
            raise ShapeProblem(f"no 1x1 strided conv maps {fmt_shape(x)} to {fmt_shape(ref)}",
                               hint="the body must downsample by an integer stride")
        return strides

    def output_shape(self, cfg, inputs):
        self.strides(inputs)
        return inputs[1]

    def counts(self, cfg, inputs, output):
        if self.strides(inputs) is None:
            return Counts()
        c_in, c_out = inputs[0][0], output[0]
        conv = c_in * c_out + (0 if cfg.norm else c_out)
        return Counts(params=conv + (2 * c_out if cfg.norm else 0),
                      buffers=2 * c_out + 1 if cfg.norm else 0,
                      macs=shapes.product(output) * c_in,
                      param_tensors=3 if cfg.norm else 2)  # conv weight + bn weight, bias

    def rf_steps(self, cfg, inputs):
        strides = self.strides(inputs) or (1,) * (len(inputs[0]) - 1)
        return [RFStep(1, s, 0) for s in strides]

    def size_period(self, cfg, inputs):
        return 1  # its output is its second input's shape

    def is_identity(self, cfg, inputs):
        return self.strides(inputs) is None

    def aliases_input(self, cfg, inputs, training):
        return self.is_identity(cfg, inputs)

    def saved(self, cfg, inputs, output, grad):
        """The 1x1 conv keeps its input; its batch norm keeps the conv's output (made inside
        this layer) and the statistics."""
        if self.is_identity(cfg, inputs) or not grad.any:
            return []
        return [SAVES_INPUT] + ([Saved("new", shape=output)] + stats(output[0]) if cfg.norm
                                else [])

    def label(self, cfg, inputs):
        strides = self.strides(inputs)
        if strides is None:
            return "identity"
        return f"conv 1x1/{strides[0]}, {inputs[1][0]}" + (" + bn" if cfg.norm else "")
