"""Composite blocks: they expand into several nodes inside a named scope (a diagram cluster).

Each kind has a config schema and an ``expand(host, cfg, use)`` that drives expansion through
the composite protocol only (archspec/frontend/composite.py: Host, Use). Nested layer lists are typed ``list[Any]`` here and validated item by item during expansion,
so every error keeps its own location; the JSON Schema links them to the layer union.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from .base import DIM_DOC, INLINE_DOC, LayerConfig, Size, register_composite
from .conv import Padding

if TYPE_CHECKING:
    from ..frontend.composite import Host, Use
NESTED = {"archspec_nested": "layers"}          # a list of layers
NESTED_PATHS = {"archspec_nested": "paths"}     # branches: a list or mapping of paths
NESTED_SHORTCUT = {"archspec_nested": "shortcut"}  # a keyword or a path
NAME = r"[A-Za-z0-9_]+"
SHORTCUTS = ("identity", "projection", "none")


class PathConfig(BaseModel):
    """A branch or shortcut written as a mapping: its own name or numbering."""
    model_config = ConfigDict(extra="forbid", strict=True)
    described_as: ClassVar[str] = "the path"
    name: str | None = Field(None, pattern=f"^{NAME}$", description="Its scope's name.")
    numbered: bool = Field(False, description="Name its members 0, 1, 2, ... (nn.Sequential).")
    layers: list[Any] = Field(json_schema_extra=NESTED, description="Its layers, in order.")


class BranchPath(PathConfig):
    described_as: ClassVar[str] = "the branch"


class ShortcutPath(PathConfig):
    described_as: ClassVar[str] = "the shortcut"


def open_path(host: Host, outer, spec: Any, path, start, *, default: str, name: str | None = None,
              name_path=None, kind: str, keyed: bool = False):
    """The scope of a branch or shortcut written as a list of layers or as a PathConfig
    mapping; (scope, layers, path of the layers), scope None after a reported error."""
    layers, layers_path, numbered = spec, path, False
    if isinstance(spec, dict):
        cfg = host.validate(BranchPath if kind == "branch" else ShortcutPath, spec, path, outer)
        if cfg is None:
            return None, None, None
        if cfg.name is not None and name is not None:
            host.error(path + ("name",), f"this {kind} is named twice ('{name}' and "
                       f"'{cfg.name}')", scope=outer, hint="keep one of the two names")
            return None, None, None
        if cfg.name is not None:
            name, name_path, keyed = cfg.name, path + ("name",), False
        layers, layers_path, numbered = cfg.layers, path + ("layers",), cfg.numbered
    scope = host.open(outer, path, kind, kind, name=name if name is not None else default,
                      fixed=name is None, name_path=name_path, name_at_key=keyed,
                      numbered=numbered, input=start)
    return scope, layers, layers_path


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
    copy_names: str | None = Field(None, description="A template naming the copies instead of "
                                   "0, 1, ...: 'denselayer${$i + 1}'.")
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
        if cfg.inline and cfg.copy_names is not None:
            host.error(path + ("copy_names",), "an inline repeat has no copies to name",
                       scope=use.scope, hint="remove 'copy_names' (the copies' layers are named "
                       "in the enclosing scope), or remove 'inline: true'")
            return None
        if cfg.copy_names is not None and "${" not in cfg.copy_names and cfg.times > 1:
            host.error(path + ("copy_names",), f"copy_names '{cfg.copy_names}' gives every copy "
                       "the same name", scope=use.scope,
                       hint=f"make it depend on the copy's number: '{cfg.copy_names}${{${cfg.index}"
                            " + 1}'")
            return None
        single = len(layers) == 1 and isinstance(layers[0], dict) and "name" not in layers[0] \
            and layers[0].get("inline") is not True and not _is_primitive(layers[0])
        before = host.size()
        for i in range(cfg.times):
            if i == 1 and not host.room_for(cfg.times, host.size() - before, path, use.scope):
                return None
            values = {cfg.index: i}
            name = str(i) if cfg.copy_names is None else \
                host.render_name(cfg.copy_names, outer, values, path + ("copy_names",))
            if name is None:
                return None
            if single:  # the copy *is* the block: named i (inline: named as any block there)
                start = host.expand_item(layers[0], path + ("layers", 0), outer, start,
                                         name=None if cfg.inline else name, values=values)
            else:
                inner = host.open(outer, path, "sequential", "", name=name,
                                  fixed=cfg.copy_names is None, values=values, input=start,
                                  inline=cfg.inline, name_path=path + ("copy_names",))
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
    branches: list[list[Any] | dict[str, Any]] | dict[str, list[Any] | dict[str, Any]] = Field(
        min_length=1, json_schema_extra=NESTED_PATHS,
        description="Parallel paths, each a list of layers or {name, numbered, layers}; as a "
                    "mapping, each key names its path. Default names: branch1, branch2, ...")
    branch_names: list[str] | None = Field(None, description="The branches' names, in order.")
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
        for i, (branch, b_path, name, name_path) in enumerate(_named_branches(host, cfg, use)):
            b_scope, layers, layers_path = open_path(
                host, inner, branch, b_path, start, default=f"branch{i + 1}", name=name,
                name_path=name_path, kind="branch", keyed=isinstance(cfg.branches, dict))
            if b_scope is None:
                return None
            outs.append(host.close(inner, b_scope, host.expand(layers, layers_path, b_scope,
                                                               start)))
        if not outs:
            return None
        fields = {"dim": cfg.dim} if cfg.merge == "concat" else {}
        out = host.insert(inner, cfg.merge, fields, outs, path, name=cfg.merge) \
            if len(outs) > 1 else outs[0]
        return host.close(use.scope, inner, out)


def _named_branches(host: Host, cfg, use: Use):
    """(branch, its path, its name or None, where the name is written) for each branch."""
    path = use.path + ("branches",)
    if isinstance(cfg.branches, dict):
        if cfg.branch_names is not None:
            host.error(use.path + ("branch_names",), "branches written as a mapping are named by "
                       "its keys", scope=use.scope, hint="remove 'branch_names'")
            return []
        return [(b, path + (key,), key, path + (key,)) for key, b in cfg.branches.items()]
    names = cfg.branch_names
    if names is not None and len(names) != len(cfg.branches):
        host.error(use.path + ("branch_names",), f"branch_names has {len(names)} names for "
                   f"{len(cfg.branches)} branches", scope=use.scope,
                   hint="give one name per branch, in order")
        return []
    return [(b, path + (i,), None if names is None else names[i],
             None if names is None else use.path + ("branch_names", i))
            for i, b in enumerate(cfg.branches)]


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
    shortcut: Literal[SHORTCUTS] | list[Any] | dict[str, Any] = Field(
        "identity", json_schema_extra=NESTED_SHORTCUT,
        description="identity; projection (1x1 conv + batch norm, inserted only when the body "
                    "changes the shape); none (no addition: the body alone); a list of layers "
                    "(scope 'shortcut'); or {name, numbered, layers} (e.g. name: downsample, "
                    "numbered: true gives downsample.0, downsample.1 as torchvision).")
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
        if isinstance(cfg.shortcut, (list, dict)):
            s_scope, layers, layers_path = open_path(host, inner, cfg.shortcut,
                                                     path + ("shortcut",), start,
                                                     default="shortcut", kind="shortcut")
            if s_scope is None:
                return None
            skip = host.close(inner, s_scope, host.expand(layers, layers_path, s_scope, start))
        elif cfg.shortcut == "projection":
            skip = host.insert(inner, "projection", {}, [start, body], path + ("shortcut",),
                               name="shortcut", skip=(0,))
        else:
            skip = start
        out = body if cfg.shortcut == "none" else \
            host.insert(inner, "add", {}, [body, skip], path, name="add",
                        skip=(1,) if cfg.shortcut == "identity" or skip == start else ())
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
