"""Composite blocks: they expand into several nodes inside a named scope (a diagram cluster).

Each kind has a config schema and an ``expand(host, cfg, use)`` that drives expansion through
the composite protocol only (archspec/frontend/composite.py: Host, Use). Nested layer lists are typed ``list[Any]`` here and validated item by item during expansion,
so every error keeps its own location; the JSON Schema links them to the layer union.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, PositiveInt

from .base import DIM_DOC, INLINE_DOC, LayerConfig, Size, register_composite
from .conv import Padding

if TYPE_CHECKING:
    from ..frontend.composite import Host, Use

NESTED = {"archspec_nested": "layers"}          # a list of layers
NESTED_LISTS = {"archspec_nested": "branches"}  # a list of lists of layers


class CompositeConfig(LayerConfig):
    inline: bool = Field(False, description=INLINE_DOC)


class SequentialConfig(CompositeConfig):
    type: Literal["sequential"]
    layers: list[Any] = Field(json_schema_extra=NESTED, description="The layers, in order.")
    numbered: bool = Field(False, description="Name the members 0, 1, 2, ... as nn.Sequential "
                           "does (activations and inline blocks' layers included; a nested "
                           "block takes one number); explicit names are then an error.")


@register_composite
class Sequential:
    """A named group of layers in order (torchvision's nn.Sequential stages)."""
    name = "sequential"
    Config = SequentialConfig
    stem = "seq"

    def expand(self, host: Host, cfg, use: Use):
        start, inner = host.begin(use, cfg)
        if inner is None:
            return None
        return host.close(use.scope, inner, host.expand(cfg.layers, use.path + ("layers",),
                                                        inner, start))


class RepeatConfig(CompositeConfig):
    type: Literal["repeat"]
    times: PositiveInt = Field(le=10_000, description="How many copies, named 0, 1, ...")
    index: str = Field("i", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                       description="The variable holding the copy's number (0, 1, ...) in "
                                   "expressions inside the copy ($i).")
    layers: list[Any] = Field(json_schema_extra=NESTED,
                              description="One copy's layers; a single block is inlined.")


@register_composite
class Repeat:
    """N copies of the same layers; copy i is scope 'i' (layer1.0.conv1, layer1.1.conv1)."""
    name = "repeat"
    Config = RepeatConfig
    stem = "repeat"

    def expand(self, host: Host, cfg, use: Use):
        start, outer = host.begin(use, cfg)
        if outer is None:
            return None
        layers, path = cfg.layers, use.path
        single = len(layers) == 1 and isinstance(layers[0], dict) and "name" not in layers[0] \
            and not _is_primitive(layers[0])
        before = host.size()
        for i in range(cfg.times):
            if i == 1 and not host.room_for(cfg.times, host.size() - before, path, use.scope):
                return None
            values = {cfg.index: i}
            if single:  # the copy *is* the block: named i (inline: named as any block there)
                start = host.expand_item(layers[0], path + ("layers", 0), outer, start,
                                         name=None if cfg.inline else str(i), values=values)
            else:
                inner = host.open(outer, path, "sequential", "", name=str(i), fixed=True,
                                  values=values, input=start, inline=cfg.inline)
                if inner is None:
                    return None
                start = host.close(outer, inner, host.expand(layers, path + ("layers",), inner,
                                                             start))
            if host.stopped:
                break
        return host.close(use.scope, outer, start)


def _is_primitive(item: dict) -> bool:
    from .base import REGISTRY
    kind = item.get("type")
    return isinstance(kind, str) and kind in REGISTRY


class BranchesConfig(CompositeConfig):
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

    def expand(self, host: Host, cfg, use: Use):
        start, inner = host.begin(use, cfg)
        if inner is None:
            return None
        outs, path = [], use.path
        for i, branch in enumerate(cfg.branches):
            b_scope = host.open(inner, path + ("branches", i), "branch", "branch",
                                name=f"branch{i + 1}", fixed=True, input=start)
            if b_scope is None:
                return None
            outs.append(host.close(inner, b_scope, host.expand(
                branch, path + ("branches", i), b_scope, start)))
        fields = {"dim": cfg.dim} if cfg.merge == "concat" else {}
        out = host.insert(inner, cfg.merge, fields, outs, path, name=cfg.merge) \
            if len(outs) > 1 else outs[0]
        return host.close(use.scope, inner, out)


@register_composite
class Branches(_Branches):
    name = "branches"
    Config = BranchesConfig


@register_composite
class Inception(_Branches):
    name = "inception"
    Config = InceptionConfig
    stem = "inception"


class ResidualConfig(CompositeConfig):
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

    def expand(self, host: Host, cfg, use: Use):
        start, inner = host.begin(use, cfg)
        if inner is None:
            return None
        path = use.path
        body = host.expand(cfg.layers, path + ("layers",), inner, start)
        if isinstance(cfg.shortcut, list):
            s_scope = host.open(inner, path + ("shortcut",), "shortcut", "", name="shortcut",
                                fixed=True, input=start)
            if s_scope is None:
                return None
            skip = host.close(inner, s_scope, host.expand(
                cfg.shortcut, path + ("shortcut",), s_scope, start))
        elif cfg.shortcut == "projection":
            skip = host.insert(inner, "projection", {}, [start, body], path + ("shortcut",),
                               name="shortcut", skip=(0,))
        else:
            skip = start
        out = host.insert(inner, "add", {}, [body, skip], path, name="add",
                          skip=(1,) if cfg.shortcut == "identity" else ())
        if cfg.activation is not None and out is not None:
            out = host.activate(inner, cfg.activation, out, path + ("activation",))
        return host.close(use.scope, inner, out)


class SeparableConvConfig(CompositeConfig):
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

    def expand(self, host: Host, cfg, use: Use):
        start, inner = host.begin(use, cfg)
        if inner is None:
            return None
        common, path = {"bias": cfg.bias, "trainable": cfg.trainable}, use.path
        mid = host.insert(inner, "depthwise_conv", dict(
            common, name="depthwise", kernel_size=cfg.kernel_size, stride=cfg.stride,
            padding=cfg.padding, dilation=cfg.dilation, depth_multiplier=cfg.depth_multiplier),
            [start], path, name="depthwise")
        out = host.insert(inner, "conv", dict(common, name="pointwise", kernel_size=1,
                                              out_channels=cfg.out_channels),
                          [mid], path, name="pointwise")
        if cfg.activation is not None and out is not None:
            out = host.activate(inner, cfg.activation, out, path + ("activation",))
        return host.close(use.scope, inner, out)
