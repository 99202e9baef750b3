"""Terminal table and JSON for an analysis (no torch)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..analysis import Analysis, LayerInfo
from ..layers.base import fmt_shape
from ..units import human_bytes


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


def layer_table(analysis: Analysis, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", pad_edge=False,
                  box=None)
    table.add_column("layer", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("output", no_wrap=True)
    table.add_column("params", justify="right")
    table.add_column("MACs", justify="right")
    table.add_column("RF /stride", justify="right", no_wrap=True)
    table.add_column(f"out mem (batch {analysis.batch_size})", justify="right", no_wrap=True)
    table.add_column("saved", justify="right", no_wrap=True)
    table.add_row("input", "", fmt_shape(analysis.input_shape), "", "", "",
                  human_bytes(analysis.input_bytes), "")
    for info in analysis.layers.values():
        params = f"{info.params:,}" if info.params else ""
        if info.params and info.trainable_params == 0:
            params += " (frozen)"
        table.add_row(info.name, info.label, fmt_shape(info.output_shape), params,
                      f"{info.macs:,}" if info.macs else "", rf_text(info),
                      human_bytes(analysis.output_bytes(info)),
                      human_bytes(analysis.saved_bytes[info.name]))
    return table


def totals_lines(a: Analysis) -> list[str]:
    frozen = a.params - a.trainable_params
    outs = ", ".join(fmt_shape(s) for s in a.output_shapes)
    return [
        f"input {fmt_shape(a.input_shape)} -> output {outs}",
        f"params: {a.params:,} (trainable {a.trainable_params:,}, frozen {frozen:,}); "
        f"buffers: {a.buffers:,}",
        f"MACs per sample: {a.macs:,} ({human(a.macs)}); FLOPs = 2 x MACs = {human(2 * a.macs)}",
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


def print_report(analysis: Analysis, console: Console, *, partial: bool = False) -> None:
    title = f"{analysis.network.name}" + (" (analysis up to the first error)" if partial else "")
    console.print(layer_table(analysis, title))
    notes = [(i.name, n) for i in analysis.layers.values() for n in i.notes]
    for name, note in notes:
        console.print(f"[dim]* {name}: {note}[/dim]", highlight=False)
    if not partial:
        console.print()
        for line in totals_lines(analysis):
            console.print(line, highlight=False)
