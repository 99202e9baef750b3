"""The source of a spec that spans several files: one SourceMap per file, and which parts of the
resolved document (imports merged in) were written in which file.

The expander and the analysis locate everything by a path into the resolved document, as for
a single file. An imported block or param sits at ("blocks", name) or ("params", name) there;
a graft sends every path under it to the SourceMap of the file that defines it, so a
diagnostic names the file, line and column where the thing was written.
"""
from __future__ import annotations

from typing import Any

from ..errors import Diagnostic
from .yaml_loader import Path, SourceMap


class SpecSources:
    """Looks like the root file's SourceMap to its users (file, lines, text, position,
    key_position, diagnostic), and answers for the other files too."""

    def __init__(self, root: SourceMap, resolved: Any = None):
        self.root = root
        self.maps: dict[str, SourceMap] = {root.file: root}  # display name -> its map
        self.paths: list[str] = []  # the real paths of the files read (overwrite checks)
        self.grafts: dict[Path, tuple[SourceMap, Path]] = {}
        self.resolved = resolved  # the document after imports: what a checkpoint stores
        self.values: dict[str, Any] | None = None  # the params' values, when set from outside
        self._text: str | None = None

    @property
    def file(self) -> str:
        return self.root.file

    @property
    def lines(self) -> list[str]:
        return self.root.lines

    @property
    def several_files(self) -> bool:
        return len(self.maps) > 1

    def bound(self, values: dict[str, Any], set_from_outside: bool) -> None:
        """The spec's params got these values (from --set or params= when set_from_outside)."""
        self.values = values if set_from_outside else None
        self._text = None

    @property
    def text(self) -> str | None:
        """The spec as one self-contained YAML document that loads as this network: the root
        file's own text when it is the whole spec as written, else the resolved document
        (imports inlined, params bound to their values)."""
        if (not self.several_files and self.values is None) or self.resolved is None:
            return self.root.text
        if self._text is None:
            from .resolved import dump_resolved
            document = self.resolved
            if self.values is not None and isinstance(document, dict):
                document = {**document, "params": self.values}
            self._text = dump_resolved(document, list(self.maps))
        return self._text

    def lines_of(self, file: str | None) -> list[str] | None:
        found = self.maps.get(file) if file is not None else None
        return found.lines if found is not None else None

    def add(self, smap: SourceMap) -> None:
        self.maps.setdefault(smap.file, smap)

    def graft(self, path: Path, smap: SourceMap, there: Path) -> None:
        """Positions under path (in the resolved document) are those under `there` in smap."""
        self.add(smap)
        self.grafts[tuple(path)] = (smap, tuple(there))

    def _map(self, path: Path) -> tuple[SourceMap, Path]:
        path = tuple(path)
        for cut in (2, 1):  # grafts sit at ("blocks", name) and ("params", name)
            found = self.grafts.get(path[:cut]) if len(path) >= cut else None
            if found is not None:
                return found[0], found[1] + path[cut:]
        return self.root, path

    def position(self, path: Path) -> tuple[int, int] | None:
        smap, there = self._map(path)
        return smap.position(there)

    def key_position(self, path: Path) -> tuple[int, int] | None:
        smap, there = self._map(path)
        return smap.key_position(there)

    def file_of(self, path: Path) -> str:
        return self._map(path)[0].file

    def where(self, path: Path, at_key: bool = False) -> str:
        """'file:line:column' of the value (or key) at path, for notes."""
        smap, there = self._map(path)
        pos = smap.key_position(there) if at_key else smap.position(there)
        return smap.file + ("" if pos is None else f":{pos[0]}:{pos[1]}")

    def place(self, path: Path) -> str | None:
        """Where the value at path is, for a note: 'line 12' in a spec of one file, else
        'file:line:column'."""
        return self.where(path) if self.several_files else self.root.place(path)

    def diagnostic(self, path: Path, message: str, **kwargs) -> Diagnostic:
        smap, there = self._map(path)
        return smap.diagnostic(there, message, **kwargs)

    def use_note(self, block: str, definition: Path, use: Path) -> str:
        """The note on everything inside an instance of a user block. A spec of one file says
        'used at line N' (the file is the diagnostic's own); across files both ends are named:
        where the block is defined and where it is used."""
        if not self.several_files:
            return self.root.use_note(block, definition, use)
        return (f"in block '{block}' from {self.where(definition, at_key=True)}, used at "
                f"{self.where(use)}")
