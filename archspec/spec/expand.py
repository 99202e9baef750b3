"""Expansion: walks the spec's layer lists, validates each entry against its kind's schema,
expands short forms, composite blocks and user-defined blocks, and builds the IR.

Every problem becomes a located Diagnostic; independent problems are all collected.
"""
from __future__ import annotations

import copy
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import Diagnostic
from ..ir import INPUT, Block, Node, Path
from ..layers.base import COMPOSITES, REGISTRY, LayerConfig
from . import params as param_expr

MAX_NODES = 100_000  # a spec expanding past this is refused (repeat bombs)
MAX_NESTING = 100  # blocks inside blocks (user blocks and composites), counted by scope depth

# Spellings users bring from PyTorch/Keras/Caffe, mapped to our type names for did-you-mean.
SYNONYMS = {
    "linear": "dense", "fc": "dense", "fullyconnected": "dense", "innerproduct": "dense",
    "convolution": "conv", "conv": "conv", "batchnorm": "batch_norm", "bn": "batch_norm",
    "batchnormalization": "batch_norm", "maxpool": "max_pool", "maxpooling": "max_pool",
    "avgpool": "avg_pool", "averagepooling": "avg_pool", "lrn": "local_response_norm",
    "convtranspose": "conv_transpose", "deconv": "conv_transpose", "deconvolution":
    "conv_transpose", "conv2dtranspose": "conv_transpose", "globalaveragepooling":
    "global_avg_pool", "globalavgpool": "global_avg_pool", "globalmaxpooling": "global_max_pool",
    "upsampling": "upsample", "concatenate": "concat", "cat": "concat", "sum": "add",
    "mul": "multiply", "swish": "silu", "logsoftmax": "log_softmax", "leakyrelu": "leaky_relu",
    "separableconv": "separable_conv", "depthwiseconv": "depthwise_conv", "residualblock":
    "residual", "skip": "residual", "flattening": "flatten", "adaptiveavgpool": "adaptive_avg_pool",
    "adaptivemaxpool": "adaptive_max_pool", "localresponsenorm": "local_response_norm",
}


def _canonical(text: str) -> str:
    text = re.sub(r"[_\-\s]", "", text.lower())
    return re.sub(r"([123]d)$", "", text)


def suggest(word: str, choices: list[str], synonyms: dict[str, str] | None = None) -> str | None:
    """Best did-you-mean for a typo, PyTorch/Keras spelling or case slip; None if nothing close."""
    canon = _canonical(word)
    by_canon = {_canonical(c): c for c in choices}
    if canon in by_canon:
        return by_canon[canon]
    if synonyms and canon in synonyms and synonyms[canon] in choices:
        return synonyms[canon]
    close = difflib.get_close_matches(word.lower(), choices, n=1, cutoff=0.6) or \
        difflib.get_close_matches(canon, list(by_canon), n=1, cutoff=0.6)
    if close:
        return by_canon.get(close[0], close[0])
    return None


def did_you_mean(word: str, choices, synonyms=None) -> str | None:
    best = suggest(word, list(choices), synonyms)
    return f"did you mean '{best}'?" if best else None


@dataclass
class Scope:
    prefix: tuple[str, ...]                      # full name parts: ("layer1", "0")
    parent: Scope | None = None
    names: dict[str, str] = field(default_factory=dict)     # local name -> node giving its value
    name_paths: dict[str, Path] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)          # explicit names declared later
    frozen: bool = False
    context: list[str] = field(default_factory=list)

    def full(self, local: str) -> str:
        return ".".join(self.prefix + (local,))

    def lookup(self, ref: str) -> str | None:
        scope: Scope | None = self
        while scope is not None:
            if ref in scope.names:
                return scope.names[ref]
            scope = scope.parent
        return None

    def visible(self) -> list[str]:
        out, scope = [], self
        while scope is not None:
            out.extend(scope.names)
            scope = scope.parent
        return out


class Expander:
    def __init__(self, source, user_blocks: dict[str, Any], blocks_path: Path = ("blocks",)):
        self.source = source
        self.user_blocks = user_blocks
        self.blocks_path = blocks_path
        self.nodes: dict[str, Node] = {}
        self.blocks: dict[str, Block] = {}
        self.diagnostics: list[Diagnostic] = []
        self.reported: set[tuple] = set()
        self.instantiating: list[str] = []   # user blocks being expanded (recursion check)
        self.too_big = False

    # ---- diagnostics -------------------------------------------------------------------
    def error(self, path: Path, message: str, *, hint=None, layer=None, notes=(), at_key=False,
              scope: Scope | None = None) -> None:
        notes = list(notes) + (scope.context if scope else [])
        diagnostic = self.source.diagnostic(path, message, hint=hint, layer=layer, notes=notes,
                                            at_key=at_key)
        key = (diagnostic.line, diagnostic.column, message, layer, tuple(notes))
        if key not in self.reported:  # a repeat's copies would report the same problem again
            self.reported.add(key)
            self.diagnostics.append(diagnostic)

    # ---- names ---------------------------------------------------------------------------
    def reserve_names(self, items: list, scope: Scope) -> None:
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                scope.reserved.add(item["name"])

    def auto_name(self, scope: Scope, stem: str) -> str:
        n = scope.counters.get(stem, 0)
        separator = "_" if stem[-1:].isdigit() else ""  # relu6_1, not relu61
        while True:
            n += 1
            candidate = f"{stem}{separator}{n}"
            if candidate not in scope.names and candidate not in scope.reserved:
                scope.counters[stem] = n
                return candidate

    def claim(self, scope: Scope, item: dict | None, stem: str, path: Path) -> str | None:
        """Pick the local name of a new layer or block; None (with an error) on a duplicate."""
        explicit = item.get("name") if item else None
        local = explicit if isinstance(explicit, str) else self.auto_name(scope, stem)
        if local in scope.names:
            first = self.source.position(scope.name_paths[local])
            self.error(path + ("name",), f"name '{local}' is already used in this scope",
                       at_key=False, hint="give the layer another name", scope=scope,
                       notes=[f"first used at line {first[0]}"] if first else [])
            return None
        if local == INPUT and not scope.prefix:
            self.error(path + ("name",), "'input' is reserved for the network input",
                       hint="choose another name", scope=scope)
            return None
        return local

    def resolve(self, scope: Scope, ref: Any, path: Path) -> str | None:
        if not isinstance(ref, str):
            self.error(path, f"'from' must name a layer, got {ref!r}", scope=scope)
            return None
        if ref == INPUT:
            return INPUT
        found = scope.lookup(ref)
        if found is not None:
            return found
        later = [n for n in self.all_local_names(scope) if n == ref]
        if later:
            self.error(path, f"'{ref}' is defined further down; a layer can only take inputs from "
                       "layers above it", hint="move this layer below it (this keeps the network "
                       "acyclic: cycles are not allowed)", scope=scope)
            return None
        inside = [n for n in self.nodes if n.split(".")[-1] == ref or n.endswith("." + ref)]
        hint = did_you_mean(ref, scope.visible() + [INPUT])
        if inside:
            self.error(path, f"'{ref}' is inside block '{inside[0].rsplit('.', 1)[0]}' and not "
                       "visible here", scope=scope,
                       hint=hint or "refer to the block by its name (its output) instead; names "
                       "inside a block are private to it")
        else:
            self.error(path, f"no layer named '{ref}' is visible here", scope=scope,
                       hint=hint or f"visible names: {', '.join(scope.visible()[-8:]) or 'input'}")
        return None

    def all_local_names(self, scope: Scope) -> set[str]:
        names, s = set(), scope
        while s is not None:
            names |= s.reserved
            s = s.parent
        return names

    # ---- building ----------------------------------------------------------------------
    def add_node(self, scope: Scope, item: dict | None, cfg, inputs: list[str | None], path: Path,
                 skip: tuple[int, ...] = (), stem: str | None = None) -> str | None:
        kind = REGISTRY[cfg.type]
        local = self.claim(scope, item, stem or kind.base_name, path)
        if local is None:
            return None
        if len(self.nodes) >= MAX_NODES:
            if not self.too_big:
                self.error(path, f"the spec expands to more than {MAX_NODES} layers",
                           hint="reduce 'times' in repeat blocks", scope=scope)
            self.too_big = True
            return None
        if scope.frozen and cfg.trainable:
            cfg = cfg.model_copy(update={"trainable": False})
        name = scope.full(local)
        broken = any(i is None for i in inputs)
        self.nodes[name] = Node(name=name, kind=kind, cfg=cfg,
                                inputs=[i for i in inputs if i is not None], path=path,
                                scope=scope.prefix, skip_inputs=frozenset(skip), broken=broken,
                                context=list(scope.context))
        scope.names[local] = name
        scope.name_paths[local] = path
        self.note_member(scope, name)
        return name

    def note_member(self, scope: Scope, name: str) -> None:
        for i in range(1, len(scope.prefix) + 1):
            block = self.blocks.get(".".join(scope.prefix[:i]))
            if block is not None:
                block.members.append(name)

    def open_block(self, scope: Scope, item: dict, kind: str, path: Path, stem: str
                   ) -> Scope | None:
        local = self.claim(scope, item, stem, path)
        if local is None:
            return None
        full = scope.full(local)
        parent = ".".join(scope.prefix) or None
        self.blocks[full] = Block(name=full, kind=kind, path=path, parent=parent)
        scope.names[local] = full  # resolved to the output node when the block closes
        scope.name_paths[local] = path
        return Scope(prefix=scope.prefix + (local,), parent=scope,
                     frozen=scope.frozen or item.get("trainable") is False,
                     context=list(scope.context))

    def close_block(self, outer: Scope, inner: Scope, output: str | None) -> str | None:
        full = ".".join(inner.prefix)
        self.blocks[full].output = output
        outer.names[inner.prefix[-1]] = output if output is not None else full
        return output

    def block_input(self, scope: Scope, item: dict, path: Path, current: str | None):
        if "from" in item:
            ref = item["from"]
            if isinstance(ref, list):
                if len(ref) != 1:
                    self.error(path + ("from",), "a block takes a single input",
                               hint="merge the inputs first (concat/add)", scope=scope)
                    return None
                ref = ref[0]
            return self.resolve(scope, ref, path + ("from",))
        return current

    # ---- the walk ----------------------------------------------------------------------
    def expand_items(self, items: Any, path: Path, scope: Scope, current: str | None
                     ) -> str | None:
        if not isinstance(items, list) or not items:
            self.error(path, "expected a non-empty list of layers", scope=scope,
                       hint="write layers as a YAML list: '- {type: conv, ...}' or '- relu'")
            return None
        self.reserve_names(items, scope)
        for index, item in enumerate(items):
            if self.too_big:
                return None
            current = self.expand_item(item, path + (index,), scope, current)
        return current

    def expand_item(self, item: Any, path: Path, scope: Scope, current: str | None) -> str | None:
        if isinstance(item, str):
            item = {"type": item}
        if not isinstance(item, dict):
            self.error(path, f"a layer must be a mapping or a type name, got {type(item).__name__}",
                       hint="e.g. '- {type: conv, out_channels: 16, kernel_size: 3}' or '- relu'",
                       scope=scope)
            return None
        kind_name = item.get("type")
        if not isinstance(kind_name, str):
            self.error(path, "layer has no 'type'", hint="add e.g. 'type: conv'", scope=scope)
            return None
        type_path = path + ("type",) if "type" in item else path
        if len(scope.prefix) >= MAX_NESTING and (kind_name in self.user_blocks or
                                                 kind_name in COMPOSITES):
            # expansion recurses once per level: refuse before Python's stack runs out
            self.error(type_path, f"blocks are nested more than {MAX_NESTING} levels deep",
                       hint="a chain of blocks using blocks this long is almost certainly a "
                            "mistake; flatten it", notes=scope.context[:1] + scope.context[-1:])
            self.too_big = True
            return None
        if kind_name in self.user_blocks:
            return self.expand_user_block(kind_name, item, path, scope, current)
        if kind_name in COMPOSITES:
            cfg = self.validate(COMPOSITES[kind_name].Config, item, path, scope)
            if cfg is None:
                return None
            return COMPOSITES[kind_name].expand(self, cfg, item, path, scope, current)
        if kind_name in REGISTRY:
            return self.expand_layer(item, path, scope, current)
        choices = list(REGISTRY) + list(COMPOSITES) + list(self.user_blocks)
        self.error(type_path, f"unknown layer type '{kind_name}'",
                   hint=did_you_mean(kind_name, choices, SYNONYMS) or
                   "run 'archspec types' for the list of layer types", scope=scope)
        return None

    def expand_layer(self, item: dict, path: Path, scope: Scope, current: str | None):
        kind = REGISTRY[item["type"]]
        cfg = self.validate(kind.Config, item, path, scope)
        if cfg is None:
            return None
        refs = cfg.from_ if cfg.from_ is not None else ([current] if current else [])
        if isinstance(refs, str):
            refs = [refs]
        where = [("from", i) if isinstance(cfg.from_, list) else ("from",)  # point at the name
                 for i in range(len(refs))]
        inputs = [self.resolve(scope, r, path + at) if cfg.from_ is not None else r
                  for r, at in zip(refs, where)]
        if cfg.from_ is None and current is None:
            inputs = [None]
        n_in = len(inputs)
        if n_in < kind.min_inputs or (kind.max_inputs is not None and n_in > kind.max_inputs):
            want = (f"{kind.min_inputs}" if kind.max_inputs == kind.min_inputs else
                    f"at least {kind.min_inputs}")
            self.error(path + (("from",) if "from" in item else ()),
                       f"{kind.name} takes {want} input{'s' if kind.min_inputs > 1 else ''}, "
                       f"got {n_in}", scope=scope, layer=scope.full(item["name"]) if "name" in item else None,
                       hint="list its inputs: from: [a, b]" if kind.min_inputs > 1 else
                       "give a single name in 'from'")
            return None
        name = self.add_node(scope, item, cfg, inputs, path)
        activation = getattr(cfg, "activation", None)
        if activation is not None and name is not None:
            return self.add_activation(scope, activation, name, path + ("activation",))
        return name

    def add_activation(self, scope: Scope, activation: str, source: str | None, path: Path):
        kind = REGISTRY.get(activation)
        if kind is None or kind.family != "activation":
            choices = [k for k, v in REGISTRY.items() if v.family == "activation"]
            known = activation in REGISTRY or activation in COMPOSITES
            self.error(path, f"'{activation}' is a layer type, not an activation" if known else
                       f"unknown activation '{activation}'", scope=scope,
                       hint=did_you_mean(activation, choices, SYNONYMS) or
                       (f"write the {activation} as a layer of its own; " if known else "") +
                       f"activation: takes one of {', '.join(choices)}")
            return None
        cfg = kind.Config.model_validate({"type": activation})
        return self.add_node(scope, None, cfg, [source], path)

    def validate(self, config_cls, item: dict, path: Path, scope: Scope):
        try:
            return config_cls.model_validate(item)
        except ValidationError as exc:
            groups = _group_errors(config_cls, exc.errors())
            groups.sort(key=lambda g: self.source.key_position(path + _existing(item, g[0]["loc"]))
                        or (0, 0))  # in source order
            for group in groups:
                self.report_validation(config_cls, item, path, scope, group)
            return None

    def validate_merge(self, kind_name: str, fields: dict):
        """Config for a node the compiler itself inserts (merge, projection, separable parts)."""
        return REGISTRY[kind_name].Config.model_validate(dict(fields, type=kind_name))

    def report_validation(self, config_cls, item, path, scope, group: list[dict]) -> None:
        """One diagnostic for one problem (a group of pydantic errors about the same value)."""
        err = group[0]
        loc = tuple(err["loc"])
        model, start = _locate(config_cls, loc)
        sub = max((_existing(item, e["loc"]) for e in group), key=len)
        field_name = str(loc[start]) if len(loc) > start else ""
        if model is config_cls:
            kind = item["type"] if issubclass(config_cls, LayerConfig) and \
                isinstance(item.get("type"), str) else "the spec"
        else:  # a nested model, e.g. the definition of block b at blocks.b
            kind = f"{str(loc[start - 2]).rstrip('s')} '{loc[start - 1]}'" if start >= 2 else \
                f"'{'.'.join(map(str, loc[:start]))}'"
        name = item.get("name")
        layer = scope.full(name) if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_]+", name) and \
            model is config_cls and issubclass(config_cls, LayerConfig) else None
        fields = [f.alias or n for n, f in model.model_fields.items()]
        if err["type"] == "extra_forbidden":
            hint = did_you_mean(field_name, fields)
            if field_name in ("in_channels", "num_features", "in_features") and not hint:
                hint = ("this layer keeps the channel count, so it takes no "
                        f"{field_name}; remove it")
            self.error(path + sub, f"unknown field '{field_name}' for {kind}", at_key=True,
                       layer=layer, scope=scope,
                       hint=hint or f"{kind} accepts: {', '.join(f for f in fields if f != 'type')}")
        elif err["type"] == "missing":
            required = [f.alias or n for n, f in model.model_fields.items()
                        if f.is_required() and n != "type"]
            where = path + loc[:start]
            missing = [f"'{e['loc'][start]}'" for e in group]
            what = f"field {missing[0]}" if len(missing) == 1 else \
                f"fields {', '.join(missing[:-1])} and {missing[-1]}"
            self.error(where + ("type",) if "type" in model.model_fields else where,
                       f"{kind} is missing required {what}", layer=layer,
                       scope=scope, at_key=start > 0, hint=f"{kind} requires: {', '.join(required)}")
        else:
            info = _field_info(model, field_name)
            value = _value_at(item, loc[:start + 1])
            if info is None:  # not a field error: the model's own value is of the wrong type
                self.error(path + sub, f"{kind} must be a mapping (got {_show(value)})",
                           layer=layer, scope=scope, hint="write it as 'key: value' lines")
                return
            self.error(path + sub, f"{field_name} must be {describe_field(info)} "
                       f"(got {_show(value)})", layer=layer, scope=scope,
                       hint=value_hint(info, field_name, _value_at(item, sub)))

    # ---- user-defined blocks -----------------------------------------------------------
    def expand_user_block(self, block_name: str, item: dict, path: Path, scope: Scope,
                          current: str | None):
        definition = self.user_blocks[block_name]
        def_path = self.blocks_path + (block_name,)
        if block_name in self.instantiating:
            self.error(path + ("type",), f"block '{block_name}' uses itself", scope=scope,
                       hint="a block cannot contain itself, directly or through another block")
            return None
        common = {k: item[k] for k in ("type", "name", "from", "trainable") if k in item}
        if self.validate(BlockUse, common, path, scope) is None:
            return None
        declared = definition.get("params") or {}
        values: dict[str, Any] = {}
        for key, value in item.items():
            if key in common:
                continue
            if key not in declared:
                self.error(path + (key,), f"block '{block_name}' has no parameter '{key}'",
                           at_key=True, scope=scope,
                           hint=did_you_mean(key, declared) or
                           f"its parameters: {', '.join(declared) or 'none'}")
                return None
            values[key] = value
        for key, default in declared.items():
            if key not in values:
                if default is None:
                    self.error(path + ("type",), f"block '{block_name}' needs parameter '{key}'",
                               scope=scope, hint=f"add '{key}: ...' to this layer")
                    return None
                values[key] = default
        layers = definition.get("layers")
        try:
            layers = param_expr.substitute(copy.deepcopy(layers), values)
        except param_expr.ExpressionError as exc:
            where = self.source.position(path)
            self.error(def_path + ("layers",) + exc.path, str(exc), scope=scope,
                       hint=exc.hint or "write '$name' or integer arithmetic such as '$width * 2'",
                       notes=[f"in block '{block_name}' used at line {where[0]}"] if where else [])
            return None
        start = self.block_input(scope, item, path, current)
        where = self.source.position(path)
        context = f"in block '{block_name}' used at line {where[0]}" if where else \
            f"in block '{block_name}'"
        self.instantiating.append(block_name)
        try:
            if _single_unnamed_block(layers, self.user_blocks):
                # The body is one composite (e.g. a residual): it takes this instance's scope,
                # so names read layer1.0.conv1 rather than layer1.0.res1.conv1.
                inlined = dict(layers[0], name=item.get("name"))
                if item.get("trainable") is False:  # freezing the instance freezes its body
                    inlined["trainable"] = False
                if inlined["name"] is None:
                    inlined["name"] = self.auto_name(scope, block_name)
                scope.context.append(context)
                try:
                    out = self.expand_item(inlined, def_path + ("layers", 0), scope, start)
                finally:
                    scope.context.pop()
                block = self.blocks.get(scope.full(inlined["name"]))
                if block is not None:
                    block.title = block_name
                return out
            inner = self.open_block(scope, item, block_name, path, block_name)
            if inner is None:
                return None
            inner.context.append(context)
            out = self.expand_items(layers, def_path + ("layers",), inner, start)
        finally:
            self.instantiating.pop()
        return self.close_block(scope, inner, out)


class BlockUse(LayerConfig):
    """The fields a user-defined block's instance takes besides the block's parameters."""
    type: str


def _single_unnamed_block(layers: Any, user_blocks: dict) -> bool:
    return (isinstance(layers, list) and len(layers) == 1 and isinstance(layers[0], dict)
            and "name" not in layers[0] and isinstance(layers[0].get("type"), str)
            and (layers[0]["type"] in COMPOSITES or layers[0]["type"] in user_blocks))


# ---- validation errors in the spec's own words ------------------------------------------------

def _group_errors(config_cls, errors: list[dict]) -> list[list[dict]]:
    """Group pydantic errors by problem: a value failing every member of a union is one problem,
    the required fields missing from one mapping are one problem, and a required field reported
    missing because its name was misspelt is left to the unknown-field error, which suggests
    the right name."""
    misspelt = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            model, start = _locate(config_cls, loc)
            fields = [f.alias or n for n, f in model.model_fields.items()]
            misspelt.add(loc[:start] + (suggest(str(loc[-1]), fields),))
    groups: dict[tuple, list[dict]] = {}
    for err in errors:
        loc = tuple(err["loc"])
        model, start = _locate(config_cls, loc)
        if err["type"] == "missing":
            if loc in misspelt:
                continue
            key = ("missing", loc[:start])
        elif err["type"] == "extra_forbidden":
            key = ("extra", loc)
        else:
            key = ("value", loc[:start + 1])
        groups.setdefault(key, []).append(err)
    return list(groups.values())


def _field_info(model, name: Any):
    for key, info in model.model_fields.items():
        if name in (key, info.alias):
            return info
    return None


def _nested_model(annotation) -> tuple[Any, int]:
    """(model, loc parts to skip) when a field holds a model, a dict or a list of models."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, 0
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (dict, list) and args and isinstance(args[-1], type) \
            and issubclass(args[-1], BaseModel):
        return args[-1], 1
    return None, 0


def _locate(config_cls, loc: tuple) -> tuple[Any, int]:
    """The innermost model an error is about, and where its field name sits in the loc."""
    model, start = config_cls, 0
    while start < len(loc):
        info = _field_info(model, loc[start])
        inner, skip = _nested_model(info.annotation) if info is not None else (None, 0)
        if inner is None or start + 1 + skip > len(loc):
            break
        model, start = inner, start + 1 + skip
    return model, start


def _existing(data: Any, loc) -> tuple:
    """The parts of a pydantic loc that exist in the data (union member tags are skipped)."""
    sub = ()
    for part in loc:
        if isinstance(data, dict) and part in data or \
                isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            sub += (part,)
            data = data[part]
    return sub


def _value_at(data: Any, loc) -> Any:
    for part in _existing(data, loc):
        data = data[part]
    return data


def _show(value: Any) -> str:
    """A short YAML-like rendering of a user's value for a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 40 else f"a {len(text)}-digit number"
    if isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value):
        text = "[" + ", ".join(_show(v) for v in value[:9]) + (", ...]" if len(value) > 9 else "]")
        if len(text) <= 60:
            return text
    if isinstance(value, (list, dict)):
        n = len(value)
        what = "list" if isinstance(value, list) else "mapping"
        return f"an empty {what}" if not n else f"a {what} of {n} item{'s' if n != 1 else ''}"
    return type(value).__name__


_NOUNS = {"integer": "integers", "number": "numbers", "string": "strings", "name": "names",
          "mapping": "mappings", "list": "lists", "value": "values", "layer": "layers"}


def _plural(text: str) -> str:
    """'a positive integer' -> 'positive integers' (descriptions from describe_type)."""
    text = re.sub(r"^an? ", "", text)
    words = text.split(" ")
    for i, word in enumerate(words):
        if word in _NOUNS:
            words[i] = _NOUNS[word]
            return " ".join(words)
    return f"values that are {text}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return (", or " if " or " in parts[0] else " or ").join(parts)
    return ", ".join(parts[:-1]) + ", or " + parts[-1]


def _bounds(metadata) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for m in metadata or ():
        for key in ("gt", "ge", "lt", "le", "min_length", "max_length", "pattern"):
            if getattr(m, key, None) is not None:
                found[key] = getattr(m, key)
    return found


def _number_text(noun: str, b: dict[str, Any]) -> str:
    low = b.get("ge", b["gt"] + (1 if noun == "integer" else 0) if "gt" in b else None)
    high = b.get("le")
    if noun == "integer" and low == 1 and high is None:
        return "a positive integer"
    if low == 0 and high is None:
        return f"a non-negative {noun}"
    if "gt" in b and b["gt"] == 0 and high is None:
        return f"a positive {noun}"
    article = "an" if noun == "integer" else "a"
    if low is not None and high is not None:
        return f"{article} {noun} from {low} to {high}"
    if high is not None:
        return f"{article} {noun} up to {high}"
    return f"{article} {noun}" + (f" of at least {low}" if low is not None else "")


def describe_type(annotation: Any, metadata=()) -> str:
    """Plain words for a field's type: 'a positive integer or a list of them'."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(args[0], list(metadata) + list(annotation.__metadata__))
    b = _bounds(metadata)
    if origin in (typing.Union, types.UnionType):
        parts: list[str] = []
        for arg in args:
            if arg is type(None):
                continue
            text = describe_type(arg, metadata)
            item = typing.get_args(arg)[0] if typing.get_origin(arg) is list else None
            if item is not None and describe_type(item) in parts:
                text = "a list of them"
            parts.append(text)
        return _join(parts)
    if origin is typing.Literal:
        shown = [_show(a) for a in args]
        return shown[0] if len(shown) == 1 else "one of " + ", ".join(shown)
    if origin is list:
        inner = _plural(describe_type(args[0])) if args and args[0] is not Any else "values"
        lo, hi = b.get("min_length"), b.get("max_length")
        if lo and hi:
            return f"a list of {lo} to {hi} {inner}"
        return f"a {'non-empty ' if lo else ''}list of {inner}" if inner != "values" else \
            f"a {'non-empty ' if lo else ''}list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if annotation is bool:
        return "true or false"
    if annotation is int:
        return _number_text("integer", b)
    if annotation is float:
        return _number_text("number", b)
    if annotation is str:
        if b.get("pattern") == r"^[A-Za-z0-9_]+$":
            return "a string of letters, digits and '_'"
        return "a string"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping"
    return "a value"


def describe_field(info) -> str:
    nested = (info.json_schema_extra or {}).get("archspec_nested") \
        if isinstance(info.json_schema_extra, dict) else None
    if nested == "layers":
        return "a list of layers"
    if nested == "branches":
        return "a list of branches, each a list of layers"
    if info.alias == "from":
        return "a layer name or a list of layer names"
    text = describe_type(info.annotation, info.metadata)
    args = typing.get_args(info.annotation)
    if type(None) in args and info.default is not None and not info.is_required():
        text += " or null"
    return text


def _literals(annotation: Any) -> list[str]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return [a for a in args if isinstance(a, str)]
    return [lit for a in args for lit in _literals(a)]


def _accepts(annotation: Any, wanted: type) -> bool:
    if annotation is wanted:
        return True
    return any(_accepts(a, wanted) for a in typing.get_args(annotation))


def _example(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated or origin in (typing.Union, types.UnionType):
        return _example(next(a for a in args if a is not type(None)))
    if origin is typing.Literal:
        return str(args[0])
    if origin is list:
        return f"[{_example(args[0])}, {_example(args[0])}]" if args and args[0] is not Any \
            else "[...]"
    return {bool: "true", int: "3", float: "0.5", str: "name"}.get(annotation, "...")


def value_hint(info, name: str, value: Any) -> str:
    """What to write instead of a value of the wrong type or out of range."""
    annotation = info.annotation
    if isinstance(value, str):
        literals = _literals(annotation)
        close = did_you_mean(value, literals) if literals else None
        if close:
            return close
        if re.fullmatch(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*", value) and \
                (_accepts(annotation, int) or _accepts(annotation, float)):
            return f"remove the quotes: '{value.strip()}' in quotes is text, not a number"
        if value.startswith("$"):
            return ("'$name' is replaced only inside the layers of a block definition "
                    "(under blocks:), by a parameter that the block declares")
    if isinstance(value, bool) and not _accepts(annotation, bool):
        return f"true/false is not a number here; write e.g. {name}: {_example(annotation)}"
    if isinstance(value, float) and value.is_integer() and _accepts(annotation, int) and \
            not _accepts(annotation, float):
        return f"write a whole number without a decimal point: {name}: {int(value)}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0 and \
            "non-negative" in describe_field(info):
        return f"{name} cannot be negative"
    if isinstance(value, str) and _bounds(info.metadata).get("pattern") and value.strip():
        fixed = re.sub(r"[^A-Za-z0-9_]+", "_", value.strip()).strip("_") or "layer1"
        return f"use letters, digits and '_' only, e.g. {name}: {fixed}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0 and \
            "positive" in describe_field(info):
        return "sizes, counts and strides start at 1" if _accepts(annotation, int) else \
            f"{name} must be greater than 0"
    if describe_field(info).endswith("of layers"):
        return "write the layers as a YAML list: '- {type: conv, ...}' or '- relu'"
    literals = _literals(annotation)
    if literals and isinstance(value, str):
        return "choose one of: " + ", ".join(literals)
    return info.description or f"e.g. {name}: {_example(annotation)}"
