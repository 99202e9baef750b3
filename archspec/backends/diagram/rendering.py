"""Running graphviz's dot on a diagram, and the checks before it (too large, too tall)."""
from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from pathlib import Path

from ...analysis import Analysis
from .dot import to_dot
from .model import DiagramModel, RenderError, View, build_model

FORMATS = ("svg", "png", "pdf", "dot")
SUFFIXES = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}
INSTALL_HINT = ("install graphviz ('apt-get install graphviz' on Debian/Ubuntu, "
                "'dnf install graphviz' on Fedora, 'brew install graphviz' on macOS, "
                "'conda install graphviz' or 'choco install graphviz' on Windows), "
                "or set ARCHSPEC_DOT to the dot program's path; "
                "the dot format (DOT source) needs no graphviz")

MAX_DOT_BOXES = 2_000  # dot's layout grows superlinearly; beyond this it takes minutes or crashes
# A full-depth drawing of more layers than this is refused while the spec is being expanded:
# even with --fuse (a conv box taking in its norm and activations) and pass-through layers left
# out, it would have more boxes than MAX_DOT_BOXES.
MAX_FULL_DEPTH_LAYERS = 4 * MAX_DOT_BOXES
TOO_MANY_BOXES_HINT = ("draw blocks as single boxes with --depth 0 or --depth 1 (repeated "
                       "blocks fold into one 'x N' box), or write the DOT source with "
                       "--format dot")

# The drawing's length along its ranks, estimated before dot runs: inches per rank of boxes,
# per framed cluster (its title and margins) and for the page title; graphviz draws 96 pixels
# per inch. Fitted to the zoo's drawings: within 15% top to bottom; left to right, where the
# widths of labels vary more, up to a third short for many clusters.
INCHES_PER_RANK = {"TB": 0.8, "BT": 0.8, "LR": 1.5, "RL": 1.5}
INCHES_PER_CLUSTER = {"TB": 0.6, "BT": 0.6, "LR": 1.2, "RL": 1.2}
TITLE_INCHES = 1.1
PIXELS_PER_INCH = 96
MAX_PIXELS = 4_000  # a page printed at 300 dpi is about 3,500 pixels tall


class DiagramTooLong(UserWarning):
    """The drawing will be so tall (or wide, left to right) that a page shows it unreadably."""

    def __init__(self, message: str, hint: str):
        super().__init__(f"{message}; {hint}")
        self.message, self.hint = message, hint


def find_dot(dot: str | os.PathLike | None = None) -> str:
    """Path of graphviz's dot program: the argument, $ARCHSPEC_DOT, or 'dot' on the PATH."""
    wanted = str(dot) if dot else os.environ.get("ARCHSPEC_DOT") or "dot"
    found = shutil.which(wanted)
    if found is None:
        raise RenderError(f"graphviz's 'dot' program was not found (looked for '{wanted}')",
                          INSTALL_HINT)
    return found


def run_dot(source: str, fmt: str, *, dot: str | os.PathLike | None = None,
            dpi: int | None = None, timeout: float = 300) -> bytes:
    """The output of `dot -T<fmt>` for DOT source; RenderError when dot is missing or fails.

    The graphviz package's own renderer runs only the `dot` on the PATH and has no time limit,
    so the program named by --dot / $ARCHSPEC_DOT is run here."""
    if fmt not in FORMATS or fmt == "dot":
        raise RenderError(f"dot cannot make format {fmt!r}; use one of svg, png, pdf")
    cmd = [find_dot(dot), f"-T{fmt}"]
    if dpi and fmt == "png":
        cmd.append(f"-Gdpi={dpi}")
    try:
        proc = subprocess.run(cmd, input=source.encode("utf-8"), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"dot took more than {timeout:g} s",
                          "draw fewer boxes: a smaller depth, with folding on") from None
    except OSError as exc:
        raise RenderError(f"could not run {cmd[0]}: {exc}", INSTALL_HINT) from None
    if proc.returncode != 0 or not proc.stdout:
        message = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise RenderError(f"dot failed: {message}")
    return proc.stdout


def output_format(output: str | os.PathLike | None, fmt: str | None) -> str:
    """The format asked for, else the one the output file's suffix names, else svg."""
    if fmt:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise RenderError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if output is None:
        return "svg"
    suffix = Path(output).suffix.lower()
    if suffix not in SUFFIXES:
        raise RenderError(f"cannot tell the format from the file name '{output}'",
                          "name it .svg, .png, .pdf or .dot, or pass a format (--format)")
    return SUFFIXES[suffix]


def check_drawable(model: DiagramModel) -> None:
    """Refuse, before running dot, a drawing too large for it to lay out."""
    if len(model.boxes) > MAX_DOT_BOXES:
        raise RenderError(f"the diagram would have {len(model.boxes):,} boxes, more than dot can "
                          f"lay out (limit {MAX_DOT_BOXES:,})", TOO_MANY_BOXES_HINT)


def layer_cap(depth: int | None, fmt: str) -> int | None:
    """The most layers a spec may expand to before drawing it is refused (None: no cap): a
    full-depth picture draws every layer; a depth folds blocks, DOT source needs no layout."""
    return MAX_FULL_DEPTH_LAYERS if depth is None and fmt != "dot" else None


def too_many_layers(count: int) -> RenderError:
    return RenderError(f"the spec has at least {count:,} layers: drawn at full depth, more boxes "
                       f"than dot can lay out (limit {MAX_DOT_BOXES:,} boxes)",
                       TOO_MANY_BOXES_HINT)


def ranks(model: DiagramModel) -> int:
    """Boxes on the longest path, skip edges counted at their stretched length."""
    position = {box: i for i, box in enumerate(model.boxes)}  # topological order
    rank = dict.fromkeys(model.boxes, 0)
    for edge in sorted(model.edges, key=lambda e: position[e.dst]):
        rank[edge.dst] = max(rank[edge.dst], rank[edge.src] + edge.minlen)
    return max(rank.values(), default=0) + 1


def length_pixels(model: DiagramModel, rankdir: str) -> int:
    """The drawing's estimated height (top to bottom) or width (left to right) in pixels."""
    framed = sum(1 for c in model.clusters.values() if not c.transparent)
    along = rankdir.upper()
    inches = (ranks(model) * INCHES_PER_RANK[along] + framed * INCHES_PER_CLUSTER[along]
              + TITLE_INCHES)
    return round(inches * PIXELS_PER_INCH)


def warn_if_too_long(analysis: Analysis, model: DiagramModel, depth: int | None,
                     rankdir: str, **options) -> None:
    """Warn, before dot runs, about a drawing longer than a page shows legibly, and name the
    largest depth that would fit."""
    pixels = length_pixels(model, rankdir)
    if pixels <= MAX_PIXELS:
        return
    along = "tall" if rankdir.upper() in ("TB", "BT") else "wide"
    if depth is None:
        depth = max(View(analysis, None).level.values(), default=0)
    hint = "draw blocks as single boxes with --depth 0"
    for shallower in range(depth - 1, -1, -1):
        smaller = length_pixels(build_model(analysis, depth=shallower, **options), rankdir)
        if smaller <= MAX_PIXELS:
            hint = f"draw blocks as single boxes with --depth {shallower} (about {smaller:,} px)"
            break
    if not options.get("fuse"):
        hint += ", or one box per conv with its norm and activation (--fuse)"
    warnings.warn(DiagramTooLong(f"the diagram will be about {pixels:,} pixels {along} "
                                 f"({ranks(model)} boxes end to end), more than a page shows "
                                 "legibly", hint), stacklevel=3)


def render(analysis: Analysis, output: str | os.PathLike | None = None, *,
           format: str | None = None, depth: int | None = None, fold: bool = True,
           fuse: bool = False, params: bool = False, rankdir: str = "TB", legend: bool = True,
           edge_labels: bool = True, edge_shapes: bool = False, title: str | None = None,
           dpi: int | None = None, dot: str | os.PathLike | None = None) -> str | bytes:
    """Draw a block diagram; write it to `output` (atomically) when given, and return it.

    format: svg, png, pdf or dot (DOT source, needs no graphviz); default from the output
    file's suffix, else svg. Returns str for svg and dot, bytes for png and pdf.
    depth: how deep blocks are opened as clusters (None: all; 0: each top-level block is
    one box). fold: consecutive identical collapsed blocks become one 'x N' box.
    fuse: one box per conv or dense layer with the norm and activation after it.
    params: show each layer's parameter count. rankdir: 'TB' (top to bottom) or 'LR'.
    edge_shapes: the tensor shape on every edge (else on one edge leaving each cluster,
    unless edge_labels is False). dpi: PNG resolution. dot: the dot program (default
    $ARCHSPEC_DOT, else 'dot' on PATH).
    Warns (DiagramTooLong) before drawing a picture longer than a page shows legibly.
    Raises RenderError when dot is missing or fails, FileError when the output path is refused
    or cannot be written (archspec.fileio's output rule); then no file is written."""
    fmt = output_format(output, format)
    if output is not None:
        source = analysis.network.source
        for spec_file in [getattr(source, "file", None), *getattr(source, "paths", ())]:
            if spec_file and Path(spec_file).is_file() and \
                    Path(output).resolve() == Path(spec_file).resolve():
                raise RenderError(f"refusing to overwrite the input spec '{spec_file}'")
    options = dict(fold=fold, fuse=fuse, params=params, edge_labels=edge_labels,
                   edge_shapes=edge_shapes, title=title)
    model = build_model(analysis, depth=depth, **options)
    if fmt != "dot":
        check_drawable(model)
        warn_if_too_long(analysis, model, depth, rankdir, **options)
    source = to_dot(model, rankdir=rankdir, legend=legend)
    data = source.encode("utf-8") if fmt == "dot" else run_dot(source, fmt, dot=dot, dpi=dpi)
    if output is not None:
        from ...fileio import write_output
        write_output(output, lambda f: f.write(data))
    return data.decode("utf-8") if fmt in ("svg", "dot") else data
