"""The kinds of failure: the user's (ArchspecError: a spec error with located Diagnostics, or a
file, checkpoint or environment problem with a hint) and our own bug (InternalError)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Diagnostic:
    """One user-facing error, located in the spec source (line and column are 1-based)."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    layer: str | None = None
    hint: str | None = None
    notes: list[str] = field(default_factory=list)
    severity: str = "error"
    repeats: int = 0  # the same problem again elsewhere (copies of a repeat), reported once

    def location(self) -> str:
        parts = [self.file or "<spec>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def format(self, source_lines: list[str] | None = None) -> str:
        """Compiler-style text: location, message, the source line with a caret, hint, notes."""
        where = f" (layer '{self.layer}')" if self.layer else ""
        out = [f"{self.location()}: {self.severity}: {self.message}{where}"]
        if source_lines and self.line is not None and 1 <= self.line <= len(source_lines):
            text, caret = _excerpt(source_lines[self.line - 1].rstrip("\n"), self.column)
            out.append(f"  {text}")
            if caret is not None:
                out.append("  " + " " * caret + "^")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        out.extend(f"  note: {n}" for n in self.notes)
        if self.repeats:
            out.append(f"  note: and in {self.repeats:,} more cop{'ies' if self.repeats > 1 else 'y'}"
                       " of this layer")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "layer": self.layer,
            "message": self.message,
            "hint": self.hint,
            "notes": list(self.notes),
            "severity": self.severity,
            "repeats": self.repeats,
        }


EXCERPT = 120  # longest source line shown in full; longer ones are cut around the column


def _excerpt(text: str, column: int | None) -> tuple[str, int | None]:
    """The source line as shown under a message, and the caret's offset in it. One character
    is shown per character (tabs and control characters as spaces and '?'), so the caret lines up."""
    text = "".join(" " if c == "\t" else "?" if not c.isprintable() else c for c in text)
    caret = None if column is None else max(column - 1, 0)
    if len(text) <= EXCERPT:
        return text, caret
    start = 0 if caret is None else min(max(caret - EXCERPT // 2, 0), len(text) - EXCERPT)
    shown = ("..." if start else "") + text[start:start + EXCERPT] + \
        ("..." if start + EXCERPT < len(text) else "")
    return shown, None if caret is None else caret - start + (3 if start else 0)


MAX_KEPT = 1000  # diagnostics kept for one spec (and given by --json); the rest are counted
MAX_SHOWN = 100  # diagnostics printed; then "N more errors"


class ArchspecError(Exception):
    """Something about the user's input or machine, never a bug: `message` says what, `hint` what
    to do. `except archspec.ArchspecError` catches every failure that is not archspec's fault."""

    def __init__(self, message: str, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message + (f" (hint: {hint})" if hint else ""))


class SpecError(ArchspecError):
    """Raised for anything wrong with a user's spec. Carries every independent diagnostic found,
    and, for shape errors, the analysis of the layers before the failure (``partial``).
    ``spec_name`` is the spec's name when the file got far enough to have one."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic, partial: Any = None,
                 omitted: int = 0):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        self.partial = partial
        self.omitted = omitted  # further errors found but not kept (past MAX_KEPT)
        self.spec_name: str | None = None
        self.sources: Any = None  # the spec's SpecSources, for source excerpts, when known
        self.message = "\n".join(d.format() for d in diagnostics[:MAX_SHOWN])
        self.hint = None
        Exception.__init__(self, self.message)

    @property
    def count(self) -> int:
        """Every error found, kept or not, each repeated one counted once."""
        return len(self.diagnostics) + self.omitted


class WeightsError(SpecError):
    """Weights (a state_dict) that do not fit the spec: every missing, unexpected, mis-shaped or
    mis-typed tensor, each a Diagnostic at the spec line of its layer. Nothing was loaded."""


class InternalError(Exception):
    """A bug in archspec itself, never the user's fault."""

    def __init__(self, message: str):
        super().__init__(f"internal error in archspec (this is a bug, please report it): {message}")


class DeviceUnavailable(ArchspecError):
    """The torch device asked for does not exist or is not available on this machine."""

    def __init__(self, message: str,
                 hint: str | None = "use --device cpu, or meta to build without allocating"):
        super().__init__(message, hint)


class FileError(ArchspecError):
    """A path archspec cannot or will not read or write (missing, a directory, a device, a FIFO,
    no space left)."""


class TorchMissing(ArchspecError):
    """PyTorch is needed (compile, build, verify, checkpoints) but cannot be imported."""


class CheckpointError(ArchspecError):
    """A file that is not a loadable archspec checkpoint or weights file (damaged, foreign, or
    hostile: a pickle that would run code)."""
