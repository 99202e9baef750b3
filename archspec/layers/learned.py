"""Learned tensors: a parameter added or prepended to its input (ViT's class token and position
embedding), layer scale (ConvNeXt's per-channel gamma) and the token embedding table.

`parameter` and `layer_scale` hold one tensor that the PyTorch back end registers directly on
the enclosing block's module under the layer's name (direct_tensor), as torchvision stores
`class_token`, `encoder.pos_embedding` and `features.1.0.layer_scale`."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import shapes
from .base import (DIM_DOC, SAVES_INPUT, Counts, LayerConfig, LayerKind, PositiveReal, Real,
                   RFStep, ShapeProblem, Size, fmt_shape, register, sample_axis)


class ParameterConfig(LayerConfig):
    type: Literal["parameter"]
    mode: Literal["add", "prepend"] = Field("add", description=(
        "add: input + tensor (a position embedding; size-1 dims broadcast); prepend: the "
        "tensor goes before the input along `dim` (a class token), once per sample."))
    shape: list[Size] | None = Field(None, min_length=1, max_length=4, description=(
        "The tensor's shape without the batch dim (stored with a leading 1, as torchvision "
        "does); default: the input's shape (add), or one position of it (prepend)."))
    dim: int = Field(1, description="prepend: the axis the tensor goes before the input along. "
                                    + DIM_DOC)
    init: Literal["zeros", "normal"] = Field("zeros", description=(
        "Initial values: zeros (ViT's class token) or normal with std (its position "
        "embedding: normal, std 0.02)."))
    std: PositiveReal = 0.02


@register
class Parameter(LayerKind):
    name = "parameter"
    family = "learned"
    Config = ParameterConfig
    base_name = "param"
    direct_tensor = True

    def tensor_shape(self, cfg, shape) -> tuple[int, ...]:
        """The tensor's per-sample shape (its stored shape has a leading 1)."""
        if cfg.mode == "add":
            tensor = tuple(cfg.shape) if cfg.shape else shape
            if len(tensor) != len(shape) or any(t not in (1, n) for t, n in zip(tensor, shape)):
                raise ShapeProblem(f"a parameter of shape {fmt_shape(tensor)} cannot be added to "
                                   f"a {fmt_shape(shape)} input", field="shape",
                                   hint=f"give each dim the input's size or 1 (broadcast), e.g. "
                                        f"shape: {list(shape)}, or leave shape out")
            return tensor
        axis = sample_axis(cfg.dim, shape, "prepend", "would add samples to the batch")
        one = shape[:axis] + (1,) + shape[axis + 1:]
        tensor = tuple(cfg.shape) if cfg.shape else one
        if len(tensor) != len(shape) or any(t != n for i, (t, n) in enumerate(zip(tensor, shape))
                                            if i != axis):
            raise ShapeProblem(f"a parameter of shape {fmt_shape(tensor)} cannot be prepended to "
                               f"a {fmt_shape(shape)} input along dim {cfg.dim}", field="shape",
                               hint=f"every dim but dim {cfg.dim} must be the input's, e.g. "
                                    f"shape: {list(one)}")
        return tensor

    def output_shape(self, cfg, inputs):
        shape = inputs[0]
        tensor = self.tensor_shape(cfg, shape)
        if cfg.mode == "add":
            return shape
        axis = sample_axis(cfg.dim, shape, "prepend", "would add samples to the batch")
        return shape[:axis] + (shape[axis] + tensor[axis],) + shape[axis + 1:]

    def counts(self, cfg, inputs, output):
        return Counts(params=shapes.product(self.tensor_shape(cfg, inputs[0])), param_tensors=1)

    def rf_steps(self, cfg, inputs):
        if cfg.mode == "add":
            return [RFStep(1, 1, 0)] * (len(inputs[0]) - 1)
        return None  # the prepended positions see no input

    def label(self, cfg, inputs):
        tensor = fmt_shape(self.tensor_shape(cfg, inputs[0]))
        return f"+ parameter {tensor}" if cfg.mode == "add" else f"prepend parameter {tensor}"

    def saved(self, cfg, inputs, output, grad):
        return []  # an add and a cat need only sizes for their backward


class LayerScaleConfig(LayerConfig):
    type: Literal["layer_scale"]
    init: Real = Field(1e-6, description="Initial value of every scale (ConvNeXt: 1e-6).")
    dim: int = Field(1, description=(
        "The feature axis, one scale per position along it: 1 for the channels of a "
        "channels-first map (stored [C, 1, 1], as ConvNeXt), -1 for the last axis ([D]). "
        + DIM_DOC))


@register
class LayerScale(LayerKind):
    """Multiplies by a learned scale per feature (ConvNeXt's and CaiT's gamma)."""
    name = "layer_scale"
    family = "learned"
    Config = LayerScaleConfig
    direct_tensor = True

    def tensor_shape(self, cfg, shape) -> tuple[int, ...]:
        """The stored shape: the feature axis's size, then a 1 for every later axis."""
        axis = sample_axis(cfg.dim, shape, "layer_scale", "would scale each sample differently")
        return (shape[axis],) + (1,) * (len(shape) - axis - 1)

    def output_shape(self, cfg, inputs):
        self.tensor_shape(cfg, inputs[0])
        return inputs[0]

    def counts(self, cfg, inputs, output):
        return Counts(params=shapes.product(self.tensor_shape(cfg, inputs[0])), param_tensors=1)

    def label(self, cfg, inputs):
        return "layer scale"

    def saved(self, cfg, inputs, output, grad):
        """gamma * x keeps x for gamma's gradient (gamma, a parameter, is x's)."""
        return [SAVES_INPUT] if grad.params else []


class EmbeddingConfig(LayerConfig):
    type: Literal["embedding"]
    num_embeddings: Size = Field(description="Vocabulary size: token ids run 0 .. num_embeddings - 1.")
    embedding_dim: Size
    padding_idx: int | None = Field(None, description=(
        "A token id whose vector stays zero and gets no gradient (negative counts from the end)."))


@register
class Embedding(LayerKind):
    """nn.Embedding: token ids [L] -> vectors [L, embedding_dim]."""
    name = "embedding"
    family = "learned"
    Config = EmbeddingConfig
    base_name = "embed"
    layouts = frozenset({"ids"})

    def output_layout(self, cfg, inputs, layouts, output):
        return "channels_last"  # one vector per token: features last

    def output_shape(self, cfg, inputs):
        if cfg.padding_idx is not None and \
                not -cfg.num_embeddings <= cfg.padding_idx < cfg.num_embeddings:
            raise ShapeProblem(f"padding_idx {cfg.padding_idx} is not a token id of a vocabulary "
                               f"of {cfg.num_embeddings}", field="padding_idx",
                               hint=f"give an id from 0 to {cfg.num_embeddings - 1} (or from "
                                    f"-{cfg.num_embeddings} to -1)")
        return inputs[0] + (cfg.embedding_dim,)

    def counts(self, cfg, inputs, output):
        return Counts(params=cfg.num_embeddings * cfg.embedding_dim, param_tensors=1)

    def rf_steps(self, cfg, inputs):
        return [RFStep(1, 1, 0)] * len(inputs[0])  # one vector per token position

    def label(self, cfg, inputs):
        return f"embedding {cfg.num_embeddings}x{cfg.embedding_dim}"

    def saved(self, cfg, inputs, output, grad):
        """The weight's gradient needs the token ids (the input, int64)."""
        return [SAVES_INPUT] if grad.params else []
