"""The top level of a spec file, and the entry point from text to IR."""
from __future__ import annotations

import math
import os
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from ..analysis import MAX_VALUES
from ..errors import SpecError
from ..ir import Network
from ..layers import COMPOSITES, REGISTRY
from .expand import Expander, Scope, did_you_mean
from .yaml_loader import Limits, load_yaml, load_yaml_file

MAX_DIM = 10 ** 9  # per input dim: larger is certainly a typo, and keeps products sane


class BlockDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    description: str | None = None
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Parameter defaults; null marks a required one.")
    layers: list[Any] = Field(json_schema_extra={"archspec_nested": "layers"},
                              description="The block's layers; '$param' and '$a * 2' substitute.")


class SpecDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(description="Network name.")
    description: str | None = None
    input: list[PositiveInt] = Field(min_length=1, max_length=4, description=(
        "Input shape without the batch dim, channels first: [C, L], [C, H, W] or [C, D, H, W]."))
    blocks: dict[str, BlockDefinition] = Field(default_factory=dict,
                                               description="User-defined blocks, used as types.")
    layers: list[Any] = Field(json_schema_extra={"archspec_nested": "layers"})
    outputs: list[str] | None = Field(None, description="Output layer names; default: the last.")


def load(source: str | os.PathLike, *, limits: Limits = Limits(),
         filename: str | None = None) -> Network:
    """Parse and expand a spec given as a path or as YAML text; raises SpecError."""
    if isinstance(source, os.PathLike) or ("\n" not in source and
                                           source.endswith((".yaml", ".yml"))):
        path = FsPath(source)
        if not path.exists():
            raise SpecError(_no_file(str(source)))
        data, smap = load_yaml_file(path, limits, display_name=filename or str(source))
    else:
        data, smap = load_yaml(source, filename or "<string>", limits)
    return build_network(data, smap)


def _no_file(name: str):
    from ..errors import Diagnostic
    return Diagnostic(f"no such spec file: {name}", file=name, hint="check the path")


def build_network(data: Any, smap) -> Network:
    if not isinstance(data, dict):
        raise SpecError(smap.diagnostic((), "a spec must be a mapping with name, input and layers",
                                        hint="start with 'name: mynet', 'input: [3, 32, 32]', "
                                             "'layers:'"))
    probe = Expander(smap, {})
    doc = probe.validate(SpecDocument, data, (), Scope(prefix=()))
    if doc is None:
        raise SpecError(probe.diagnostics)
    diagnostics = []
    for name in doc.blocks:
        if name in REGISTRY or name in COMPOSITES:
            diagnostics.append(smap.diagnostic(("blocks", name), f"block name '{name}' is a "
                                               "built-in layer type", at_key=True,
                                               hint="rename the block"))
    for i, size in enumerate(doc.input):
        if size > MAX_DIM:
            diagnostics.append(smap.diagnostic(("input", i), f"input size {size} is absurd "
                                               f"(limit {MAX_DIM})", hint="check the input shape"))
    if not diagnostics and math.prod(doc.input) > MAX_VALUES:
        diagnostics.append(smap.diagnostic(("input",), f"input has {math.prod(doc.input):.3g} "
                                           f"values per sample, more than the limit of "
                                           f"{MAX_VALUES:.0e}", hint="check the input shape"))
    if diagnostics:
        raise SpecError(diagnostics)
    blocks = {k: v.model_dump() for k, v in doc.blocks.items()}
    ex = Expander(smap, blocks)
    ex.expand_items(doc.layers, ("layers",), Scope(prefix=()), "input")
    outputs = _outputs(ex, doc, smap)
    if ex.diagnostics:
        raise SpecError(ex.diagnostics)
    return Network(name=doc.name, description=doc.description, input_shape=tuple(doc.input),
                   nodes=ex.nodes, blocks=ex.blocks, outputs=outputs, source=smap)


def _outputs(ex: Expander, doc: SpecDocument, smap) -> list[str]:
    if not ex.nodes:
        return []
    if doc.outputs is None:
        return [next(reversed(ex.nodes))]
    known = {n.split(".")[-1] if "." not in n else n: n for n in ex.nodes}
    known.update({n: n for n in ex.nodes})
    known.update({b: blk.output for b, blk in ex.blocks.items() if blk.output})
    outs = []
    for i, name in enumerate(doc.outputs):
        if name not in known:
            ex.diagnostics.append(smap.diagnostic(
                ("outputs", i), f"output '{name}' is not a layer",
                hint=did_you_mean(name, list(known)) or "name a top-level layer"))
        else:
            outs.append(known[name])
    return outs
