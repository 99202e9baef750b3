"""Safe YAML front end: spec text -> plain Python data plus a table of source positions.

PyYAML's own composer and constructor are recursive and expand aliases eagerly, so a hostile
file can exhaust the stack or memory before any check runs.  We therefore only take the *event
stream* from the (safe) parser and build the data ourselves with an explicit stack, checking
every limit as each event arrives.  The SafeLoader is used for its parser, its tag resolver and
its scalar converters (int/float/bool), never for constructing collections.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any, BinaryIO, NoReturn

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode

from archspec.errors import Diagnostic, FileError, SpecError
from archspec.fileio import open_input, read_bounded

Path = tuple[str | int, ...]

class _PySpecLoader(yaml.SafeLoader):
    """Safe loader used only as an event source, tag resolver and scalar converter (pure Python).

    PyYAML's scanner looks at every pending simple key for every token; in `[[[[...` there are
    up to 1024 of them, which made 0.4 s of CPU before our depth limit could fire. A key is
    deleted before it is saved again, so the dict holds them oldest first: the stale ones are
    a prefix and the first one is the nearest."""

    def next_possible_simple_key(self) -> int | None:
        for key in self.possible_simple_keys.values():
            return key.token_number
        return None

    def stale_possible_simple_keys(self) -> None:
        keys = self.possible_simple_keys
        while keys:
            level, key = next(iter(keys.items()))
            if key.line == self.line and self.index - key.index <= 1024:
                return
            if key.required:
                raise yaml.scanner.ScannerError("while scanning a simple key", key.mark,
                                                "could not find expected ':'", self.get_mark())
            del keys[level]


# The libyaml-backed loader is ~5x faster and reports the same marks; fall back if absent.
try:
    from yaml.cyaml import CParser as _CParser
    from yaml.cyaml import CSafeLoader

    class _SpecLoader(CSafeLoader):
        """The same, with libyaml's parser."""

except ImportError:  # PyYAML built without libyaml
    _CParser = None
    _SpecLoader = _PySpecLoader  # type: ignore[misc]

# YAML 1.1 only reads a number as a float when it has a dot and a signed exponent, so `1e-3`,
# `1E5` and `2.5e3` would stay strings; scientific notation is too common in specs for that.
SCIENTIFIC_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$")
for _loader in {_SpecLoader, _PySpecLoader}:
    _loader.add_implicit_resolver("tag:yaml.org,2002:float", SCIENTIFIC_FLOAT,
                                  list("-+0123456789."))

# libyaml 0.2.6 (in PyYAML 6.0.4) stops at its own nesting limit of 1000 levels, and its scanner
# reads up to 1024 characters ahead, so a deep flow collection hits that limit before we see the
# event that crosses ours.  The pure-Python parser has no such limit (and no recursion).
_LIBYAML_NESTING_LIMIT = re.compile(r"maximum nesting|nest(ing)? level", re.IGNORECASE)


_CORE = "tag:yaml.org,2002:"
_NULL, _BOOL, _INT, _FLOAT, _STR = (_CORE + t for t in ("null", "bool", "int", "float", "str"))
_SEQ, _MAP = _CORE + "seq", _CORE + "map"
_SCALAR_TAGS = frozenset({_NULL, _BOOL, _INT, _FLOAT, _STR})
# Implicitly resolved tags that we read as plain text: unquoted dates, and '=' (the 1.1 value key).
_AS_STRING = frozenset({_CORE + "timestamp", _CORE + "value"})
_MERGE = _CORE + "merge"

_LEADING_ZERO = re.compile(r"[-+]?0[0-9_]*[0-9][0-9_]*")

# YAML line breaks (marks count these), so our `lines` agrees with the parser's line numbers.
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 10_000_000  # file size; checked before parsing
    max_depth: int = 100  # nesting of mappings/sequences
    max_nodes: int = 1_000_000  # nodes produced after alias expansion (billion laughs defence)
    max_int_digits: int = 30  # integers longer than this are refused before conversion
    max_scalar_chars: int = 100_000  # a single scalar longer than this is refused
    max_files: int = 64  # files one spec reads (itself and its imports); max_bytes and
    # max_nodes bound all of them together


def _limit_hint(field: str, what: str) -> str:
    return f"{what}; if the spec really needs more, pass limits=Limits({field}=...) to the loader"


# --------------------------------------------------------------------------- source map


@dataclass(frozen=True)
class _Alias:
    old: Path
    seq: int  # registration order: an alias only sees aliases registered before it
    keeps_top: bool  # YAML alias expansion: the alias node itself keeps its own position


class SourceMap:
    """Where each value (and each mapping key) of the loaded data came from in the source."""

    def __init__(self, file: str = "<string>", lines: list[str] | None = None,
                 text: str | None = None):
        self.file = file
        self.lines: list[str] = lines if lines is not None else []
        self.text = text  # the whole source, kept for checkpoints (None when not known)
        self.nodes = 0  # YAML nodes built so far for the spec, this file included (max_nodes)
        self._values: dict[Path, tuple[int, int]] = {}
        self._keys: dict[Path, tuple[int, int]] = {}
        self._aliases: dict[Path, _Alias] = {}
        self._seq = 0

    # -- recording (used by the loader) --

    def _set_value(self, path: Path, line: int, column: int) -> None:
        self._values[path] = (line, column)

    def _set_key(self, path: Path, line: int, column: int) -> None:
        self._keys[path] = (line, column)

    def _add_alias(self, new_path: Path, old_path: Path, keeps_top: bool) -> None:
        self._seq += 1
        self._aliases[tuple(new_path)] = _Alias(tuple(old_path), self._seq, keeps_top)

    # -- public API --

    def alias(self, new_path: Path, old_path: Path) -> None:
        """Positions under new_path now resolve to those under old_path (as it was at this call)."""
        self._add_alias(new_path, old_path, keeps_top=False)

    def position(self, path: Path) -> tuple[int, int] | None:
        """(line, column) of the value at path, else of its nearest ancestor that has one."""
        path = tuple(path)
        for cut in range(len(path), -1, -1):
            found = self._find(self._values, path[:cut], math.inf)
            if found is not None:
                return found
        return None

    def key_position(self, path: Path) -> tuple[int, int] | None:
        """(line, column) of the mapping key whose value is at path; else position(path)."""
        found = self._find(self._keys, tuple(path), math.inf)
        return found if found is not None else self.position(path)

    def file_of(self, path: Path) -> str:
        return self.file

    def place(self, path: Path) -> str | None:
        """Where the value at path is, for a note: 'line 12' (the file is the diagnostic's)."""
        pos = self.position(path)
        return None if pos is None else f"line {pos[0]}"

    def use_note(self, block: str, definition: Path, use: Path) -> str:
        """The note on what is inside an instance of a user block (see SpecSources)."""
        where = self.position(use)
        return f"in block '{block}' used at line {where[0]}" if where else f"in block '{block}'"

    def diagnostic(
        self,
        path: Path,
        message: str,
        *,
        hint: str | None = None,
        layer: str | None = None,
        notes: tuple[str, ...] | list[str] = (),
        at_key: bool = False,
    ) -> Diagnostic:
        pos = self.key_position(path) if at_key else self.position(path)
        line, column = pos if pos is not None else (None, None)
        return Diagnostic(
            message, file=self.file, line=line, column=column, layer=layer, hint=hint, notes=list(notes)
        )

    def _find(self, table: dict[Path, tuple[int, int]], path: Path, before: float) -> tuple[int, int] | None:
        """Exact lookup of path, following aliases registered before `before` (longest prefix first).

        Aliases win over the table: they were recorded after the data at new_path was moved there.
        Strictly decreasing `before` guarantees termination even for alias cycles."""
        for cut in range(len(path), -1, -1):
            entry = self._aliases.get(path[:cut])
            if entry is None or entry.seq >= before:
                continue
            if entry.keeps_top and cut == len(path):
                break  # the alias node's own position is in the table
            found = self._find(table, entry.old + path[cut:], entry.seq)
            if found is not None:
                return found
            break
        return table.get(path)


# --------------------------------------------------------------------------- building data


@dataclass
class _Anchor:
    value: Any
    path: Path | None  # where the anchored node sits, for position lookups through aliases
    nodes: int  # nodes in its expansion
    height: int  # nesting levels it adds


class _Frame:
    """An open sequence or mapping."""

    __slots__ = ("value", "path", "anchor", "mark", "start_count", "height", "key", "keys")

    def __init__(self, value: list | dict, path: Path, anchor: str | None, mark: Any, start_count: int):
        self.value = value
        self.path = path
        self.anchor = anchor
        self.mark = mark
        self.start_count = start_count
        self.height = 1
        self.key: str | None = None  # mappings: the key waiting for its value
        self.keys: dict[str, Any] = {}  # mappings: key -> mark, for duplicate detection


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, limits: Limits, smap: SourceMap):
        self.loader = loader
        self.limits = limits
        self.smap = smap
        self.stack: list[_Frame] = []
        self.anchors: dict[str, _Anchor] = {}
        self.anchor_marks: dict[str, Any] = {}
        self.open_anchors: set[str] = set()
        self.nodes = smap.nodes  # the spec's other files count too
        self.root: Any = None
        self.root_done = False
        self.shared = False  # some collection is referenced twice (through an alias)

    # -- errors --

    def fail(self, mark: Any, message: str, hint: str, notes: list[str] | None = None) -> NoReturn:
        raise SpecError(
            Diagnostic(
                message,
                file=self.smap.file,
                line=mark.line + 1,
                column=mark.column + 1,
                hint=hint,
                notes=notes or [],
            )
        )

    # -- document structure --

    def document(self) -> Any:
        loader = self.loader
        loader.get_event()  # StreamStartEvent
        if loader.check_event(StreamEndEvent):
            _fail_at(
                self.smap.file, 1, 1, "spec is empty",
                "the file has no YAML content (only comments or blank lines); write the spec as a YAML mapping",
            )
        start = loader.get_event()  # DocumentStartEvent
        root = self.root_node()
        loader.get_event()  # DocumentEndEvent
        if loader.check_event(DocumentStartEvent):
            self.fail(
                loader.peek_event().start_mark,
                "spec contains more than one YAML document",
                "a spec is a single YAML document; remove the '---' separator and what follows, "
                "or split it into separate files",
            )
        if root is None:
            self.fail(start.start_mark, "spec is empty", "write the spec as a YAML mapping")
        # Copy shared parts so later passes can edit one use of an alias without changing the others.
        return _unshare(root) if self.shared else root

    def root_node(self) -> Any:
        """Consume events until the root node is complete (iteratively: nesting can be hostile)."""
        handlers = {
            ScalarEvent: self.on_scalar,
            AliasEvent: self.on_alias,
            SequenceStartEvent: self.on_collection_start,
            MappingStartEvent: self.on_collection_start,
            SequenceEndEvent: self.on_collection_end,
            MappingEndEvent: self.on_collection_end,
        }
        get_event = self.loader.get_event
        while not self.root_done:
            event = get_event()
            handlers[type(event)](event)
        return self.root

    def count(self, n: int, mark: Any) -> None:
        self.nodes += n
        if self.nodes > self.limits.max_nodes:
            self.fail(
                mark,
                f"spec expands to more than {self.limits.max_nodes:,} nodes (max_nodes limit, aliases included)",
                _limit_hint(
                    "max_nodes",
                    "this usually means aliases that reference each other many times (a 'billion laughs' document)",
                ),
            )

    def child_path(self) -> Path:
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return top.path + (len(top.value),)
        return top.path + (top.key,)

    def wants_key(self) -> bool:
        return bool(self.stack) and isinstance(self.stack[-1].value, dict) and self.stack[-1].key is None

    def attach(self, value: Any, height: int) -> None:
        """Add a finished node to the open collection (or make it the root)."""
        if not self.stack:
            self.root, self.root_done = value, True
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
        else:
            top.value[top.key] = value
            top.key = None
        top.height = max(top.height, height + 1)

    # -- anchors and aliases --

    def check_new_anchor(self, name: str | None, mark: Any) -> None:
        if name is None:
            return
        if name in self.anchor_marks:
            first = self.anchor_marks[name]
            self.fail(
                mark,
                f"anchor '&{name}' is defined twice",
                "give each anchor a unique name",
                [f"first defined at line {first.line + 1}, column {first.column + 1}"],
            )
        self.anchor_marks[name] = mark

    def on_alias(self, event: AliasEvent) -> None:
        name, mark = event.anchor, event.start_mark
        if name in self.open_anchors:
            self.fail(mark, f"alias '*{name}' refers to a node that contains it (recursive alias)",
                      "an alias must refer to a complete node defined before it, not to one of its own parents")
        anchor = self.anchors.get(name)
        if anchor is None:
            self.fail(mark, f"alias '*{name}' refers to an undefined anchor",
                      f"define the anchor with '&{name}' on a node before using '*{name}'")
        if self.wants_key():
            self.fail(mark, "an alias cannot be used as a mapping key",
                      "write the key as a plain string")
        self.count(anchor.nodes, mark)
        if len(self.stack) + anchor.height > self.limits.max_depth:
            self.depth_error(mark)
        path = self.child_path()
        self.smap._set_value(path, mark.line + 1, mark.column + 1)
        if isinstance(anchor.value, (list, dict)):
            if anchor.path is not None:
                self.smap._add_alias(path, anchor.path, keeps_top=True)
            self.shared = True  # copied once the whole document passed the node limit
        self.attach(anchor.value, anchor.height)

    # -- collections --

    def depth_error(self, mark: Any) -> NoReturn:
        self.fail(
            mark,
            f"spec is nested more than {self.limits.max_depth} levels deep (max_depth limit)",
            _limit_hint("max_depth", "flatten the structure"),
        )

    def on_collection_start(self, event: SequenceStartEvent | MappingStartEvent) -> None:
        mark = event.start_mark
        is_map = isinstance(event, MappingStartEvent)
        self.check_collection_tag(event.tag, _MAP if is_map else _SEQ, mark)
        if self.wants_key():
            self.fail(mark, "mapping keys must be plain strings, not a " + ("mapping" if is_map else "list"),
                      "write the key as a plain string")
        if len(self.stack) >= self.limits.max_depth:
            self.depth_error(mark)
        start_count = self.nodes
        self.count(1, mark)
        self.check_new_anchor(event.anchor, mark)
        path = self.child_path()
        self.smap._set_value(path, mark.line + 1, mark.column + 1)
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        self.stack.append(_Frame({} if is_map else [], path, event.anchor, mark, start_count))

    def on_collection_end(self, event: Any) -> None:
        frame = self.stack.pop()
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = _Anchor(frame.value, frame.path, self.nodes - frame.start_count, frame.height)
        self.attach(frame.value, frame.height)

    def check_collection_tag(self, tag: str | None, expected: str, mark: Any) -> None:
        if tag is None or tag == "!" or tag == expected:
            return
        if tag in _SCALAR_TAGS or tag in (_SEQ, _MAP):
            kind = "mapping" if expected == _MAP else "list"
            self.fail(mark, f"tag '{_show_tag(tag)}' cannot be applied to a {kind}", "remove the tag")
        self.tag_error(tag, mark)

    # -- scalars --

    def tag_error(self, tag: str, mark: Any) -> NoReturn:
        self.fail(
            mark,
            f"tag '{_show_tag(tag)}' is not allowed: a spec is data, never code",
            "remove the tag; only plain strings, numbers, booleans, null, lists and mappings are allowed",
        )

    def scalar_tag(self, event: ScalarEvent) -> str:
        """The scalar's tag after implicit resolution, refusing anything outside the core schema."""
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(ScalarNode, event.value, event.implicit)
            return _STR if tag in _AS_STRING else tag
        if tag in (_SEQ, _MAP):
            self.fail(event.start_mark, f"tag '{_show_tag(tag)}' cannot be applied to a scalar", "remove the tag")
        if tag not in _SCALAR_TAGS:
            self.tag_error(tag, event.start_mark)
        return tag

    def on_scalar(self, event: ScalarEvent) -> None:
        mark = event.start_mark
        self.count(1, mark)
        if len(event.value) > self.limits.max_scalar_chars:
            self.fail(
                mark,
                f"value is {len(event.value):,} characters long, more than the limit of "
                f"{self.limits.max_scalar_chars:,} (max_scalar_chars limit)",
                _limit_hint("max_scalar_chars", "shorten the value"),
            )
        self.check_new_anchor(event.anchor, mark)
        tag = self.scalar_tag(event)
        if self.wants_key():
            value = self.key(event, tag)
            path = None  # a key has no value path of its own
        else:
            self.check_yaml11_number(event, tag)
            value = self.scalar_value(event, tag)
            path = self.child_path()
            self.smap._set_value(path, mark.line + 1, mark.column + 1)
            self.attach(value, 0)
        if event.anchor is not None:
            self.anchors[event.anchor] = _Anchor(value, path, 1, 0)

    def key(self, event: ScalarEvent, tag: str) -> str:
        mark, frame = event.start_mark, self.stack[-1]
        if tag == _MERGE:
            self.fail(mark, "merge keys ('<<') are not supported",
                      "define the shared part once as a user-defined block and use that block instead")
        if tag == _INT and event.tag is None and re.fullmatch(r"0|-?[1-9][0-9]{0,17}", event.value):
            tag = _STR  # a table keyed by numbers ({18: [2, 2, 2, 2]}): keys stay text, as written
        if tag != _STR:
            shown = event.value if event.value else "(empty)"
            self.fail(mark, f"mapping key {shown} is not a string (YAML reads it as {_show_tag(tag)})",
                      f"quote the key, e.g. \"{event.value}\": ...")
        key = event.value
        if key in frame.keys:
            first = frame.keys[key]
            self.fail(mark, f"duplicate key '{key}'", "remove one of the two entries or rename it",
                      [f"first '{key}' is at line {first.line + 1}, column {first.column + 1}"])
        frame.keys[key] = mark
        frame.key = key
        self.smap._set_key(frame.path + (key,), mark.line + 1, mark.column + 1)
        return key

    def scalar_value(self, event: ScalarEvent, tag: str) -> Any:
        if tag == _STR:
            return event.value
        if tag == _NULL:
            return self.explicit_null(event)
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark)
        try:
            if tag == _BOOL:
                return self.loader.construct_yaml_bool(node)
            if tag == _INT:
                self.check_int_length(event)
                return self.loader.construct_yaml_int(node)
            return self.finite_float(event, self.loader.construct_yaml_float(node))
        except (ValueError, KeyError, IndexError):  # only reachable with an explicit tag on a mismatching value
            self.fail(event.start_mark, f"value '{event.value}' is not a valid {_show_tag(tag)}",
                      "remove the tag or fix the value")

    def explicit_null(self, event: ScalarEvent) -> None:
        if event.tag not in (None, "!") and self.loader.resolve(ScalarNode, event.value, (True, False)) != _NULL:
            self.fail(event.start_mark, f"value '{event.value}' is not a valid !!null",
                      "remove the tag or fix the value")
        return None

    def check_yaml11_number(self, event: ScalarEvent, tag: str) -> None:
        """Refuse the YAML 1.1 numerals that read as something other than what a reader sees.

        `1:30` is base 60 (90) and `017` is octal (15), while `08` is not octal and stays text.
        Hex (`0x1F`), binary (`0b11`) and digit groups (`1_000`) mean what Python means: kept."""
        text = event.value
        if tag in (_INT, _FLOAT) and ":" in text:
            value = self.scalar_value(event, tag)
            self.fail(event.start_mark, f"{text} is a base-60 number in YAML 1.1 (it reads as {value})",
                      f"write the number itself, or quote it ('{text}') if it is text")
        plain = event.tag is None and event.implicit[0]
        if (tag == _INT or tag == _STR and plain) and _LEADING_ZERO.fullmatch(text):
            read_as = f"as octal ({self.scalar_value(event, tag)})" if tag == _INT else "as text, not a number"
            self.fail(event.start_mark, f"{text} has a leading zero, which YAML 1.1 reads {read_as}",
                      f"write it without the leading zero, or quote it ('{text}') if it is text")

    def check_int_length(self, event: ScalarEvent) -> None:
        # Checked on the raw text: converting a huge literal is itself the attack (quadratic time).
        digits = len(event.value.lstrip("+-").replace("_", ""))
        if digits > self.limits.max_int_digits:
            self.fail(
                event.start_mark,
                f"integer has {digits:,} digits, more than the limit of {self.limits.max_int_digits} "
                "(max_int_digits limit)",
                _limit_hint("max_int_digits", "use a smaller number, or quote it if it is meant as text"),
            )

    def finite_float(self, event: ScalarEvent, value: float) -> float:
        if not math.isfinite(value):
            self.fail(event.start_mark, "NaN or infinite number is not allowed",
                      "use a finite number, or quote it if it is meant as text")
        return value


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


def _unshare(root: Any) -> Any:
    """Replace every second reference to a dict/list by a fresh deep copy (iteratively)."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        container = todo.pop()
        seen.add(id(container))
        keys = container.keys() if isinstance(container, dict) else range(len(container))
        for key in keys:
            item = container[key]
            if not isinstance(item, (dict, list)):
                continue
            if id(item) in seen:
                container[key] = _deep_copy(item)  # fresh objects: nothing left to check inside
            else:
                seen.add(id(item))
                todo.append(item)
    return root


def _deep_copy(value: Any) -> Any:
    """Copy nested dicts/lists without recursion (depth is bounded by a limit the user may raise)."""
    if not isinstance(value, (dict, list)):
        return value
    root = type(value)()
    todo = [(value, root)]
    while todo:
        src, dst = todo.pop()
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for key, item in items:
            if isinstance(item, (dict, list)):
                copy = type(item)()
                todo.append((item, copy))
            else:
                copy = item
            if isinstance(dst, dict):
                dst[key] = copy
            else:
                dst.append(copy)
    return root


# --------------------------------------------------------------------------- text handling


def _fail_at(
    filename: str, line: int, column: int, message: str, hint: str, notes: list[str] | None = None
) -> NoReturn:
    raise SpecError(Diagnostic(message, file=filename, line=line, column=column, hint=hint, notes=notes or []))


def _line_col(text: str) -> tuple[int, int]:
    """1-based (line, column) of the position just after `text`."""
    breaks = list(_LINE_BREAK.finditer(text))
    if not breaks:
        return 1, len(text) + 1
    return len(breaks) + 1, len(text) - breaks[-1].end() + 1


def _size_error(filename: str, size: int | None, limits: Limits) -> NoReturn:
    _fail_at(
        filename, 1, 1,
        f"spec is {'' if size is None else f'{size:,} bytes, '}more than the limit of "
        f"{limits.max_bytes:,} bytes",
        "raise the limit with --max-bytes on the command line, or limits=Limits(max_bytes=...) in Python",
    )


def _decode(data: bytes, filename: str) -> str:
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        # Columns count characters after the BOM, as an editor shows them.
        line, column = _line_col(data[bom : bom + exc.start].decode("utf-8"))
        offset = bom + exc.start
        _fail_at(
            filename, line, column,
            f"file is not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset})",
            "save the file as UTF-8",
        )


def _to_text(source: str | bytes, filename: str, limits: Limits) -> str:
    if isinstance(source, str):
        try:
            size = len(source.encode("utf-8"))
        except UnicodeEncodeError as exc:  # lone surrogates cannot come from a real file
            line, column = _line_col(source[: exc.start])
            _fail_at(filename, line, column, "spec text contains an invalid character (lone surrogate)",
                     "remove the character")
        if size > limits.max_bytes:
            _size_error(filename, size, limits)
        return source[1:] if source.startswith("\ufeff") else source
    if len(source) > limits.max_bytes:
        _size_error(filename, len(source), limits)
    return _decode(source, filename)


# --------------------------------------------------------------------------- YAML errors

_TAB_HINT = "YAML does not allow tabs for indentation; indent with spaces"
_SYNTAX_HINTS = (
    ("'\\t'", _TAB_HINT),
    ("mapping values are not allowed", "a value containing ': ' must be quoted, or the indentation is off"),
    ("could not find expected ':'", "check for a missing ':' after a key or an unclosed quote"),
)
_DEFAULT_SYNTAX_HINT = "check the indentation and quoting around this position"


def _syntax_hint(problem: str, lines: list[str], line: int, column: int) -> str:
    if 1 <= line <= len(lines) and lines[line - 1][column - 1 : column] == "\t":
        return _TAB_HINT  # libyaml does not name the character
    return next((h for needle, h in _SYNTAX_HINTS if needle in problem), _DEFAULT_SYNTAX_HINT)


def _syntax_error(exc: yaml.YAMLError, text: str, filename: str, lines: list[str], byte_offsets: bool) -> NoReturn:
    if isinstance(exc, yaml.reader.ReaderError):
        if byte_offsets:
            prefix = text.encode("utf-8")[: exc.position].decode("utf-8", "replace")
        else:
            prefix = text[: exc.position]
        line, column = _line_col(prefix)
        _fail_at(filename, line, column, f"character U+{exc.character:04X} is not allowed in YAML ({exc.reason})",
                 "remove control characters from the file")
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    notes = []
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context:
        where = f" (line {context_mark.line + 1}, column {context_mark.column + 1})" if context_mark else ""
        notes.append(f"{context}{where}")
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    hint = _syntax_hint(problem, lines, line, column)
    _fail_at(filename, line, column, f"YAML syntax error: {problem}", hint, notes)


# --------------------------------------------------------------------------- public API


def load_yaml(source: str | bytes, filename: str = "<string>", limits: Limits = Limits(),
              nodes_used: int = 0) -> tuple[Any, SourceMap]:
    """Parse one YAML document safely; return (data, source map). Raises SpecError.
    nodes_used: nodes the spec's other files took from the max_nodes limit."""
    text = _to_text(source, filename, limits)
    smap = SourceMap(filename, _LINE_BREAK.split(text), text)
    smap.nodes = nodes_used
    # libyaml reports reader errors as byte offsets, the pure-Python reader as character offsets.
    byte_offsets = _CParser is not None and issubclass(_SpecLoader, _CParser)
    try:
        return _parse(_SpecLoader, text, limits, smap), smap
    except yaml.YAMLError as exc:
        if not (byte_offsets and _LIBYAML_NESTING_LIMIT.search(str(getattr(exc, "problem", "")))):
            _syntax_error(exc, text, filename, smap.lines, byte_offsets)
    # Only libyaml's nesting limit gets here: our own depth check, located, from the Python parser.
    smap = SourceMap(filename, smap.lines, text)
    smap.nodes = nodes_used
    try:
        return _parse(_PySpecLoader, text, limits, smap), smap
    except yaml.YAMLError as exc:
        _syntax_error(exc, text, filename, smap.lines, byte_offsets=False)


def _parse(loader_class: type, text: str, limits: Limits, smap: SourceMap) -> Any:
    loader = None
    try:
        loader = loader_class(text)  # the pure-Python reader already checks characters here
        builder = _Builder(loader, limits, smap)
        data = builder.document()
        smap.nodes = builder.nodes
        return data
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(
    path: str | os.PathLike, limits: Limits = Limits(), display_name: str | None = None
) -> tuple[Any, SourceMap]:
    """Load a spec file (a regular file only: see archspec.fileio); its size is checked before a
    single byte is read."""
    name = display_name if display_name is not None else os.fspath(path)
    try:
        with open_input(path, "spec file") as f:
            size = os.fstat(f.fileno()).st_size
            if size > limits.max_bytes:
                _size_error(name, size, limits)
            data = read_bounded(f, limits.max_bytes)  # bounded: the file may grow meanwhile
    except FileError as exc:
        raise SpecError(Diagnostic(exc.message, file=name, hint=exc.hint)) from None
    return load_yaml(data, name, limits)


def load_yaml_stream(stream: BinaryIO, limits: Limits = Limits(), name: str = "<stdin>"
                     ) -> tuple[Any, SourceMap]:
    """Load a spec from a stream (standard input), reading at most the size limit."""
    data = read_bounded(stream, limits.max_bytes)
    if len(data) > limits.max_bytes:
        _size_error(name, None, limits)
    return load_yaml(data, name, limits)
