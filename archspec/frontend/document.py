"""The top level of a spec file, and the entry point from text to IR."""
from __future__ import annotations

import math
import os
import re
from typing import Annotated, Any, BinaryIO, ClassVar, Literal

from annotated_types import Len

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, StringConstraints

from ..analysis import MAX_VALUES
from ..collector import collector_paused
from ..errors import Diagnostic, SpecError
from ..ir import INPUT, Network
from ..layers import COMPOSITES, REGISTRY
from ..layers.base import LAYOUT_ALIASES
from . import params as spec_params
from .expand import Expander, Scope
from .imports import resolve_imports
from .messages import canonical_type_name
from .open_sizes import DIM_NAME, SizeRange, open_sizes
from .sources import SpecSources
from .yaml_loader import Limits, SourceMap, load_yaml, load_yaml_file, load_yaml_stream

BLOCK_NAME = r"[A-Za-z_][A-Za-z0-9_]*"  # a type name, and the stem of its instances' names
MAX_DIM = 10 ** 9  # per input dim: larger is certainly a typo, and keeps products sane
# an input size, or a name leaving it open (archspec.frontend.open_sizes)
InputDim = PositiveInt | Annotated[str, StringConstraints(pattern=f"^{DIM_NAME}$")]


class BlockDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    description: str | None = None
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="Parameter defaults; null marks a required one.")
    layers: list[Any] = Field(json_schema_extra={"archspec_nested": "layers"},
                              description="The block's layers; '$param' and '$a * 2' substitute.")


class ImportEntry(BaseModel):
    """One file to take blocks and params from (archspec.frontend.imports reads them)."""
    model_config = ConfigDict(extra="forbid", strict=True)
    file: str = Field(description="Path of a spec file, relative to the importing file.")
    blocks: list[str] | None = Field(None, description=(
        "Only these blocks (and the blocks they use); default: all."))
    params: list[str] | None = Field(None, description="Only these params; default: all.")


class InputSpec(BaseModel):
    """The mapping form of `input`: its shape and what its axes mean."""
    model_config = ConfigDict(extra="forbid", strict=True)
    described_as: ClassVar[str] = "the input"  # in validation messages
    shape: list[InputDim] = Field(min_length=1, max_length=4, description=(
        "Shape without the batch dim: [C, L], [C, H, W] or [C, D, H, W] channels first, "
        "[L, D] tokens, [L] token ids; a name (H, W, L) leaves that size open."))
    layout: Literal["channels_first", "channels_last", "tokens", "ids", "vector"] = Field(
        "channels_first", description=(
            "channels_first: [C, ...] maps (conv, pools, batch_norm); channels_last or its "
            "alias tokens: features on the last axis ([L, D] token sequences: dense, layer_norm, "
            "attention, lstm); ids: integer token ids [L] (embedding); vector: [N] features."))
    sizes: dict[str, SizeRange] = Field(default_factory=dict, description=(
        "Ranges of the open sizes named in shape: {H: {min: 32, max: 2048, default: 224}}."))


def input_form(doc: "SpecDocument") -> tuple[tuple[int | str, ...], str, tuple]:
    """(shape, layout, path of the shape in the spec) of either form of `input`; the shape
    may hold names of open sizes."""
    if isinstance(doc.input, InputSpec):
        layout = LAYOUT_ALIASES.get(doc.input.layout, doc.input.layout)
        shape, path = tuple(doc.input.shape), ("input", "shape")
    else:
        shape, layout, path = tuple(doc.input), "channels_first", ("input",)
    if len(shape) == 1 and layout != "ids":
        layout = "vector"
    return shape, layout, path


class SpecDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(description="Network name.")
    description: str | None = None
    input: Annotated[list[InputDim], Len(1, 4)] | InputSpec = Field(description=(
        "Input shape without the batch dim, channels first: [C, L], [C, H, W] or [C, D, H, W] "
        "([N]: a vector), a name leaving a size open ([3, H, W]); or {shape: ..., layout: ..., "
        "sizes: ...} for token sequences, token ids and ranges of open sizes."))
    params: dict[str, Any] = Field(default_factory=dict, description=(
        "Spec parameters with their defaults (any YAML value; a default may be an expression "
        "over the parameters above it). Set from outside with --set name=value."))
    imports: list[ImportEntry] = Field(default_factory=list, description=(
        "Spec files to take blocks and params from (merged in before the rest is read)."))
    blocks: dict[str, BlockDefinition] = Field(
        default_factory=dict, description="User-defined blocks, used as types.",
        json_schema_extra={"propertyNames": {"pattern": f"^{BLOCK_NAME}$"}})
    layers: list[Any] = Field(json_schema_extra={"archspec_nested": "layers"})
    outputs: list[str] | None = Field(None, min_length=1, description=(
        "Output layer names (qualified names such as res.conv1 reach into blocks); default: the "
        "last layer."))


@collector_paused()
def load(path: str | os.PathLike, *, limits: Limits = Limits(), filename: str | None = None,
         params: dict[str, Any] | None = None, params_from: str = "params=",
         input_shape: list | None = None) -> Network:
    """Parse and expand the spec file at path (any name: a path is never read as YAML text),
    its parameters set from `params`, its input shape replaced by `input_shape` (the CLI's
    --input: sizes or names of open sizes); raises SpecError. YAML text goes to loads()."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"load() takes a path (str or os.PathLike), not {type(path).__name__}; "
                        "use loads() for YAML text")
    name = filename or os.fspath(path)
    if isinstance(path, str) and "\n" in path and not os.path.lexists(path):
        raise SpecError(Diagnostic(
            "no such spec file: the path given is several lines long", file="<path>",
            hint="to read YAML text, use archspec.loads(text)"))
    data, smap = load_yaml_file(path, limits, display_name=name)
    try:
        info = os.stat(path)
        identity = (info.st_dev, info.st_ino)
    except OSError:
        identity = None
    return named_build(data, smap, limits, os.path.dirname(os.fspath(path)), identity, params,
                       params_from, input_shape)


@collector_paused()
def loads(text: str | bytes, *, limits: Limits = Limits(), filename: str = "<string>",
          params: dict[str, Any] | None = None, params_from: str = "params=",
          imports: bool = True, input_shape: list | None = None) -> Network:
    """Parse and expand a spec given as YAML text (never a path); raises SpecError. Its imports
    are relative to the folder of `filename`, or to the working folder for a name in <...>;
    imports=False refuses them (a checkpoint's spec stands alone)."""
    if not isinstance(text, (str, bytes)):
        raise TypeError(f"loads() takes YAML text (str or bytes), not {type(text).__name__}")
    data, smap = load_yaml(text, filename, limits)
    return named_build(data, smap, limits, _text_base(filename) if imports else None, None,
                       params, params_from, input_shape)


@collector_paused()
def load_stream(stream: BinaryIO, *, limits: Limits = Limits(), filename: str = "<stdin>",
                params: dict[str, Any] | None = None, params_from: str = "params=",
                input_shape: list | None = None) -> Network:
    """Parse and expand a spec read from a binary stream (standard input) within the size limit."""
    data, smap = load_yaml_stream(stream, limits, filename)
    return named_build(data, smap, limits, _text_base(filename), None, params, params_from,
                       input_shape)


def _text_base(filename: str) -> str:
    """The folder a text's imports are relative to."""
    return "" if filename.startswith("<") else os.path.dirname(filename)


def named_build(data: Any, smap: SourceMap, limits: Limits, base: str | None,
                identity: tuple[int, int] | None = None, params: dict[str, Any] | None = None,
                params_from: str = "params=", input_shape: list | None = None) -> Network:
    """The spec's imports resolved, then build_network; the spec's name and its sources go
    on its SpecError (for --json, and for the CLI's source excerpts)."""
    sources = SpecSources(smap, data)
    try:
        data = resolve_imports(data, sources, limits, base, identity)
        return build_network(data, sources, params, params_from, input_shape)
    except SpecError as exc:
        name = data.get("name") if isinstance(data, dict) else None
        exc.spec_name = name if isinstance(name, str) else None
        exc.sources = sources
        raise


def build_network(data: Any, smap: SpecSources | SourceMap, params: dict[str, Any] | None = None,
                  params_from: str = "params=", input_shape: list | None = None) -> Network:
    if isinstance(smap, SourceMap):
        smap = SpecSources(smap, data)
    if not isinstance(data, dict):
        raise SpecError(smap.diagnostic((), "a spec must be a mapping with name, input and layers",
                                        hint="start with 'name: mynet', 'input: [3, 32, 32]', "
                                             "'layers:'"))
    # The one place where parameters are bound; the input shape may use them.
    values = spec_params.bind(data.get("params"), params, smap, params_from)
    smap.bound(values, set_from_outside=bool(params))
    probe = Expander(smap, {})
    try:
        data = dict(data, input=spec_params.substitute(data["input"], values, ("input",))) \
            if "input" in data else data
    except spec_params.ExpressionError as exc:
        raise SpecError(smap.diagnostic(exc.path, str(exc), hint=exc.hint)) from None
    reference = None  # the spec's own sizes, where --input leaves them open
    if input_shape is not None and "input" in data:
        given = data["input"]
        own = given.get("shape") if isinstance(given, dict) else given
        if isinstance(own, list) and all(isinstance(n, int) for n in own):
            reference = tuple(own)
        data = dict(data, input=dict(given, shape=list(input_shape)) if isinstance(given, dict)
                    else list(input_shape))
    if isinstance(data.get("input"), dict):  # the mapping form, in its own words
        given = probe.validate(InputSpec, data["input"], ("input",), Scope(prefix=()))
        if given is None:
            raise SpecError(probe.diagnostics)
        data = dict(data, input=given)
    doc = probe.validate(SpecDocument, data, (), Scope(prefix=()))
    if doc is None:
        raise SpecError(probe.diagnostics)
    diagnostics = []
    builtins = {canonical_type_name(kind): kind for kind in (*REGISTRY, *COMPOSITES)}
    for name in doc.blocks:
        if not re.fullmatch(BLOCK_NAME, name):
            fixed = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
            fixed = fixed if re.fullmatch(BLOCK_NAME, fixed) else f"block_{fixed}".strip("_")
            diagnostics.append(smap.diagnostic(
                ("blocks", name), f"block name {name!r} is not a valid name", at_key=True,
                hint="a block name is used as a layer type and names its layers: start with a "
                     f"letter or '_', then letters, digits and '_' (no dots or spaces), e.g. "
                     f"{fixed}"))
        elif name in REGISTRY or name in COMPOSITES:
            diagnostics.append(smap.diagnostic(("blocks", name), f"block name '{name}' is a "
                                               "built-in layer type", at_key=True,
                                               hint="rename the block"))
        elif canonical_type_name(name) in builtins:
            # A reader, and the JSON Schema in an editor, take it for the built-in type.
            kind = builtins[canonical_type_name(name)]
            diagnostics.append(smap.diagnostic(
                ("blocks", name), f"block name '{name}' is a spelling of the built-in layer "
                f"type '{kind}'", at_key=True, hint=f"rename the block, e.g. 'my_{kind}'"))
    for name, block in doc.blocks.items():  # a block's params are named like the spec's
        for param in block.params:
            problem = spec_params.bad_name(param)
            if problem:
                diagnostics.append(smap.diagnostic(("blocks", name, "params", param), problem[0],
                                                   at_key=True, hint=problem[1]))
    named_shape, input_layout, input_path = input_form(doc)
    input_shape, opened, problems = open_sizes(
        named_shape, input_layout, doc.input.sizes if isinstance(doc.input, InputSpec) else {},
        input_path, smap, reference)
    diagnostics += problems
    for i, size in enumerate(input_shape):
        if size > MAX_DIM:
            diagnostics.append(smap.diagnostic(input_path + (i,), f"input size {size} is absurd "
                                               f"(limit {MAX_DIM})", hint="check the input shape"))
    if not diagnostics and math.prod(input_shape) > MAX_VALUES:
        diagnostics.append(smap.diagnostic(input_path, f"input has {math.prod(input_shape):.3g} "
                                           f"values per sample, more than the limit of "
                                           f"{MAX_VALUES:.0e}", hint="check the input shape"))
    if diagnostics:
        raise SpecError(diagnostics)
    blocks = {k: v.model_dump() for k, v in doc.blocks.items()}
    ex = Expander(smap, blocks, values=values, input_shape=input_shape)
    top = Scope(prefix=(), values=values)  # expressions see the spec's params everywhere
    ex.expand(doc.layers, ("layers",), top, "input")
    outputs = _outputs(ex, doc, top)
    if ex.diagnostics:
        raise SpecError(ex.diagnostics, omitted=ex.omitted)
    network = Network(name=doc.name, description=doc.description, input_shape=input_shape,
                      nodes=ex.nodes, blocks=ex.blocks, outputs=outputs, source=smap,
                      params=values, input_layout=input_layout, open_sizes=opened)
    if ex.shapes.spatial_read:  # its layers depend on the sizes: another size is another build
        network.at_input = lambda shape: build_network(
            data, smap, params, params_from, [*shape])
    return network


def _outputs(ex: Expander, doc: SpecDocument, top: Scope) -> list[str]:
    """The nodes named by outputs:, resolved by the same rule as from: (qualified names reach
    into blocks; a layer's name means its output as written, activation included)."""
    if not ex.nodes:
        return []
    if doc.outputs is None:
        return [next(reversed(ex.nodes))]
    outs = []
    for i, name in enumerate(doc.outputs):
        if name == INPUT:
            ex.error(("outputs", i), "the network input cannot be an output",
                     hint="name a layer")
            continue
        found = ex.resolve(top, name, ("outputs", i))
        if found is not None:
            outs.append(found)
    return outs
