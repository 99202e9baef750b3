"""Terminal table and totals for an analysis (no torch), fitted to a width without losing a figure."""
from __future__ import annotations

import re
import shutil
import textwrap
from typing import TYPE_CHECKING, Callable, Iterator

from ..collector import collector_paused
from ..layers.base import fmt_shape
from ..units import human_bytes
from .table import Column, Line, fit

if TYPE_CHECKING:
    from rich.console import Console

    from ..analysis import Analysis, LayerInfo

PIPED_WIDTH = 160  # output that goes to a file or a pipe: wide, so names are not wrapped in logs


def human(n: int | float, unit: str = "") -> str:
    """1234567 -> '1.23 M'."""
    for factor, suffix in ((10**12, " T"), (10**9, " G"), (10**6, " M"), (10**3, " k")):
        if abs(n) >= factor:
            return f"{n / factor:.2f}{suffix}{unit}"
    return f"{n}{' ' + unit if unit else ''}"


def rf_text(info: LayerInfo) -> str:
    rf = info.receptive_field
    if rf is None:
        return "-"
    size = "x".join(map(str, rf.size)) if len(set(rf.size)) > 1 else str(rf.size[0])
    stride = "x".join(map(str, rf.stride)) if len(set(rf.stride)) > 1 else str(rf.stride[0])
    return f"{size} /{stride}" + (" *" if info.notes else "")


def params_text(info: LayerInfo) -> str:
    if not info.params:
        return ""
    return f"{info.params:,}" + (" (frozen)" if info.trainable_params == 0 else "")


# (column, the cell of a layer, the cell of the network input)
Cell = Callable[["Analysis", "LayerInfo"], str]
COLUMNS: list[tuple[Column, Cell, Callable[["Analysis"], str]]] = [
    (Column("layer", figure=False), lambda a, i: i.name, lambda a: "input"),
    (Column("type", figure=False), lambda a, i: i.label, lambda a: ""),
    (Column("output"), lambda a, i: fmt_shape(i.output_shape), lambda a: fmt_shape(a.input_shape)),
    (Column("params"), lambda a, i: params_text(i), lambda a: ""),
    (Column("MACs"), lambda a, i: f"{i.macs:,}" if i.macs else "", lambda a: ""),
    (Column("RF /stride"), lambda a, i: rf_text(i), lambda a: ""),
    (Column("out mem (batch {batch})"), lambda a, i: human_bytes(i.output_bytes),
     lambda a: human_bytes(a.input_bytes)),
    (Column("saved"), lambda a, i: human_bytes(a.saved_bytes[i.name]), lambda a: ""),
]


def table_lines(analysis: Analysis, width: int) -> list[Line]:
    columns = [Column(c.header.format(batch=analysis.batch_size), c.figure) for c, _, _ in COLUMNS]
    rows = [tuple(first(analysis) for _, _, first in COLUMNS)]
    cells = [cell for _, cell, _ in COLUMNS]
    rows += [tuple(cell(analysis, info) for cell in cells) for info in analysis.layers.values()]
    return fit(columns, rows, width)


def totals_lines(a: Analysis) -> list[str]:
    outs = ", ".join(fmt_shape(s) for s in a.output_shapes)
    return [
        f"input {fmt_shape(a.input_shape)} -> output {outs}",
        f"params: {a.params:,} (trainable {a.trainable_params:,}, frozen {a.frozen_params:,}); "
        f"buffers: {a.buffers:,}",
        f"MACs per sample: {a.macs:,} ({human(a.macs)}); FLOPs = 2 x MACs = {human(a.flops)}",
        f"memory for batch {a.batch_size} ({a.dtype_bytes}-byte floats): parameters+buffers "
        f"{human_bytes(a.param_bytes)}; inference peak {human_bytes(a.inference_peak_bytes)}; "
        f"saved for backward {human_bytes(a.total_saved_bytes)}",
        training_line(a.training),
    ]


def training_line(t) -> str:
    return (f"training step ({t.optimizer}): gradients {human_bytes(t.gradient_bytes)}, "
            f"optimizer state {human_bytes(t.optimizer_state_bytes)}, backward peak "
            f"{human_bytes(t.backward_peak_bytes)}; step peak about "
            f"{human_bytes(t.step_peak_bytes)}")


_FIGURE_AND_UNIT = re.compile(r"(?<=\d) (?=[kMGT]\b|[KMGT]iB\b|B\b|/\d)")


def wrapped(text: str, width: int, indent: str = "  ") -> list[str]:
    """Prose wrapped at spaces, never inside a figure ('1.23 M', '7 /2' stay whole)."""
    text = _FIGURE_AND_UNIT.sub("\u00a0", text)
    lines = textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=False,
                          break_on_hyphens=False) or [""]
    return [line.replace("\u00a0", " ") for line in lines]


@collector_paused()
def report_lines(analysis: Analysis, width: int, *, partial: bool = False) -> list[Line]:
    """Title, layer table, notes and totals, each line at most `width` long where figures allow."""
    title = analysis.network.name + (" (analysis up to the first error)" if partial else "")
    lines = [Line(t, "italic") for t in wrapped(title, width)]
    lines += table_lines(analysis, width)
    for info in analysis.layers.values():
        for note in info.notes:
            lines += [Line(t, "dim") for t in wrapped(f"* {info.name}: {note}", width)]
    if not partial:
        lines.append(Line(""))
        lines += [Line(t) for line in totals_lines(analysis) for t in wrapped(line, width)]
    return lines


def print_report(analysis: Analysis, console: Console, *, partial: bool = False) -> None:
    """Styled lines go through rich; the plain ones (nearly all) are written straight to the
    stream, since rich costs about 12 us a line (and is imported only for styles)."""
    styled = console.color_system is not None
    plain: list[str] = []
    for line in report_lines(analysis, console.width, partial=partial):
        if styled and line.style:
            console.file.write("".join(plain))
            plain.clear()
            from rich.text import Text
            console.print(Text(line.text, style=line.style), soft_wrap=True)
        else:
            plain.append(line.text + "\n")
    console.file.write("".join(plain))
    console.file.flush()


def text_width() -> int:
    """The terminal's width when there is one (or $COLUMNS), else the width used for pipes."""
    return shutil.get_terminal_size((PIPED_WIDTH, 24)).columns


def rich_lines(analysis: Analysis, width: int) -> Iterator:
    """The report as rich Text lines, for __rich_console__."""
    from rich.text import Text
    for line in report_lines(analysis, width, partial=bool(analysis.errors)):
        yield Text(line.text, style=line.style or "")
