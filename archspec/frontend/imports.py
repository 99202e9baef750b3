"""`imports:`: blocks and params defined in other spec files, merged into the importing spec.

    imports:
      - {file: blocks/squeezenet.yaml}                     # all its blocks and params
      - {file: ../lib/resnet.yaml, blocks: [bottleneck]}   # these (and the blocks they use)

A path is relative to the importing file (to the working folder for text and standard input).
A library file holds only `blocks:`, `params:`, `imports:` and `description:`; what it imports
it passes on. Every file is read by archspec.fileio's input rule (a regular file only: a FIFO,
device or directory is refused without blocking), each once however often it is imported, and
all of them together within the spec's limits (max_files, max_bytes, max_nodes). A cycle, a
self-import and two different definitions of one name are located errors.

The result is one resolved document (no `imports:`; imported definitions first, in import
order) and its SpecSources, which sends each imported definition's path to its own file.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import Diagnostic, FileError, SpecError
from ..fileio import open_input, read_bounded
from .messages import did_you_mean, show_value
from .sources import SpecSources
from .yaml_loader import Limits, Path, SourceMap, load_yaml

KINDS = ("params", "blocks")  # what a file exports, in the order the resolved document has them
ENTRY_FIELDS = ("file", "blocks", "params")
LIBRARY_FIELDS = ("description", "imports", "params", "blocks")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Definition:
    """A block or param as written: its value, its file's map and its path there."""
    value: Any
    smap: SourceMap
    path: Path

    def same(self, other: Definition) -> bool:
        return self.smap is other.smap and self.path == other.path


@dataclass
class Namespace:
    """What a file defines and imports: kind -> name -> definition, in order."""
    defs: dict[str, dict[str, Definition]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS})


def resolve_imports(data: Any, sources: SpecSources, limits: Limits, base: str | None,
                    identity: tuple[int, int] | None = None) -> Any:
    """The document with its imports merged in; `sources` (the root file's) learns the other
    files. base: the folder import paths are relative to; None refuses imports (a checkpoint's
    spec must stand alone). identity: the root file's (device, inode), to catch self-imports."""
    smap = sources.root
    if not isinstance(data, dict) or "imports" not in data:
        return data
    if base is None:
        raise SpecError(smap.diagnostic(("imports",), "this spec may not import files: it must "
                                        "be self-contained", at_key=True,
                                        hint="a checkpoint stores the resolved spec, with its "
                                             "imports inlined; remove 'imports:'"))
    resolver = _Resolver(limits, sources)
    namespace = resolver.namespace(data, smap, base, [identity] if identity else [], [])
    if resolver.diagnostics:
        raise SpecError(resolver.diagnostics)
    resolved = _merged(data, namespace, smap, sources)
    sources.resolved = resolved
    return resolved


def _merged(data: dict, namespace: Namespace, smap: SourceMap, sources: SpecSources) -> dict:
    """The root document with imported definitions merged into params: and blocks: (which
    take the place of imports: when the root has none)."""
    merged: dict[str, dict] = {}
    for kind in KINDS:
        defs = namespace.defs[kind]
        merged[kind] = {name: d.value for name, d in defs.items()}
        for name, d in defs.items():
            if d.smap is not smap:
                sources.graft((kind, name), d.smap, d.path)
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "imports":
            out.update({kind: merged[kind] for kind in KINDS if kind not in data and merged[kind]})
        elif key in KINDS and isinstance(value, dict):
            out[key] = merged[key]
        else:
            out[key] = value
    return out


class _Resolver:
    def __init__(self, limits: Limits, sources: SpecSources):
        self.limits = limits
        self.sources = sources
        self.diagnostics: list[Diagnostic] = []
        self.files: dict[tuple[int, int], Namespace | None] = {}  # identity -> its namespace
        self.bytes = len((sources.root.text or "").encode("utf-8"))
        self.nodes = sources.root.nodes

    def error(self, smap: SourceMap, path: Path, message: str, hint: str,
              notes: list[str], at_key: bool = False) -> None:
        self.diagnostics.append(smap.diagnostic(path, message, hint=hint, notes=notes,
                                                at_key=at_key))

    # ---- one file's namespace ------------------------------------------------------------
    def namespace(self, data: dict, smap: SourceMap, base: str, stack: list[tuple[int, int]],
                  notes: list[str]) -> Namespace:
        """The definitions of a document (root or library): its imports', then its own."""
        found = Namespace()
        entries = data.get("imports", [])
        if not isinstance(entries, list):
            self.error(smap, ("imports",), "imports must be a list of {file: PATH} entries "
                       f"(got {show_value(entries)})", "write '- {file: blocks/mine.yaml}' "
                       "under imports:", notes)
            entries = []
        for i, entry in enumerate(entries):
            entry = self.checked_entry(entry, smap, ("imports", i), notes)
            if entry is None:
                continue
            library = self.library(entry, smap, ("imports", i), base, stack, notes)
            if library is not None:
                self.take(found, library, entry, smap, ("imports", i), notes)
        for kind in KINDS:
            own = data.get(kind)
            if not isinstance(own, dict):
                continue  # absent, or not a mapping: the schema reports that
            for name, value in own.items():
                self.add(found, kind, name, Definition(value, smap, (kind, name)), notes,
                         at=(smap, (kind, name)))
        return found

    def checked_entry(self, entry: Any, smap: SourceMap, path: Path, notes: list[str]
                      ) -> dict | None:
        if isinstance(entry, str):
            self.error(smap, path, f"an import is a mapping, not a string ({show_value(entry)})",
                       f"write '- {{file: {entry}}}'", notes)
            return None
        if not isinstance(entry, dict):
            self.error(smap, path, f"an import must be a mapping (got {show_value(entry)})",
                       "write '- {file: blocks/mine.yaml}'", notes)
            return None
        ok = True
        for key in entry:
            if key not in ENTRY_FIELDS:
                self.error(smap, path + (key,), f"unknown field '{key}' for an import",
                           did_you_mean(key, ENTRY_FIELDS) or "an import takes: file, blocks, "
                           "params", notes, at_key=True)
                ok = False
        file = entry.get("file")
        if "file" not in entry:
            self.error(smap, path, "import is missing required field 'file'",
                       "name the file to import: {file: blocks/mine.yaml}", notes)
            ok = False
        elif not isinstance(file, str) or not file.strip():
            self.error(smap, path + ("file",), f"file must be a path (got {show_value(file)})",
                       "write the path of a spec file, relative to this one", notes)
            ok = False
        elif os.path.isabs(file) or file.startswith("~"):
            self.error(smap, path + ("file",), f"import path '{file}' is not relative",
                       "write the path relative to the importing file, e.g. blocks/mine.yaml",
                       notes)
            ok = False
        for kind in KINDS:
            names = entry.get(kind)
            if names is not None and not (isinstance(names, list) and
                                          all(isinstance(n, str) for n in names)):
                self.error(smap, path + (kind,), f"{kind} must be a list of names (got "
                           f"{show_value(names)})", f"e.g. {kind}: [{'fire' if kind == 'blocks' else 'width'}]",
                           notes)
                ok = False
        return entry if ok else None

    def library(self, entry: dict, smap: SourceMap, path: Path, base: str,
                stack: list[tuple[int, int]], notes: list[str]) -> Namespace | None:
        """The namespace of the file an import names (read once, however often imported)."""
        at = path + ("file",)
        target = os.path.join(base, entry["file"])
        shown = _display(smap.file, entry["file"])
        try:
            with open_input(target, "imported spec file") as handle:
                info = os.fstat(handle.fileno())
                identity = (info.st_dev, info.st_ino)
                if identity in stack:
                    self.cycle(smap, at, shown, identity, stack, notes)
                    return None
                if identity in self.files:
                    return self.files[identity]
                if len(self.files) + 2 > self.limits.max_files:  # the root file counts too
                    self.error(smap, at, f"the spec reads more than {self.limits.max_files} "
                               "files (max_files limit)", "import fewer files, or raise the "
                               "limit with limits=Limits(max_files=...)", notes)
                    return None
                room = self.limits.max_bytes - self.bytes
                if info.st_size > room:
                    self.too_big(smap, at, shown, info.st_size, notes)
                    return None
                raw = read_bounded(handle, room)
        except FileError as exc:
            self.error(smap, at, exc.message, exc.hint or "import a regular spec file", notes)
            return None
        if len(raw) > room:  # it grew while we read it
            self.too_big(smap, at, shown, len(raw), notes)
            return None
        self.bytes += len(raw)
        self.files[identity] = None  # being read: a second route to it meanwhile is a cycle
        inner_notes = [f"in {shown}, imported at {smap.file}:{_line_col(smap, at)}"] + notes
        try:
            data, lib_map = load_yaml(raw, shown, self.limits, self.nodes)
        except SpecError as exc:
            for d in exc.diagnostics:
                d.notes.extend(inner_notes)
            self.diagnostics.extend(exc.diagnostics)
            return None
        self.nodes = lib_map.nodes
        self.sources.add(lib_map)
        self.sources.paths.append(target)
        if not self.is_library(data, lib_map, inner_notes):
            return None
        namespace = self.namespace(data, lib_map, os.path.dirname(target),
                                   stack + [identity], inner_notes)
        self.files[identity] = namespace
        return namespace

    def is_library(self, data: Any, smap: SourceMap, notes: list[str]) -> bool:
        if not isinstance(data, dict):
            self.error(smap, (), "an imported file must be a mapping of blocks and params "
                       f"(got {show_value(data)})", "write 'blocks:' with the blocks to share",
                       notes)
            return False
        ok = True
        for key in data:
            if key not in LIBRARY_FIELDS:
                self.error(smap, (key,), f"an imported file holds only blocks, params and "
                           f"imports: '{key}' is not allowed in it", at_key=True, notes=notes,
                           hint=did_you_mean(key, LIBRARY_FIELDS) or "keep the network itself "
                           "(name, input, layers) in the spec that imports this file")
                ok = False
        for kind in KINDS:
            if kind in data and not isinstance(data[kind], dict):
                self.error(smap, (kind,), f"{kind} must be a mapping of names (got "
                           f"{show_value(data[kind])})", "write 'name: definition' lines", notes)
                ok = False
        return ok

    def cycle(self, smap: SourceMap, at: Path, shown: str, identity, stack, notes) -> None:
        if identity == stack[-1]:
            self.error(smap, at, f"'{smap.file}' imports itself", "remove this import", notes)
        else:
            self.error(smap, at, f"import cycle: '{shown}' is already being imported (it "
                       f"imports, directly or not, '{smap.file}')", "a file cannot import a "
                       "file that imports it; move the shared blocks to a third file", notes)

    def too_big(self, smap: SourceMap, at: Path, shown: str, size: int, notes) -> None:
        self.error(smap, at, f"importing '{shown}' ({size:,} bytes) makes the spec's files more "
                   f"than {self.limits.max_bytes:,} bytes in all (max_bytes limit)",
                   "raise the limit with --max-bytes on the command line, or "
                   "limits=Limits(max_bytes=...) in Python", notes)

    # ---- merging ---------------------------------------------------------------------------
    def take(self, into: Namespace, library: Namespace, entry: dict, smap: SourceMap,
             path: Path, notes: list[str]) -> None:
        """Add what an import entry selects from a library (the blocks it names, and the
        blocks those use, or everything)."""
        for kind in KINDS:
            offered = library.defs[kind]
            wanted = entry.get(kind)
            if wanted is None:
                names = list(offered)
            else:
                names = []
                for j, name in enumerate(wanted):
                    if name in offered:
                        names.append(name)
                    else:
                        self.error(smap, path + (kind, j), f"'{entry['file']}' has no "
                                   f"{kind[:-1]} '{name}'", did_you_mean(name, offered) or
                                   f"its {kind}: {', '.join(offered) or 'none'}", notes)
                if kind == "blocks":
                    names = _with_used_blocks(names, offered)
            for name in names:
                self.add(into, kind, name, offered[name], notes, at=(smap, path + ("file",)))

    def add(self, into: Namespace, kind: str, name: str, definition: Definition,
            notes: list[str], at: tuple[SourceMap, Path]) -> None:
        """Add one definition; a different one of the same name is a clash, located at `at`
        (the importing entry, or the file's own definition)."""
        known = into.defs[kind].get(name)
        if known is None:
            into.defs[kind][name] = definition
            return
        if known.same(definition):
            return  # one file imported twice, by two routes
        first, second = (f"{d.smap.file}:{_line_col(d.smap, d.path, at_key=True)}"
                         for d in (known, definition))
        smap, path = at
        self.error(smap, path, f"{kind[:-1]} '{name}' is defined twice: at {first} and at "
                   f"{second}",
                   f"rename one of them, or import only what you use ({kind}: [...])",
                   notes, at_key=path[-1] == name)


def _with_used_blocks(names: list[str], offered: dict[str, Definition]) -> list[str]:
    """The named blocks and every block of the library they use (a name written anywhere in
    their bodies, also inside expressions), so an imported block never picks up another
    block of the same name from the importing spec."""
    out, todo = list(names), list(names)
    while todo:
        for word in _words(offered[todo.pop()].value):
            if word in offered and word not in out:
                out.append(word)
                todo.append(word)
    return out


def _words(value: Any) -> set[str]:
    found, todo = set(), [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str):
            found.update(NAME.findall(item))
    return found


def _display(importer: str, file: str) -> str:
    """How diagnostics name an imported file: its path from the importer's folder (the working
    folder for text and standard input)."""
    folder = "" if importer.startswith("<") else os.path.dirname(importer)
    return os.path.normpath(os.path.join(folder, file))


def _line_col(smap: SourceMap, path: Path, at_key: bool = False) -> str:
    pos = smap.key_position(path) if at_key else smap.position(path)
    return "?" if pos is None else f"{pos[0]}:{pos[1]}"
