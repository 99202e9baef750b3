"""Composite blocks: they expand into several nodes inside a named scope (a diagram cluster).

Each kind has a config schema and an ``expand`` that drives the Expander (archspec.frontend.expand).
Nested layer lists are typed ``list[Any]`` here and validated item by item during expansion,
so every error keeps its own location; the JSON Schema links them to the layer union.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, PositiveInt

from .base import DIM_DOC, LayerConfig, Size, register_composite
from .conv import Padding

NESTED = {"archspec_nested": "layers"}          # a list of layers
NESTED_LISTS = {"archspec_nested": "branches"}  # a list of lists of layers


class SequentialConfig(LayerConfig):
    type: Literal["sequential"]
    layers: list[Any] = Field(json_schema_extra=NESTED, description="The layers, in order.")


@register_composite
class Sequential:
    """A named group of layers in order (torchvision's nn.Sequential stages)."""
    name = "sequential"
    Config = SequentialConfig
    stem = "seq"

    def expand(self, ex, cfg, item, path, scope, current):
        start, inner = ex.enter_block(self, scope, item, path, current)
        if inner is None:
            return None
        return ex.close_block(scope, inner, ex.expand_items(cfg.layers, path + ("layers",), inner,
                                                           start))


class RepeatConfig(LayerConfig):
    type: Literal["repeat"]
    times: PositiveInt = Field(le=10_000, description="How many copies, named 0, 1, ...")
    layers: list[Any] = Field(json_schema_extra=NESTED,
                              description="One copy's layers; a single block is inlined.")


@register_composite
class Repeat:
    """N copies of the same layers; copy i is scope 'i' (layer1.0.conv1, layer1.1.conv1)."""
    name = "repeat"
    Config = RepeatConfig
    stem = "repeat"

    def expand(self, ex, cfg, item, path, scope, current):
        start, outer = ex.enter_block(self, scope, item, path, current)
        if outer is None:
            return None
        layers = cfg.layers
        single = len(layers) == 1 and isinstance(layers[0], dict) and "name" not in layers[0]
        before = len(ex.nodes)
        for i in range(cfg.times):
            if i == 1 and not _copies_fit(ex, cfg, len(ex.nodes) - before, path, scope):
                return None
            if single:  # the copy *is* the block: name it i
                copy = dict(layers[0], name=str(i)) if not _is_primitive(ex, layers[0]) else None
                if copy is not None:
                    start = ex.expand_item(copy, path + ("layers", 0), outer, start)
                    continue
            inner = ex.open_block(outer, {"name": str(i)}, "sequential", path, "")
            if inner is None:
                return None
            start = ex.close_block(outer, inner,
                                   ex.expand_items(layers, path + ("layers",), inner, start))
            if ex.too_big:
                break
        return ex.close_block(scope, outer, start)


def _copies_fit(ex, cfg, per_copy: int, path, scope) -> bool:
    """After the first copy: refuse at once a repeat whose copies would pass the node limit
    (rather than building 100,000 layers first)."""
    from ..frontend.expand import MAX_NODES
    total = len(ex.nodes) + per_copy * (cfg.times - 1)
    if total <= MAX_NODES:
        return True
    ex.error(path + ("times",), f"this repeat expands to {total:,} layers ({cfg.times:,} copies "
             f"of {per_copy:,}), more than the limit of {MAX_NODES:,}", scope=scope,
             hint="reduce 'times' here or in the repeats inside it")
    ex.too_big = True
    return False


def _is_primitive(ex, item: dict) -> bool:
    from .base import REGISTRY
    kind = item.get("type")
    return isinstance(kind, str) and kind in REGISTRY


class BranchesConfig(LayerConfig):
    type: Literal["branches"]
    branches: list[list[Any]] = Field(min_length=1, json_schema_extra=NESTED_LISTS,
                                      description="Parallel paths, each a list of layers.")
    merge: Literal["concat", "add", "multiply"] = "concat"
    dim: int = Field(1, description="Concat dim (merge: concat). " + DIM_DOC)


class InceptionConfig(BranchesConfig):
    type: Literal["inception"]


class _Branches:
    """Split-transform-merge: each branch reads the block input; outputs are merged."""
    stem = "branches"

    def expand(self, ex, cfg, item, path, scope, current):
        start, inner = ex.enter_block(self, scope, item, path, current)
        if inner is None:
            return None
        outs = []
        for i, branch in enumerate(cfg.branches):
            b_item = {"name": f"branch{i + 1}"}
            b_scope = ex.open_block(inner, b_item, "branch", path + ("branches", i), "branch")
            if b_scope is None:
                return None
            outs.append(ex.close_block(inner, b_scope, ex.expand_items(
                branch, path + ("branches", i), b_scope, start)))
        merge = ex.validate_merge(cfg.merge, {"dim": cfg.dim} if cfg.merge == "concat" else {})
        out = ex.add_node(inner, {"name": cfg.merge}, merge, outs, path) if len(outs) > 1 \
            else outs[0]
        return ex.close_block(scope, inner, out)


@register_composite
class Branches(_Branches):
    name = "branches"
    Config = BranchesConfig


@register_composite
class Inception(_Branches):
    name = "inception"
    Config = InceptionConfig
    stem = "inception"


class ResidualConfig(LayerConfig):
    type: Literal["residual"]
    layers: list[Any] = Field(json_schema_extra=NESTED, description="The body.")
    shortcut: Literal["identity", "projection"] | list[Any] = Field(
        "identity", description="identity; projection (1x1 conv + batch norm, inserted only "
                                "when the body changes the shape); or a list of layers.")
    activation: str | None = Field(None, description="Applied after the addition (post-activation).")


@register_composite
class Residual:
    """out = activation(body(x) + shortcut(x))."""
    name = "residual"
    Config = ResidualConfig
    stem = "res"

    def expand(self, ex, cfg, item, path, scope, current):
        start, inner = ex.enter_block(self, scope, item, path, current)
        if inner is None:
            return None
        body = ex.expand_items(cfg.layers, path + ("layers",), inner, start)
        if isinstance(cfg.shortcut, list):
            s_scope = ex.open_block(inner, {"name": "shortcut"}, "shortcut",
                                    path + ("shortcut",), "")
            if s_scope is None:
                return None
            skip = ex.close_block(inner, s_scope, ex.expand_items(
                cfg.shortcut, path + ("shortcut",), s_scope, start))
        elif cfg.shortcut == "projection":
            proj = ex.validate_merge("projection", {})
            skip = ex.add_node(inner, {"name": "shortcut"}, proj, [start, body],
                               path + ("shortcut",), skip=(0,))
        else:
            skip = start
        add = ex.add_node(inner, {"name": "add"}, ex.validate_merge("add", {}), [body, skip],
                          path, skip=(1,) if cfg.shortcut == "identity" else ())
        out = add
        if cfg.activation is not None and add is not None:
            out = ex.add_activation(inner, cfg.activation, add, path + ("activation",))
        return ex.close_block(scope, inner, out)


class SeparableConvConfig(LayerConfig):
    type: Literal["separable_conv"]
    out_channels: Size
    kernel_size: Size | list[Size]
    stride: Size | list[Size] = 1
    padding: Padding = 0
    dilation: Size | list[Size] = 1
    depth_multiplier: Size = 1
    bias: bool = True
    activation: str | None = Field(None, description="Applied after the pointwise conv.")


@register_composite
class SeparableConv:
    """Depthwise-separable conv: a depthwise k x k conv, then a pointwise 1x1 conv."""
    name = "separable_conv"
    Config = SeparableConvConfig
    stem = "sepconv"

    def expand(self, ex, cfg, item, path, scope, current):
        start, inner = ex.enter_block(self, scope, item, path, current)
        if inner is None:
            return None
        common = {"bias": cfg.bias, "trainable": cfg.trainable}
        depthwise = ex.validate_merge("depthwise_conv", dict(
            common, name="depthwise", kernel_size=cfg.kernel_size, stride=cfg.stride,
            padding=cfg.padding, dilation=cfg.dilation, depth_multiplier=cfg.depth_multiplier))
        mid = ex.add_node(inner, {"name": "depthwise"}, depthwise, [start], path)
        pointwise = ex.validate_merge("conv", dict(common, name="pointwise", kernel_size=1,
                                                   out_channels=cfg.out_channels))
        out = ex.add_node(inner, {"name": "pointwise"}, pointwise, [mid], path)
        if cfg.activation is not None and out is not None:
            out = ex.add_activation(inner, cfg.activation, out, path + ("activation",))
        return ex.close_block(scope, inner, out)
