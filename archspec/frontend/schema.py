"""JSON Schema (draft 2020-12) of the spec language, generated from the pydantic models.

For editors: `archspec schema > archspec.schema.json`, then start a spec with
    # yaml-language-server: $schema=archspec.schema.json

Shape of the schema:
  * the top level is SpecDocument;
  * `#/$defs/layer` is a oneOf over every built-in kind's Config (each pins `type` to a
    const), the short form (a string naming a kind, e.g. `- relu`) and a user-defined block
    instance (an object whose `type` is not a built-in name: allowed loosely, since its
    parameters are declared in the spec itself);
  * nested layer lists (fields marked `archspec_nested`) point back to that union;
  * any value of a layer (and `input`'s sizes) may be an expression ('$width * 2', a string
    holding '$'), and every layer takes `when:`; block bodies refer to a twin union,
    `#/$defs/block_layer`, that also allows user block types without `blocks:` checks;
    a `type:` may be an expression too;
  * layer types: a JSON Schema cannot check that a type names a block defined in the same
    document, so a document without `blocks:` allows only the built-in types (`#/$defs/
    builtin_types_only`, applied to every nested layer list), and where blocks exist a user
    block's type may be any name except a spelling of a built-in one (`conv2d`, `MaxPool2d`,
    `Batch_Norm`: the pattern `#/$defs/builtin_spelling`), which `check` refuses as a block name
    too.

The schema helps editors; `archspec check` remains the authority (it also checks shapes,
names and references, which a schema cannot express).
"""
from __future__ import annotations

import copy
import re
from typing import Any

from pydantic.json_schema import models_json_schema

from ..layers import COMPOSITES, REGISTRY
from ..layers.base import INLINE_DOC
from ..layers.blocks import NAME, SHORTCUTS
from .document import BLOCK_NAME, SpecDocument
from .messages import canonical_type_name

DIALECT = "https://json-schema.org/draft/2020-12/schema"
LAYER = "layer"
BLOCK_LAYER = "block_layer"
PARAM = "param_expression"
BUILTIN_ONLY = "builtin_types_only"
SPELLING = "builtin_spelling"
_NESTED = "archspec_nested"
WHEN = {"anyOf": [{"type": "boolean"}, {"$ref": f"#/$defs/{PARAM}"}],
        "description": "false leaves the layer out (its input passes on)."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _nested_list(kind: str, union: str, field_schema: dict[str, Any]) -> dict[str, Any]:
    """A nested layer list ("layers"), the paths of a branches block ("paths": a list or mapping
    of paths) or a residual's shortcut ("shortcut": a keyword or a path), with $refs to `union`.
    A path is a list of layers or {name, numbered, layers}."""
    layers: dict[str, Any] = {"type": "array", "items": _ref(union)}
    path = {"anyOf": [layers, {
        "type": "object", "additionalProperties": False, "required": ["layers"],
        "properties": {"name": {"type": "string", "pattern": f"^{NAME}$"},
                       "numbered": {"type": "boolean"}, "layers": layers}}]}
    if kind == "paths":
        items: dict[str, Any] = {"anyOf": [
            {"type": "array", "minItems": 1, "items": path},
            {"type": "object", "minProperties": 1, "additionalProperties": path,
             "propertyNames": {"pattern": f"^{NAME}$"}}]}
    elif kind == "shortcut":
        items = {"anyOf": [{"enum": list(SHORTCUTS)}, path]}
    else:
        items = layers
    keep = {k: v for k, v in field_schema.items()
            if k in ("title", "description", "minItems", "maxItems", "default")}
    return {**keep, **items}


def _link_nested(schema: Any, union: str) -> Any:
    """Replace every property marked archspec_nested by an array of `union` references."""
    if isinstance(schema, dict):
        if _NESTED in schema:
            return _nested_list(schema[_NESTED], union, schema)
        return {k: _link_nested(v, union) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_link_nested(v, union) for v in schema]
    return schema


def _allow_params(model_schema: dict[str, Any]) -> dict[str, Any]:
    """A layer schema whose fields but `type` may be expressions, plus `when:`."""
    out = copy.deepcopy(model_schema)
    props = out.get("properties", {})
    for key, prop in props.items():
        if key != "type" and prop.get(_NESTED) in (None, "shortcut"):  # not a list of layers
            props[key] = {"anyOf": [prop, _ref(PARAM)]}
    props["when"] = WHEN
    return out


def _case_free(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)


def _spelling_pattern(builtins: list[str]) -> str:
    """Every name that reads as a built-in type: any case, '_', '-' or spaces between letters,
    and a dimension suffix (`conv2d`, `Max_Pool2D`); see messages.canonical_type_name."""
    canon = sorted({canonical_type_name(b) for b in builtins}, key=lambda c: (-len(c), c))
    sep = "[-_ ]*"
    alternatives = [sep.join(_case_free(c) for c in name) for name in canon]
    return f"^{sep}(?:{'|'.join(alternatives)})(?:{sep}[123][dD])?{sep}$"


def _user_block_type() -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{BLOCK_NAME}$", "not": _ref(SPELLING)}


def _builtin_types_only(builtins: list[str], nested: dict[str, str]) -> dict[str, Any]:
    """Layer types in a document without `blocks:`: built-in only, in nested lists too."""
    only = _ref(BUILTIN_ONLY)
    return {
        "description": "In a spec without `blocks:`, every layer type is a built-in one.",
        "anyOf": [
            {"type": "string", "enum": builtins},
            {"type": "object",
             "properties": {"type": {"anyOf": [{"enum": builtins}, _ref(PARAM)]},
                            **{field: {"items": {"items": only} if kind == "paths" else only}
                               for field, kind in nested.items()}}},
            {"not": {"type": ["string", "object"]}},  # other mistakes: left to the layer union
        ],
    }


def _layer_union(builtin_refs: list[dict[str, str]], builtins: list[str]) -> dict[str, Any]:
    user_block = {
        "type": "object",
        "description": "An instance of a block defined under `blocks:`; its other keys are the "
                       "block's parameters.",
        "required": ["type"],
        "properties": {
            "type": _user_block_type(),
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
            "from": {"anyOf": [{"type": "string"},
                               {"type": "array", "items": {"type": "string"}}]},
            "trainable": {"type": "boolean"},
            "inline": {"type": "boolean", "description": INLINE_DOC},
            "when": WHEN,
        },
        "additionalProperties": True,
    }
    by_expression = {
        "type": "object", "required": ["type"], "additionalProperties": True,
        "description": "A layer or block whose type an expression chooses.",
        "properties": {"type": _ref(PARAM)},
    }
    short_form = {
        "type": "string",
        "description": "Short form: a layer type with its defaults, e.g. `- relu` or "
                       "`- flatten` (or a user block without parameters).",
        "anyOf": [{"enum": builtins}, _user_block_type()],
        "examples": sorted(k for k, v in REGISTRY.items() if v.min_inputs <= 1
                           and not any(f.is_required() and n != "type"
                                       for n, f in v.Config.model_fields.items())),
    }
    return {"description": "One layer: a mapping with a `type`, or a type name.",
            "oneOf": builtin_refs + [user_block, by_expression, short_form]}


def spec_json_schema() -> dict[str, Any]:
    """The whole JSON Schema, as a dict ready for json.dumps."""
    kinds = sorted({**REGISTRY, **COMPOSITES}.items())
    models = [SpecDocument] + [kind.Config for _, kind in kinds]
    refs, top = models_json_schema([(m, "validation") for m in models],
                                   ref_template="#/$defs/{model}")
    defs: dict[str, Any] = top["$defs"]
    layer_defs = []
    for _, kind in kinds:
        name = refs[(kind.Config, "validation")]["$ref"].rsplit("/", 1)[-1]
        layer_defs.append(name)
    # Block bodies: twins of every layer def that take $param strings and nest block layers.
    for name in layer_defs:
        defs[f"{name}_in_block"] = _link_nested(_allow_params(defs[name]), BLOCK_LAYER)
        defs[name] = _link_nested(_allow_params(defs[name]), LAYER)
    block_def = refs[(SpecDocument, "validation")]["$ref"].rsplit("/", 1)[-1]
    for name, schema in list(defs.items()):
        if name == "BlockDefinition":
            defs[name] = _link_nested(schema, BLOCK_LAYER)
        elif name == block_def or name not in layer_defs and not name.endswith("_in_block"):
            defs[name] = _link_nested(schema, LAYER)
    builtins = [name for name, _ in kinds]
    defs[LAYER] = _layer_union([_ref(n) for n in layer_defs], builtins)
    block_union = _layer_union([_ref(f"{n}_in_block") for n in layer_defs], builtins)
    block_union["description"] = ("One layer of a block body: as a layer, but any value may be "
                                  "a parameter expression such as '$channels * 2'.")
    defs[BLOCK_LAYER] = block_union
    defs[PARAM] = {"type": "string", "pattern": r"\$",
                   "description": "An expression over params, repeat indexes and the incoming "
                                  "shape, e.g. '$width * 4', \"2 if $i == 0 else 1\", "
                                  "'$in_channels // 2', or a template 'conv${$i + 1}'."}
    nested = {field.alias or name: field.json_schema_extra[_NESTED]
              for _, kind in kinds for name, field in kind.Config.model_fields.items()
              if isinstance(field.json_schema_extra, dict) and _NESTED in field.json_schema_extra}
    defs[BUILTIN_ONLY] = _builtin_types_only(builtins, nested)
    defs[SPELLING] = {"description": "A spelling of a built-in type (any case, separators, "
                                     "a 1d/2d/3d suffix): not a user block's name.",
                      "type": "string", "pattern": _spelling_pattern(builtins)}
    document = defs.pop(block_def)
    document["properties"]["blocks"]["propertyNames"] = _user_block_type()
    for form in document["properties"]["input"]["anyOf"]:  # sizes may be expressions
        if form.get("type") == "array":
            form["items"] = {"anyOf": [form["items"], _ref(PARAM)]}
    shape = defs["InputSpec"]["properties"]["shape"]
    shape["items"] = {"anyOf": [shape["items"], _ref(PARAM)]}
    return {
        "$schema": DIALECT,
        **document,
        "if": {"anyOf": [{"required": ["blocks"]}, {"required": ["imports"]}]},
        "else": {"properties": {"layers": {"items": _ref(BUILTIN_ONLY)}}},
        "title": "archspec network spec",
        "$defs": dict(sorted(defs.items())),
    }
