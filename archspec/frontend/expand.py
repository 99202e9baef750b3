"""Expansion: walks the spec's layer lists, validates each entry against its kind's schema,
expands short forms, composite blocks and user-defined blocks, and builds the IR.

Every problem becomes a located Diagnostic; independent problems are all collected.
"""
from __future__ import annotations

import dataclasses
import itertools
import re
from collections import ChainMap
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, ValidationError

from ..errors import MAX_KEPT, Diagnostic, InternalError
from ..ir import INPUT, Block, Node, Path
from ..layers.base import COMPOSITES, INLINE_DOC, REGISTRY, ActivationField, LayerConfig
from . import params as param_expr
from .composite import Use
from .messages import (
    SYNONYMS,
    beyond_limit,
    describe_field,
    did_you_mean,
    existing_path,
    field_info,
    group_errors,
    is_foreign_layer,
    locate,
    show_value,
    value_at,
    value_hint,
)
from .reserved import reserved_reason
from .variables import (
    LEFT_OUT,
    ItemVariables,
    Shapes,
    UnknownShape,
    evaluate_fields,
    has_expression,
    has_own_expressions,
)

MAX_NODES = 100_000  # a spec expanding past this is refused (repeat bombs)
MAX_NESTING = 100  # blocks inside blocks: every user block and composite expanded counts a level
SUGGEST_AMONG = 100  # did-you-mean for a layer name looks at this many of the nearest names


_LAYER_CAP: ContextVar[int | None] = ContextVar("archspec_layer_cap", default=None)


class TooManyLayers(Exception):
    """Expansion stopped under `layers_at_most(cap)`: the spec has more than `cap` layers, at
    least `count` (a repeat's total is known after its first copy)."""

    def __init__(self, cap: int, count: int):
        super().__init__(f"more than {cap:,} layers (at least {count:,})")
        self.cap, self.count = cap, count


@contextmanager
def layers_at_most(cap: int | None):
    """Specs expanded inside stop with TooManyLayers past `cap` layers (None: no cap), so a
    caller that cannot use more (a full-depth diagram) refuses at once, not after the work."""
    token = _LAYER_CAP.set(cap)
    try:
        yield
    finally:
        _LAYER_CAP.reset(token)


NAME = r"[A-Za-z0-9_]+"  # a layer's or block's local name
NUMBER = "#"  # a numbered scope's counter, kept among its name counters


@dataclass
class Scope:
    """Where names are looked up and given: a block's (or a repeat copy's) own names, and the
    variables expressions see there. Both are chained to the enclosing scope, innermost first.
    An inline block gets a *view*: a Scope sharing the enclosing scope's name tables (so its
    layers are named there) with its own input, variables and trainability."""
    prefix: tuple[str, ...]                      # full name parts: ("layer1", "0")
    parent: Scope | None = None
    names: dict[str, str] = field(default_factory=dict)     # local name -> node giving its value
    name_paths: dict[str, Path] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)          # explicit names in this scope
    seen: set[str] = field(default_factory=set)              # ... whose definitions came (or failed)
    frozen: bool = False
    context: list[str] = field(default_factory=list)
    blocks: tuple[Block, ...] = ()                          # the enclosing blocks, outermost first
    values: dict[str, Any] = field(default_factory=dict)    # expression variables defined here
    input: str | None = INPUT      # what `input` names here: the block's (or copy's) own input
    numbered: bool = False         # members are named 0, 1, 2, ... (nn.Sequential)
    inline: str | None = None      # a view: the inline block it was opened for (for hints)

    def full(self, local: str) -> str:
        return ".".join(self.prefix + (local,))

    def lookup(self, ref: str) -> str | None:
        scope: Scope | None = self
        while scope is not None:
            if ref in scope.names:
                return scope.names[ref]
            scope = scope.parent
        return None

    def variables(self) -> ChainMap:
        """The expression variables visible here, innermost first (a block param hides a spec
        param of the same name; a repeat copy's index hides both)."""
        chain, scope = [], self
        while scope is not None:
            chain.append(scope.values)
            scope = scope.parent
        return ChainMap(*chain)

    def visible(self, most: int | None = None) -> list[str]:
        """Names visible here, nearest first (the innermost scope's latest names); at most
        `most`, so hints for many errors in a big network stay linear."""
        out, scope, shown = [], self, None
        while scope is not None and (most is None or len(out) < most):
            if scope.names is not shown:  # a view shares its enclosing scope's names
                out.extend(itertools.islice(reversed(scope.names), None if most is None
                                            else most - len(out)))
            shown, scope = scope.names, scope.parent
        return out


class Expander:
    def __init__(self, source, user_blocks: dict[str, Any], blocks_path: Path = ("blocks",),
                 values: dict[str, Any] | None = None, input_shape: tuple = ()):
        self.source = source
        self.values = values or {}  # the spec's parameters, bound
        self.user_blocks = user_blocks
        self.blocks_path = blocks_path
        self.nodes: dict[str, Node] = {}
        self.blocks: dict[str, Block] = {}
        self.diagnostics: list[Diagnostic] = []
        self.reported: dict[tuple, Diagnostic] = {}
        self.omitted = 0  # errors past MAX_KEPT, counted only
        self.failed_refs: dict[tuple, Diagnostic | None] = {}  # (path, ref, context) -> its error
        self.validated: dict[tuple, tuple[dict, Any]] = {}  # (model, id(item)) -> (item, cfg)
        self.short_forms: dict[str, dict] = {}               # "relu" -> {"type": "relu"}
        self.by_suffix: dict[str, str] = {}  # "conv1", "0.conv1" -> first node inside a block so named
        self.instantiating: list[str] = []   # user blocks being expanded (recursion check)
        self.scopes: dict[str, Scope] = {}   # block full name -> its scope, for qualified names
        self.depth = 0                       # blocks being expanded, one inside the other
        self.too_big = False
        self.inline_names: dict[str, str] = {}  # full name -> the inline block that named it
        self.shapes = Shapes(input_shape, self.nodes)  # for $in_channels and $in_shape
        self.plain: dict[int, tuple[dict, bool]] = {}  # id(item) -> (item, no '$' of its own)
        self.without_when: dict[int, tuple[dict, dict]] = {}  # id(item) -> (item, copy)
        self.cap = _LAYER_CAP.get()  # layers_at_most

    # ---- diagnostics -------------------------------------------------------------------
    def error(self, path: Path, message: str, *, hint=None, layer=None, notes=(), at_key=False,
              scope: Scope | None = None) -> Diagnostic | None:
        """Record a problem once: a repeat's copies meet it again at the same place (counted as
        repeats). A hint that searches (a did-you-mean) is passed as a function: it is called only
        for a diagnostic that is kept, so errors past MAX_KEPT cost a count, not a search."""
        notes = list(notes) + (scope.context if scope else [])
        position = (self.source.key_position if at_key else self.source.position)(path)
        key = (self.source.file_of(path), position, message, tuple(notes))  # not the copy's name
        seen = self.reported.get(key)
        if seen is not None:
            seen.repeats += 1
            return seen
        if len(self.diagnostics) >= MAX_KEPT:
            self.omitted += 1
            return None
        diagnostic = self.source.diagnostic(path, message, hint=hint() if callable(hint) else hint,
                                            layer=layer, notes=notes, at_key=at_key)
        self.reported[key] = diagnostic
        self.diagnostics.append(diagnostic)
        return diagnostic

    # ---- names: every rule about what a layer or block is called lives here ---------------
    def reserve_names(self, items: list, scope: Scope) -> None:
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                scope.reserved.add(item["name"])

    def next_name(self, scope: Scope, stem: str) -> str:
        """The name of a member nobody named: the next number in a numbered scope (as
        nn.Sequential), else its kind and a counter (conv1, conv2, relu6_1)."""
        if scope.numbered:
            number = scope.counters.get(NUMBER, 0)
            scope.counters[NUMBER] = number + 1
            return str(number)
        n = scope.counters.get(stem, 0)
        separator = "_" if stem[-1:].isdigit() else ""  # relu6_1, not relu61
        while True:
            n += 1
            candidate = f"{stem}{separator}{n}"
            if candidate not in scope.names and candidate not in scope.reserved:
                scope.counters[stem] = n
                return candidate

    def claim(self, scope: Scope, path: Path, stem: str, name: Any = None, *,
              fixed: bool = False, name_path: Path | None = None, at_key: bool = False
              ) -> str | None:
        """Pick the local name of a new layer or block (None, with an error, if it cannot have
        one). `name` is the user's (the item's `name:`, a branch or copy name), written at
        `name_path` (a mapping key if `at_key`), unless `fixed` (a name the compiler gives: add,
        shortcut, a copy's index), which numbering overrides."""
        name_path = path + ("name",) if name_path is None else name_path
        if scope.numbered:
            local = self.next_name(scope, stem)
            if isinstance(name, str) and not fixed:
                # reported, and the number kept: the members after it keep their numbers
                self.error(name_path, f"'{name}' names a member of a numbered sequential",
                           scope=scope, at_key=at_key, hint=f"remove the name: members of a numbered sequential"
                           f" are named by position (this one is '{scope.full(local)}'); or "
                           "remove 'numbered: true' to name them")
            return local
        local = name if isinstance(name, str) else self.next_name(scope, stem)
        if fixed and scope.inline and local in scope.names:
            # a name the compiler gives (an inline residual's add) that an earlier inline block
            # took in the same scope: counted instead, so two inline residuals can follow
            local = self.next_name(scope, stem)
        if name is not None and not fixed and not re.fullmatch(NAME, local):  # a branch's key
            self.error(name_path, f"'{local}' is not a valid name", scope=scope, at_key=at_key,
                       hint="a name has only letters, digits and '_' (it names a module "
                            "attribute)")
            return None
        if local in scope.names:
            first = self.source.place(scope.name_paths[local])
            inline = self.inline_names.get(scope.full(local)) or scope.inline
            self.error(name_path, f"name '{local}' is already used in this scope", scope=scope,
                       at_key=at_key,
                       hint=f"give the layer another name (inline block '{inline}' puts its "
                            "layers' names in the enclosing scope; or remove 'inline: true')"
                       if inline else "give the layer another name",
                       notes=[f"first used at {first}"] if first else [])
            return None
        if local == INPUT:
            self.error(name_path, "'input' is reserved for the network input" if not scope.prefix
                       else "'input' is reserved for the block's own input", scope=scope,
                       at_key=at_key,
                       hint="choose another name")
            return None
        reason = reserved_reason(local)
        if reason is not None:
            self.error(name_path, f"{reason}: it cannot name a layer or block", scope=scope,
                       at_key=at_key,
                       hint=f"choose another name, e.g. {local.strip('_') or 'layer'}1 (the name "
                            "becomes an attribute of the compiled PyTorch module)")
            return None
        if scope.inline:
            self.inline_names[scope.full(local)] = scope.inline
        return local

    def resolve(self, scope: Scope, ref: Any, path: Path, own: str | None = None) -> str | None:
        """The node giving the value of `ref` as written at `path` (None after an error).
        A qualified name (res.conv1, layer1.0.conv1) starts at a visible name and reaches into
        blocks; `own` is the name of the layer or block whose input this is."""
        if not isinstance(ref, str):
            self.error(path, f"'from' must name a layer, got {ref!r}", scope=scope)
            return None
        if ref == INPUT:  # inside a block: the block's own input
            return scope.input
        first, *rest = ref.split(".")
        holder = scope
        while holder is not None and first not in holder.names:
            holder = holder.parent
        if holder is None:
            key = (path, ref, tuple(scope.context))
            if key in self.failed_refs:  # another copy of the same layer: searched once
                failed = self.failed_refs[key]
                if failed is not None:
                    failed.repeats += 1
            else:
                self.failed_refs[key] = self.unresolved(scope, ref, path, own)
            return None
        found, block = holder.names[first], holder.full(first)
        for depth, part in enumerate(rest):
            inner = self.scopes.get(block)
            if inner is None or part not in inner.names:
                reached = ".".join([first, *rest[:depth]])
                if inner is None:
                    self.error(path, f"'{reached}' is a layer, not a block: it has no layer "
                               f"'{part}'", hint=f"write '{reached}' for its output", scope=scope)
                else:
                    self.error(path, f"block '{reached}' has no layer named '{part}'", scope=scope,
                               hint=lambda part=part, names=inner.names: did_you_mean(part, names)
                               or f"its layers: {', '.join(list(names)[:8])}")
                return None
            found, block = inner.names[part], inner.full(part)
        here = ".".join(scope.prefix)
        if found in self.blocks and (here == found or here.startswith(found + ".")):
            self.error(path, f"'{ref}' is the block this layer is in: a layer cannot read the "
                       "output of its own enclosing block", scope=scope,
                       hint="to read the block's input, leave out 'from' on its first layer; "
                            "else name a layer above the block")
            return None
        return found

    def unresolved(self, scope: Scope, ref: str, path: Path, own: str | None
                   ) -> Diagnostic | None:
        """The error for a name that nothing visible answers to."""
        if ref == own:
            return self.error(path, f"'{ref}' reads itself: a layer cannot take its own output as "
                              "input", hint="name the layer it should read, or leave out 'from' "
                              "to read the layer above", scope=scope)
        if len(self.diagnostics) >= MAX_KEPT:  # only counted from here: skip the searches
            self.omitted += 1
            return None
        written, failed = self.all_local_names(scope)
        if ref in failed:
            return None  # its definition failed, and said why; no second error here
        if ref in written:
            return self.error(path, f"'{ref}' is defined further down; a layer can only take "
                              "inputs from layers above it", hint="move this layer below it (this "
                              "keeps the network acyclic: cycles are not allowed)", scope=scope)
        inside = self.by_suffix.get(ref)

        def hint():
            return did_you_mean(ref, scope.visible(SUGGEST_AMONG) + [INPUT])
        if inside:
            return self.error(path, f"'{ref}' is inside block '{inside[:-len(ref) - 1]}' and not "
                              "visible here", scope=scope,
                              hint=lambda: hint() or f"write its qualified name '{inside}' (names "
                              "inside a block are private unless qualified), or the block's name "
                              "for its output")
        return self.error(path, f"no layer named '{ref}' is visible here", scope=scope,
                          hint=lambda: hint() or "visible names: "
                          f"{', '.join(reversed(scope.visible(8))) or 'input'}")

    def all_local_names(self, scope: Scope) -> tuple[set[str], set[str]]:
        """Explicit names visible from here: (written further down, whose definitions failed)."""
        later, failed, s = set(), set(), scope
        while s is not None:
            later |= s.reserved - s.seen
            failed |= {n for n in s.seen if n not in s.names}  # O(explicit names), not O(all)
            s = s.parent
        return later, failed

    # ---- building ----------------------------------------------------------------------
    def add_node(self, scope: Scope, cfg, inputs: list[str | None], path: Path, *,
                 name: Any = None, fixed: bool = False, skip: tuple[int, ...] = ()) -> str | None:
        kind = REGISTRY[cfg.type]
        local = self.claim(scope, path, kind.base_name, name, fixed=fixed)
        if local is None:
            return None
        if len(self.nodes) >= MAX_NODES:
            if not self.too_big:
                self.error(path, f"the spec expands to more than {MAX_NODES} layers",
                           hint="reduce 'times' in repeat blocks", scope=scope)
            self.too_big = True
            return None
        if self.cap is not None and len(self.nodes) >= self.cap:
            raise TooManyLayers(self.cap, len(self.nodes) + 1)
        if scope.frozen and cfg.trainable:
            cfg = cfg.model_copy(update={"trainable": False})
        name = self.unique(scope.full(local))
        broken = any(i is None for i in inputs)
        self.nodes[name] = Node(name=name, kind=kind, cfg=cfg,
                                inputs=[i for i in inputs if i is not None], path=path,
                                scope=scope.prefix, skip_inputs=frozenset(skip), broken=broken,
                                context=list(scope.context))
        scope.names[local] = name
        scope.name_paths[local] = path
        self.shapes.added(name)
        self.note_member(scope, name)
        parts = name.split(".")
        for i in range(1, len(parts)):
            self.by_suffix.setdefault(".".join(parts[i:]), name)
        return name

    def unique(self, full: str) -> str:
        """Names are checked where they are written (no dots, one per scope), so two layers can
        never share a qualified name; if they did, the model would silently lose one."""
        if full in self.nodes or full in self.blocks:
            raise InternalError(f"two layers got the qualified name '{full}'")
        return full

    def note_member(self, scope: Scope, name: str) -> None:
        for block in scope.blocks:
            block.members.append(name)

    # ---- the composite protocol (archspec/frontend/composite.py documents it) -----------
    def begin(self, use: Use, cfg) -> tuple[str | None, Scope | None]:
        composite, start = COMPOSITES[cfg.type], self.use_input(use)
        return start, self.open_use(use, composite.name, composite.stem, start,
                                    numbered=getattr(cfg, "numbered", False),
                                    inline=use.inline or cfg.inline)

    def open_use(self, use: Use, kind: str, stem: str, start: str | None, *,
                 numbered: bool = False, inline: bool = False) -> Scope | None:
        """The scope of a block as used at `use` (None after a reported error)."""
        item = use.item
        frozen = use.frozen or item.get("trainable") is False
        if inline:
            if isinstance(item.get("name"), str) and use.name is None:
                self.error(use.path + ("name",), "an inline block has no name of its own",
                           scope=use.scope, hint="remove 'name' (its layers are named in the "
                           "enclosing scope), or remove 'inline: true'")
                return None
            return self.open(use.scope, use.path, kind, stem, inline=True, numbered=numbered,
                             values=use.values, input=start, frozen=frozen)
        return self.open(use.scope, use.path, kind, use.stem or stem,
                         name=use.name if use.name is not None else item.get("name"),
                         fixed=use.fixed, numbered=numbered, values=use.values, input=start,
                         frozen=frozen, title=use.title)

    def open(self, outer: Scope, path: Path, kind: str, stem: str, *, name: Any = None,
             fixed: bool = False, name_path: Path | None = None, name_at_key: bool = False,
             numbered: bool = False,
             values: dict | None = None, input: str | None, frozen: bool = False,
             inline: bool = False, title: str | None = None) -> Scope | None:
        values = dict(values or {})
        frozen = outer.frozen or frozen
        if inline:  # a view: names go to the enclosing scope; no block, no cluster
            return Scope(prefix=outer.prefix, parent=outer, names=outer.names,
                         name_paths=outer.name_paths, counters=outer.counters,
                         reserved=outer.reserved, seen=outer.seen, frozen=frozen,
                         context=list(outer.context), blocks=outer.blocks, values=values,
                         input=input, numbered=outer.numbered, inline=kind)
        local = self.claim(outer, path, stem, name, fixed=fixed, name_path=name_path,
                           at_key=name_at_key)
        if local is None:
            return None
        full = self.unique(outer.full(local))
        parent = ".".join(outer.prefix) or None
        block = self.blocks[full] = Block(name=full, kind=kind, path=path, parent=parent,
                                          title=title)
        outer.names[local] = full  # resolved to the output node when the block closes
        outer.name_paths[local] = path
        inner = Scope(prefix=outer.prefix + (local,), parent=outer, frozen=frozen,
                      context=list(outer.context), blocks=outer.blocks + (block,),
                      values=values, input=input, numbered=numbered)
        self.scopes[full] = inner
        return inner

    def close(self, outer: Scope, inner: Scope, output: str | None) -> str | None:
        if inner.inline:
            return output
        full = ".".join(inner.prefix)
        self.blocks[full].output = output
        outer.names[inner.prefix[-1]] = output if output is not None else full
        return output

    def insert(self, scope: Scope, kind_name: str, fields: dict, inputs: list[str | None],
               path: Path, *, name: str | None = None, skip: tuple[int, ...] = ()) -> str | None:
        cfg = REGISTRY[kind_name].Config.model_validate(dict(fields, type=kind_name))
        return self.add_node(scope, cfg, inputs, path, name=name, fixed=True, skip=skip)

    def size(self) -> int:
        return len(self.nodes)

    def render_name(self, template: str, scope: Scope, values: dict, path: Path) -> str | None:
        """A name from a template ('denselayer${$i + 1}') over the variables of `scope` and
        `values`; None after a reported error."""
        variables = scope.variables().new_child(values)
        try:
            name = param_expr.render_template(template, variables)
        except param_expr.ExpressionError as exc:
            self.error(path, str(exc), scope=scope,
                       hint=exc.hint or "write a name with '${expression}' parts, e.g. "
                                        "'denselayer${$i + 1}'")
            return None
        if not re.fullmatch(NAME, name):
            self.error(path, f"'{template}' gives the name '{name}', which is not a valid name",
                       scope=scope, hint="a name has only letters, digits and '_'")
            return None
        return name

    @property
    def stopped(self) -> bool:
        return self.too_big

    def room_for(self, copies: int, per_copy: int, path: Path, scope: Scope) -> bool:
        """After a repeat's first copy: refuse at once one whose copies would pass the node
        limit (rather than building 100,000 layers first)."""
        total = len(self.nodes) + per_copy * (copies - 1)
        if total <= MAX_NODES:
            if self.cap is not None and total > self.cap:
                raise TooManyLayers(self.cap, total)
            return True
        self.error(path + ("times",), f"this repeat expands to {total:,} layers ({copies:,} "
                   f"copies of {per_copy:,}), more than the limit of {MAX_NODES:,}", scope=scope,
                   hint="reduce 'times' here or in the repeats inside it")
        self.too_big = True
        return False

    def use_input(self, use: Use) -> str | None:
        item, scope = use.item, use.scope
        if "from" in item:
            ref = item["from"]
            if isinstance(ref, list):
                if len(ref) != 1:
                    self.error(use.path + ("from",), "a block takes a single input",
                               hint="merge the inputs first (concat/add)", scope=scope)
                    return None
                ref = ref[0]
            return self.resolve(scope, ref, use.path + ("from",), own=item.get("name"))
        return use.current

    # ---- the walk ----------------------------------------------------------------------
    def expand(self, items: Any, path: Path, scope: Scope, current: str | None) -> str | None:
        if not isinstance(items, list) or not items:
            self.error(path, "expected a non-empty list of layers", scope=scope,
                       hint="write layers as a YAML list: '- {type: conv, ...}' or '- relu'")
            return None
        self.reserve_names(items, scope)
        for index, item in enumerate(items):
            if self.too_big:
                return None
            current = self.expand_item(item, path + (index,), scope, current)
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                scope.seen.add(item["name"])
        return current

    def expand_item(self, item: Any, path: Path, scope: Scope, current: str | None, *,
                    name: str | None = None, values: dict | None = None) -> str | None:
        """One item of a layer list. A composite may give a block item its name and variables
        (a repeat copy that is a single block is named by its index)."""
        if isinstance(item, str):  # one mapping per short form, so its validation is done once
            item = self.short_forms.setdefault(item, {"type": item})
        if not isinstance(item, dict):
            self.error(path, f"a layer must be a mapping or a type name, got {type(item).__name__}",
                       hint="e.g. '- {type: conv, out_channels: 16, kernel_size: 3}' or '- relu'",
                       scope=scope)
            return None
        item = self.evaluated(item, path, scope, current, values)
        if item is None or item is LEFT_OUT:
            return current if item is LEFT_OUT else None
        kind_name = item.get("type")
        if not isinstance(kind_name, str):
            self.error(path, "layer has no 'type'", hint="add e.g. 'type: conv'", scope=scope)
            return None
        type_path = path + ("type",) if "type" in item else path
        if kind_name in self.user_blocks or kind_name in COMPOSITES:
            return self.expand_block(kind_name, Use(item, path, scope, current, name=name,
                                                    values=values or {}, fixed=name is not None))
        if kind_name in REGISTRY:
            return self.expand_layer(item, path, scope, current)
        def choices():
            return list(REGISTRY) + list(COMPOSITES) + list(self.user_blocks)
        if is_foreign_layer(kind_name):
            self.error(type_path, f"'{kind_name}' is not a layer type of archspec", scope=scope,
                       hint=lambda: f"archspec's layer types: {', '.join(sorted(choices()))} "
                                    "(fields: 'archspec types')")
            return None
        self.error(type_path, f"unknown layer type '{kind_name}'",
                   hint=lambda: did_you_mean(kind_name, choices(), SYNONYMS) or
                   "run 'archspec types' for the list of layer types", scope=scope)
        return None

    def expand_block(self, kind_name: str, use: Use) -> str | None:
        if self.depth >= MAX_NESTING:
            # expansion recurses once per level: refuse before Python's stack runs out
            type_path = use.path + ("type",) if "type" in use.item else use.path
            self.error(type_path, f"blocks are nested more than {MAX_NESTING} levels deep",
                       hint="a chain of blocks using blocks this long is almost certainly a "
                            "mistake; flatten it",
                       notes=use.scope.context[:1] + use.scope.context[-1:])
            self.too_big = True
            return None
        self.depth += 1
        try:
            return self.expand_kind(kind_name, use)
        finally:
            self.depth -= 1

    def expand_kind(self, kind_name: str, use: Use) -> str | None:
        if kind_name in self.user_blocks:
            return self.expand_user_block(kind_name, use)
        cfg = self.validate(COMPOSITES[kind_name].Config, use.item, use.path, use.scope)
        if cfg is None:
            return None
        return COMPOSITES[kind_name].expand(self, cfg, use)

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
        inputs = [self.resolve(scope, r, path + at, own=cfg.name) if cfg.from_ is not None else r
                  for r, at in zip(refs, where)]
        if cfg.from_ is None and current is None:
            inputs = [None]
        n_in = len(inputs)
        if n_in < kind.min_inputs or (kind.max_inputs is not None and n_in > kind.max_inputs):
            lo, hi = kind.min_inputs, kind.max_inputs
            want = (f"{lo}" if hi == lo else f"at least {lo}" if hi is None else
                    f"{lo} or {hi}" if hi == lo + 1 else f"{lo} to {hi}")
            hint = ("give a single name in 'from'" if hi == 1 else
                    f"give at most {hi} names in 'from'" if hi is not None and n_in > hi else
                    "list its inputs: from: [a, b]")
            self.error(path + (("from",) if "from" in item else ()),
                       f"{kind.name} takes {want} input{'s' if (hi or lo) > 1 else ''}, "
                       f"got {n_in}", scope=scope, layer=scope.full(item["name"]) if "name" in item else None,
                       hint=hint)
            return None
        name = self.add_node(scope, cfg, inputs, path, name=item.get("name"))
        activation = cfg.activation if isinstance(cfg, ActivationField) else None
        if activation is not None and name is not None:
            out = self.activate(scope, activation, name, path + ("activation",))
            if out is not None and not scope.numbered:
                # the layer's name means its output as written: activated
                scope.names[name.rsplit(".", 1)[-1]] = out
            return out
        return name

    def activate(self, scope: Scope, activation: str, source: str | None, path: Path):
        """The node an `activation:` field adds after `source` (in a numbered scope it takes
        the next number, as nn.Sequential's ReLU does)."""
        kind = REGISTRY.get(activation)
        if kind is None or kind.family != "activation":
            choices = [k for k, v in REGISTRY.items() if v.family == "activation"]
            known = activation in REGISTRY or activation in COMPOSITES
            foreign = is_foreign_layer(activation)
            self.error(path, f"'{activation}' is a layer type, not an activation" if known else
                       f"'{activation}' is not an activation of archspec" if foreign else
                       f"unknown activation '{activation}'", scope=scope,
                       hint=lambda: (None if foreign else did_you_mean(activation, choices, SYNONYMS)) or
                       (f"write the {activation} as a layer of its own; " if known else "") +
                       f"activation: takes one of {', '.join(choices)}")
            return None
        cfg = kind.Config.model_validate({"type": activation})
        return self.add_node(scope, cfg, [source], path)

    def validate(self, config_cls, item: dict, path: Path, scope: Scope):
        """The item's config, or None after reporting why it is invalid. A repeat's copies
        share their items, and a valid item's config is shared with them (configs are never
        changed, only copied)."""
        cached = self.validated.get((config_cls, id(item)))
        if cached is not None and cached[0] is item:
            return cached[1]
        try:
            cfg = config_cls.model_validate(item)
            self.validated[(config_cls, id(item))] = (item, cfg)
            return cfg
        except ValidationError as exc:
            if len(self.diagnostics) >= MAX_KEPT:  # only counted from here: skip the wording
                self.omitted += 1
                return None
            groups = group_errors(config_cls, exc.errors())
            groups.sort(key=lambda g: self.source.key_position(path + existing_path(item, g[0]["loc"]))
                        or (0, 0))  # in source order
            layer = self.failed_layer_name(scope, item) if issubclass(config_cls, LayerConfig) \
                else None
            for group in groups:
                self.report_validation(config_cls, item, path, scope, group, layer)
            return None

    def failed_layer_name(self, scope: Scope, item: dict) -> str | None:
        """The name a layer that failed validation gets, so its diagnostics can name it. An
        automatic name is used up, so the layers after it keep distinct names."""
        name = item.get("name")
        if name is not None:  # an invalid name is reported itself; no other name fits
            return scope.full(name) if isinstance(name, str) and \
                re.fullmatch(NAME, name) else None
        kind = item.get("type")
        if not isinstance(kind, str) or (kind not in REGISTRY and kind not in COMPOSITES):
            return None
        stem = REGISTRY[kind].base_name if kind in REGISTRY else COMPOSITES[kind].stem
        return scope.full(self.next_name(scope, stem))

    def report_validation(self, config_cls, item, path, scope, group: list[dict],
                          layer: str | None = None) -> None:
        """One diagnostic for one problem (a group of pydantic errors about the same value)."""
        err = group[0]
        loc = tuple(err["loc"])
        model, start = locate(config_cls, loc)
        sub = max((existing_path(item, e["loc"]) for e in group), key=len)
        field_name = str(loc[start]) if len(loc) > start else ""
        if model is config_cls:
            kind = item["type"] if issubclass(config_cls, LayerConfig) and \
                isinstance(item.get("type"), str) else \
                getattr(config_cls, "described_as", "the spec")
        else:  # a nested model, e.g. the definition of block b at blocks.b
            kind = f"{str(loc[start - 2]).rstrip('s')} '{loc[start - 1]}'" if start >= 2 else \
                f"'{'.'.join(map(str, loc[:start]))}'"
        if model is not config_cls:
            layer = None  # the error is in a nested definition, not in this layer
        fields = [f.alias or n for n, f in model.model_fields.items()]
        if err["type"] == "extra_forbidden":
            def hint():
                if known := getattr(model, "field_hints", {}).get(field_name):
                    return known  # another framework's name for one of ours
                if close := did_you_mean(field_name, fields):
                    return close
                if field_name in ("in_channels", "num_features", "in_features"):
                    return f"this layer keeps the channel count, so it takes no {field_name}; " \
                        "remove it"
                return f"{kind} accepts: {', '.join(f for f in fields if f != 'type')}"
            self.error(path + sub, f"unknown field '{field_name}' for {kind}", at_key=True,
                       layer=layer, scope=scope, hint=hint)
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
            info = field_info(model, field_name)
            value = value_at(item, loc[:start + 1])
            if info is None:  # not a field error: the model's own value is of the wrong type
                self.error(path + sub, f"{kind} must be a mapping (got {show_value(value)})",
                           layer=layer, scope=scope, hint="write it as 'key: value' lines")
                return
            too_large = next((beyond_limit(field_name, e["input"]) for e in group
                              if e["type"] in ("less_than_equal", "greater_than_equal")), None)
            if too_large:
                self.error(path + sub, too_large[0], layer=layer, scope=scope, hint=too_large[1])
                return
            self.error(path + sub, f"{field_name} must be {describe_field(info)} "
                       f"(got {show_value(value)})", layer=layer, scope=scope,
                       hint=value_hint(info, field_name, value_at(item, sub)))

    # ---- expressions (archspec/frontend/variables.py) ----------------------------------
    def evaluated(self, item: dict, path: Path, scope: Scope, current: str | None,
                  values: dict | None = None) -> Any:
        """The item with its own fields evaluated in `scope` (and `values`, variables a
        composite gives it); the same dict when it has no '$' of its own. LEFT_OUT when its
        `when:` is false; None after a reported error."""
        plain = self.plain.get(id(item))
        if plain is None or plain[0] is not item:
            plain = self.plain[id(item)] = (item, not has_own_expressions(item))
        if plain[1] and "when" not in item:
            return item
        variables = self.item_variables(item, path, scope, current, values)
        try:
            if "when" in item:
                when = param_expr.substitute(item["when"], variables, path + ("when",))
                if not isinstance(when, bool):
                    self.error(path + ("when",), f"when must be true or false (got "
                               f"{show_value(when)})", scope=scope,
                               hint="compare, e.g. when: \"$i > 0\" or when: $batch_norm")
                    return None
                if not when:
                    self.left_out(item, scope, current)
                    return LEFT_OUT
                item = self.drop_when(item)
                if plain[1]:
                    return item
            kind = item.get("type")
            if has_expression(kind):
                kind = param_expr.substitute(kind, variables, path + ("type",))
            return evaluate_fields(dict(item, type=kind) if "type" in item else item, variables,
                                   path, user_block=isinstance(kind, str) and kind in self.user_blocks)
        except UnknownShape:
            return None  # the shape error upstream is reported; no second error here
        except param_expr.ExpressionError as exc:
            self.error(exc.path or path, str(exc), scope=scope,
                       hint=exc.hint or "write '$name' or arithmetic such as '$width * 2'")
            return None

    def item_variables(self, item: dict, path: Path, scope: Scope, current: str | None,
                       values: dict | None) -> ItemVariables:
        base = scope.variables()
        if values:
            base = base.new_child(values)

        def incoming() -> tuple | None:
            ref = item.get("from")
            if ref is None:
                return self.shapes.of(current)
            at = path + ("from",)
            if has_expression(ref):
                ref = param_expr.substitute(ref, base, at)
            if isinstance(ref, list) and ref:
                ref, at = ref[0], at + (0,)
            return self.shapes.of(self.resolve(scope, ref, at, own=item.get("name")))
        return ItemVariables(base, incoming, self.shapes.read_shape)

    def drop_when(self, item: dict) -> dict:
        """The item without its `when:` (one copy per item, shared by a repeat's copies)."""
        kept = self.without_when.get(id(item))
        if kept is None or kept[0] is not item:
            kept = self.without_when[id(item)] = (item, {k: v for k, v in item.items()
                                                         if k != "when"})
        return kept[1]

    def left_out(self, item: dict, scope: Scope, current: str | None) -> None:
        """An item left out by `when:` passes its input on: its name means that input."""
        name = item.get("name")
        if isinstance(name, str) and current is not None and name not in scope.names:
            scope.names[name] = current

    # ---- user-defined blocks -----------------------------------------------------------
    def block_values(self, block_name: str, declared: dict, given: dict, use: Use,
                     start: str | None) -> dict | None:
        """The variables a block's body sees of its own: the parameters given at the use
        (evaluated there, with the use's other fields) and the defaults of the others, which
        may use the variables visible at the use and the parameters above them."""
        values = dict(use.values)
        values.update(given)
        for key, default in declared.items():
            if key in given:
                continue
            if default is None:
                self.error(use.path + ("type",), f"block '{block_name}' needs parameter '{key}'",
                           scope=use.scope, hint=f"add '{key}: ...' to this layer")
                return None
            evaluated = self.evaluated({key: default}, self.blocks_path + (block_name, "params"),
                                       use.scope, start, values)
            if evaluated is None:
                return None
            values[key] = evaluated[key]
        return values

    def expand_single_body(self, block_name: str, body: dict, use: Use, start: str | None,
                           inline: bool) -> str | None:
        path = self.blocks_path + (block_name, "layers", 0)
        item = self.evaluated(body, path, use.scope, start, use.values)
        if item is None or item is LEFT_OUT:
            return start if item is LEFT_OUT else None
        return self.expand_block(item["type"], Use(
            item, path, use.scope, start,
            name=use.name if use.name is not None else use.item.get("name"), fixed=use.fixed,
            stem=block_name, values=use.values, inline=inline,
            frozen=use.frozen or use.item.get("trainable") is False, title=block_name))

    def expand_user_block(self, block_name: str, use: Use):
        item, path, scope = use.item, use.path, use.scope
        definition = self.user_blocks[block_name]
        def_path = self.blocks_path + (block_name,)
        if block_name in self.instantiating:
            self.error(path + ("type",), f"block '{block_name}' uses itself", scope=scope,
                       hint="a block cannot contain itself, directly or through another block")
            return None
        common = {k: item[k] for k in BLOCK_USE_FIELDS if k in item}
        if self.validate(BlockUse, common, path, scope) is None:
            return None
        declared = definition.get("params") or {}
        given: dict[str, Any] = {}
        for key, value in item.items():
            if key in common:
                continue
            if key not in declared:
                self.error(path + (key,), f"block '{block_name}' has no parameter '{key}'",
                           at_key=True, scope=scope,
                           hint=lambda key=key: did_you_mean(key, declared) or
                           f"its parameters: {', '.join(declared) or 'none'}")
                return None
            given[key] = value
        layers = definition.get("layers")
        start = self.use_input(use)
        context = self.source.use_note(block_name, def_path, path)
        inline = use.inline or item.get("inline") is True
        self.instantiating.append(block_name)
        try:
            scope.context.append(context)  # for errors in its defaults and its inlined body
            try:
                values = self.block_values(block_name, declared, given, use, start)
                if values is None:
                    return None
                use = dataclasses.replace(use, values=values)
                if _single_unnamed_block(layers, self.user_blocks):
                    # The body is one composite (e.g. a residual): it takes this instance's
                    # scope, so names read layer1.0.conv1 rather than layer1.0.res1.conv1.
                    return self.expand_single_body(block_name, layers[0], use, start, inline)
            finally:
                scope.context.pop()
            inner = self.open_use(use, block_name, block_name, start, inline=inline)
            if inner is None:
                return None
            inner.context.append(context)
            out = self.expand(layers, def_path + ("layers",), inner, start)
        finally:
            self.instantiating.pop()
        return self.close(scope, inner, out)


class BlockUse(LayerConfig):
    """The fields a user-defined block's instance takes besides the block's parameters."""
    type: str
    inline: bool = Field(False, description=INLINE_DOC)


BLOCK_USE_FIELDS = tuple(f.alias or n for n, f in BlockUse.model_fields.items())


def _single_unnamed_block(layers: Any, user_blocks: dict) -> bool:
    return (isinstance(layers, list) and len(layers) == 1 and isinstance(layers[0], dict)
            and "name" not in layers[0] and layers[0].get("inline") is not True
            and isinstance(layers[0].get("type"), str)
            and (layers[0]["type"] in COMPOSITES or layers[0]["type"] in user_blocks))
