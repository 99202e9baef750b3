"""`archspec sizes` (and check's section for open sizes): the valid sizes as the user would
state them, each layer's shape as a formula, and params / MACs / memory as polynomials of the
open sizes, evaluated at the sizes given. Pure integers and fractions: no torch."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from ..errors import Diagnostic
from ..frontend.open_sizes import OpenSize
from ..ir import Network
from ..layers.base import fmt_shape
from ..sizes import Formula, ScanResult, evaluate, fit_polynomial, scan_open_sizes, shape_formulas, with_size
from ..units import human_bytes

SPATIAL_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
FIGURES = {  # name: (what the text calls it, how to read it from an Analysis, bytes?)
    "params": ("params", lambda a: a.params, False),
    "buffers": ("buffers", lambda a: a.buffers, False),
    "macs": ("MACs per sample", lambda a: a.macs, False),
    "inference_peak_bytes": ("inference peak", lambda a: a.inference_peak_bytes, True),
    "saved_bytes": ("saved for backward", lambda a: a.total_saved_bytes, True),
    "training_peak_bytes": ("training step peak", lambda a: a.training.step_peak_bytes, True),
}


def open_spatial(network: Network, reference: bool = True) -> Network:
    """The network with every size along its map or sequence open (H, W; L; D, H, W), its
    own sizes as reference (one set of weights) and base: what `archspec sizes` asks of a
    spec whose input is concrete."""
    if network.open_sizes:
        return network
    shape, layout = network.input_shape, network.input_layout
    if layout == "ids":
        axes = list(range(len(shape)))
    elif layout == "channels_last":
        axes = list(range(len(shape) - 1))
    elif len(shape) > 1:
        axes = list(range(1, len(shape)))
    else:
        return network
    names = SPATIAL_NAMES[len(axes)] if layout == "channels_first" else \
        ("L",) if len(axes) == 1 else tuple(f"L{i}" for i in range(len(axes)))
    sizes = {n: OpenSize(n, (a,), reference=shape[a] if reference else None)
             for n, a in zip(names, axes)}
    return replace(network, open_sizes=sizes)


def coefficient_text(c: Fraction) -> str:
    if c.denominator == 1:
        return f"{c.numerator:,}"
    d = c.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:  # a finite decimal
        digits = 0
        while (c * 10 ** digits).denominator != 1:
            digits += 1
        return f"{float(c):,.{digits}f}" if digits <= 12 else f"{c.numerator}/{c.denominator}"
    return f"{c.numerator}/{c.denominator}"


def polynomial_text(coeffs: dict[tuple, Fraction], names: list[str]) -> str:
    if not coeffs:
        return "0"
    terms = []
    for powers, c in sorted(coeffs.items(), key=lambda kv: (-sum(kv[0]), kv[0])):
        factors = [n if e == 1 else f"{n}^{e}" for n, e in zip(names, powers) if e]
        head = coefficient_text(abs(c))
        text = " * ".join(([head] if head != "1" or not factors else []) + factors)
        terms.append(("- " if c < 0 else "+ ") + text)
    out = " ".join(terms)
    return out[2:] if out.startswith("+ ") else "-" + out[2:]


def compress(values: list[int]) -> str:
    """[32, 33, 34, 35, 40] -> '32..35, 40'."""
    runs, out = [], []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    for a, b in runs:
        out.append(str(a) if a == b else f"{a}, {b}" if b == a + 1 else f"{a}..{b}")
    return ", ".join(out)


def statement(r: ScanResult) -> str:
    """The valid set as the user would write it: 'H % 32 == 0', 'any H >= 29', 'H in 32..35'."""
    name, parts = r.name, []
    if r.classes:
        m = r.period
        first = next(n for n in itertools.count(max(r.lo, 1)) if n % m in r.classes)
        bound = max(r.start, r.lo)
        if m == 1 and r.hi is not None:
            text = f"{bound} <= {name} <= {r.hi}"
        elif m == 1:
            text = f"any {name}" + (f" >= {bound}" if bound > 1 else "")
        else:
            rule = f"{name} % {m} == {r.classes[0]}" if len(r.classes) == 1 else \
                f"{name} % {m} in {{{', '.join(map(str, r.classes))}}}"
            text = (f"{name} >= {bound} and " if bound > first else "") + rule
            if r.hi is not None:
                text += f" and {name} <= {r.hi}"
        parts.append(text)
    extra = [n for n in r.extra if r.valid(n)]
    if extra:
        parts.append(f"{name} in {{{compress(extra)}}}")
    if not parts:
        return f"no {name} is valid" + (f" up to {r.checked_to:,}" if r.checked_to else "")
    return " or ".join(parts)


def nearest_valid(r: ScanResult, n: int) -> list[int]:
    below = next((m for m in range(n - 1, 0, -1) if r.valid(m)), None)
    above = next((m for m in range(n + 1, n + 4 * max(r.period, r.known_period) + r.start + 2)
                  if r.valid(m)), None)
    return [m for m in (below, above) if m is not None]


def class_text(names: list[str], scans: dict[str, ScanResult], sample: dict[str, int]) -> str:
    """The sizes a fitted formula holds on: 'H, W multiples of 32', 'H % 32 == 7'."""
    parts = []
    for n in names:
        p = scans[n].known_period
        if p > 1:
            parts.append((n, p, sample[n] % p))
    if not parts:
        return "every valid size"
    if all(r == 0 for _, _, r in parts) and len({p for _, p, _ in parts}) == 1:
        return f"{', '.join(n for n, _, _ in parts)} multiple{'s' if len(parts) > 1 else ''} " \
               f"of {parts[0][1]}"
    return " and ".join(f"{n} % {p} == {r}" for n, p, r in parts)


@dataclass
class FittedFigure:
    key: str
    coeffs: dict[tuple, Fraction] | None   # None: no polynomial of degree 3 fits
    holds_for: str
    everywhere: bool = False


@dataclass
class SizesReport:
    network: Network
    scans: dict[str, ScanResult]
    at: dict[str, int]                   # the sizes the figures are evaluated at
    at_shape: tuple
    at_problem: Diagnostic | None        # why the network breaks at those sizes
    figures: dict[str, FittedFigure] = field(default_factory=dict)
    at_values: dict[str, int] = field(default_factory=dict)
    layers: dict[str, list[str]] = field(default_factory=dict)
    coupled: list[str] = field(default_factory=list)  # why the sizes are not independent
    batch_size: int = 1
    dtype_bytes: int = 4

    @property
    def names(self) -> list[str]:
        return list(self.scans)


def example_shape(network: Network) -> tuple:
    """The input shape a network with open sizes is built, drawn or exported at: each open
    size's default, else the spec's own size, else its smallest valid size."""
    shape = tuple(network.input_shape)
    scans = None
    for name, size in network.open_sizes.items():
        n = size.default or size.reference
        if n is None:
            scans = scans or scan_open_sizes(network)
            n = scans[name].smallest or size.probe
        shape = with_size(shape, size.axes, n)
    return shape


def network_at(network: Network, shape: tuple) -> Network:
    if network.at_input is not None:
        return network.at_input(tuple(shape))
    return replace(network, input_shape=tuple(shape))


def sizes_report(network: Network, at: dict[str, int] | None = None, batch_size: int = 1,
                 dtype_bytes: int = 4, optimizer: str = "adam") -> SizesReport:
    from ..analysis import analyze
    from ..errors import SpecError
    scans = scan_open_sizes(network)
    at = dict(at or {})
    for n, size in network.open_sizes.items():
        if n not in at:
            r = scans[n]
            ref = size.default or size.reference
            at[n] = ref if ref is not None else (r.smallest or size.probe)
    shape = tuple(network.input_shape)
    for n, size in network.open_sizes.items():
        shape = with_size(shape, size.axes, at[n])
    report = SizesReport(network, scans, at, shape, None, batch_size=batch_size,
                         dtype_bytes=dtype_bytes)
    try:
        analysis = analyze(network_at(network, shape), batch_size=batch_size,
                           dtype_bytes=dtype_bytes, optimizer=optimizer)
        report.at_values = {k: read(analysis) for k, (_, read, _) in FIGURES.items()}
    except SpecError as exc:
        report.at_problem = exc.diagnostics[0] if exc.diagnostics else None
        if report.at_problem is not None:
            blame(scans, network, shape, report.at_problem)
    fit_figures(report, analyze, optimizer)
    layer_formulas(report)
    return report


def fit_figures(report: SizesReport, analyze, optimizer: str) -> None:
    """Each figure as a polynomial of the open sizes on one class of valid sizes (multiples of
    the period where those are valid): fitted through 4 sizes per open size, checked at a
    fifth, then tried on the other valid classes."""
    from ..errors import SpecError
    scans, names = report.scans, report.names
    if not names or any(not scans[n].classes for n in names):
        return  # finitely many sizes: the figures are evaluated, not fitted
    grids, sample = {}, {}
    for n in names:
        r = scans[n]
        p = r.known_period
        low = max(r.start, r.lo)
        first = next((m for m in range(low, low + 2 * p + 1) if m % p == 0 and r.valid(m)),
                     None)
        if first is None:
            first = next((m for m in range(low, low + 2 * p + 1) if r.valid(m)), None)
        if first is None:
            return
        grids[n] = [first + i * p for i in range(4)]
        sample[n] = first
        if r.hi is not None and grids[n][-1] + p > r.hi:
            return  # the range is too narrow to fit
    cache: dict[tuple, Any] = {}

    def figures_at(sizes: dict[str, int]) -> dict[str, int]:
        key = tuple(sizes[n] for n in names)
        if key not in cache:
            shape = tuple(report.network.input_shape)
            for n in names:
                shape = with_size(shape, report.network.open_sizes[n].axes, sizes[n])
            try:
                a = analyze(network_at(report.network, shape), batch_size=report.batch_size,
                            dtype_bytes=report.dtype_bytes, optimizer=optimizer)
                cache[key] = {k: read(a) for k, (_, read, _) in FIGURES.items()}
            except SpecError:
                cache[key] = None
        return cache[key]

    for key in FIGURES:
        def value(sizes, key=key):
            got = figures_at(sizes)
            return 0 if got is None else got[key]
        coeffs = fit_polynomial(value, names, grids)
        check = {n: grids[n][-1] + scans[n].known_period for n in names}
        ok = figures_at(check) is not None and evaluate(coeffs, [check[n] for n in names]) == \
            value(check)
        holds = class_text(names, scans, sample)
        fitted = FittedFigure(key, coeffs if ok else None, holds)
        if ok:  # the same polynomial on other valid classes?
            others = []
            for n in names:
                r = scans[n]
                others.append([m for m in range(grids[n][0] + 1, grids[n][0] + r.known_period)
                               if r.valid(m)][:3])
            probes = [dict(sample, **{n: m}) for n, ms in zip(names, others) for m in ms]
            fitted.everywhere = all(evaluate(coeffs, [s[n] for n in names]) == value(s)
                                    for s in probes)
            if fitted.everywhere:
                fitted.holds_for = "every valid size"
        report.figures[key] = fitted


def layer_formulas(report: SizesReport) -> None:
    """Each layer's output shape, axis by axis, as a formula of the open size it depends on."""
    net, scans = report.network, report.scans
    per_name = {n: {} for n in scans}
    for n, r in scans.items():
        for node in net.nodes:
            per_name[n][node] = shape_formulas(r, node)
    for node in net.nodes:
        axes: list[str] = []
        rank = max((len(per_name[n][node]) for n in scans), default=0)
        for axis in range(rank):
            texts = {n: per_name[n][node][axis] for n in scans if axis < len(per_name[n][node])}
            varying = [n for n, f in texts.items() if not (f.text or "").isdigit()]
            if not varying:
                axes.append(next(iter(texts.values())).text or "?")
            elif len(varying) == 1:
                f = texts[varying[0]]
                axes.append(f.text if f.text is not None else class_table_text(f, varying[0]))
            else:
                axes.append(f"f({', '.join(varying)})")
                if node not in report.coupled:
                    report.coupled.append(node)
        report.layers[node] = axes


def class_table_text(f: Formula, name: str) -> str:
    """'[H = 6k+0: 2k+1 | H = 6k+1: ...]' for a length with no closed form."""
    parts = [f"{name} = {f.period}k+{r}: {a}k{'+' if b >= 0 else '-'}{abs(b)}"
             for r, a, b in f.classes]
    return "[" + " | ".join(parts) + "]"


def shape_text(axes: list[str]) -> str:
    return "x".join(a if " " not in a or one_call(a) else f"({a})" for a in axes)


def one_call(text: str) -> bool:
    """'ceil(H / 32)': a single call, which reads without parentheses around it."""
    if not text.endswith(")") or "(" not in text or " " in text[:text.index("(")]:
        return False
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch == ")" and i != len(text) - 1:
            return False
    return True


def figure_line(report: SizesReport, key: str) -> str | None:
    label, _, is_bytes = FIGURES[key]
    fitted = report.figures.get(key)
    value = report.at_values.get(key)
    at = "x".join(str(report.at[n]) for n in report.names)
    shown = None if value is None else human_bytes(value) if is_bytes else f"{value:,}"
    if fitted is None or fitted.coeffs is None:
        return f"{label}: {shown} at {at}" if shown is not None else None
    text = polynomial_text(fitted.coeffs, report.names)
    if all(sum(k) == 0 for k in fitted.coeffs) or not fitted.coeffs:
        return f"{label}: {shown} (the same at every size)" if shown is not None else None
    unit = " bytes" if is_bytes else ""
    where = "" if fitted.everywhere else f" for {fitted.holds_for}"
    return f"{label} = {text}{unit}{where}" + (f"; {shown} at {at}" if shown else "")


def text_lines(report: SizesReport) -> list[str]:
    net = report.network
    shape = [next((n for n, s in net.open_sizes.items() if a in s.axes), str(v))
             for a, v in enumerate(net.input_shape)]
    out_axes = [shape_text(report.layers.get(o, [])) for o in net.outputs]
    lines = [f"{net.name}: input {'x'.join(map(str, shape))} -> output {', '.join(out_axes)}"]
    lines.append("valid sizes:")
    for n, r in report.scans.items():
        smallest = r.smallest
        held = [f"{m} = {r.base[net.open_sizes[m].axes[0]]}" for m in report.scans if m != n]
        note = f"; with {', '.join(held)}" if held and (report.coupled or not r.classes) else ""
        where = f"smallest {smallest}" if smallest is not None else "none"
        lines.append(f"  {statement(r)}  ({where}{note})")
    for node in report.coupled[:1]:
        lines.append(f"  note: '{node}' mixes the open sizes (a flatten): each size's set is "
                     "given with the others held")
    at = "x".join(str(report.at[n]) for n in report.names)
    if report.at_problem is not None:
        message = report.at_problem.message
        lines.append(("invalid " if message.startswith("at ") else f"invalid at {at}: ") +
                     f"{message} (layer '{report.at_problem.layer}')")
    lines.append(f"figures (batch {report.batch_size}, {report.dtype_bytes}-byte values):")
    for key in FIGURES:
        line = figure_line(report, key)
        if line:
            lines.append(f"  {line}")
    lines.append("layer shapes:")
    width = max((len(n) for n in report.layers), default=0)
    for node, axes in report.layers.items():
        lines.append(f"  {node:<{width}}  {shape_text(axes)}")
    return lines


def fraction_json(c: Fraction) -> int | str:
    return c.numerator if c.denominator == 1 else f"{c.numerator}/{c.denominator}"


def to_json(report: SizesReport) -> dict[str, Any]:
    net = report.network
    return {
        "name": net.name,
        "input": [next((n for n, s in net.open_sizes.items() if a in s.axes), v)
                  for a, v in enumerate(net.input_shape)],
        "open_sizes": {n: {
            "valid": statement(r), "period": r.period, "classes": list(r.classes),
            "from": max(r.start, r.lo) if r.classes else None,
            "also": [n for n in r.extra if r.valid(n)],
            "smallest": r.smallest, "min": r.lo, "max": r.hi, "shape_period": r.known_period,
            "held": {m: r.base[net.open_sizes[m].axes[0]] for m in report.scans if m != n},
            "exact_up_to": r.checked_to,
        } for n, r in report.scans.items()},
        "coupled_by": report.coupled,
        "at": dict(report.at), "at_shape": list(report.at_shape),
        "at_valid": report.at_problem is None,
        "at_error": report.at_problem.to_json() if report.at_problem else None,
        "batch_size": report.batch_size, "dtype_bytes": report.dtype_bytes,
        "figures": {k: {
            "formula": polynomial_text(f.coeffs, report.names) if f.coeffs is not None else None,
            "terms": [{"powers": dict(zip(report.names, k2)), "coefficient": fraction_json(c)}
                      for k2, c in (f.coeffs or {}).items()],
            "holds_for": f.holds_for, "at": report.at_values.get(k),
        } for k, f in report.figures.items()} or {k: {"formula": None, "at": v}
                                                    for k, v in report.at_values.items()},
        "layers": [{"name": n, "output_shape": axes} for n, axes in report.layers.items()],
    }


__all__ = [
    "Formula",
    "SizesReport",
    "fmt_shape",
    "open_spatial",
    "sizes_report",
    "statement",
    "text_lines",
    "to_json",
]


def condition_text(r: ScanResult) -> str:
    """'H must be a multiple of 8', 'H must be at least 75', else the statement."""
    if r.classes == (0,) and r.period > 1 and r.start <= r.period and r.hi is None:
        return f"{r.name} must be a multiple of {r.period}"
    if r.period == 1 and r.classes and not r.extra and r.hi is None:
        return f"{r.name} must be at least {max(r.start, r.lo)}"
    return f"the valid {r.name} are: {statement(r)}"


def explain_break(own: Network, given: tuple, diagnostic: Diagnostic) -> bool:
    """A concrete input that breaks the network: the diagnostic (at the breaking layer) gets
    the sizes it was given and the rule they break, derived with every size open (the others
    held at the spec's own sizes). False when no single size is to blame."""
    if len(own.input_shape) != len(given):
        return False
    opened = open_spatial(own, reference=False)
    if not opened.open_sizes or any(own.input_shape[a] != given[a] for a in range(len(given))
                                    if not any(a in s.axes for s in opened.open_sizes.values())):
        return False
    return blame(scan_open_sizes(opened), opened, given, diagnostic)


def blame(scans: dict[str, ScanResult], opened: Network, given: tuple,
          diagnostic: Diagnostic) -> bool:
    """The diagnostic of the network at `given` says which open sizes break which rule."""
    blamed = [(r, given[opened.open_sizes[n].axes[0]]) for n, r in scans.items()
              if not r.valid(given[opened.open_sizes[n].axes[0]])]
    if not blamed:
        return False
    sizes = "x".join(str(given[s.axes[0]]) for s in opened.open_sizes.values())
    rules = "; ".join(condition_text(r) for r, _ in blamed)
    diagnostic.message = f"at {sizes}, {diagnostic.message}: {rules}"
    near = ", ".join(f"{r.name} = {' or '.join(map(str, nearest_valid(r, g)))}"
                     for r, g in blamed if nearest_valid(r, g))
    shape = "x".join(next((n for n, s in opened.open_sizes.items() if a in s.axes), str(v))
                     for a, v in enumerate(given))
    spec = diagnostic.file if diagnostic.file and not diagnostic.file.startswith("<") else "SPEC"
    diagnostic.hint = (f"use {near}; " if near else "") + \
        f"'archspec sizes {spec} --input {shape}' lists the valid sizes"
    return True
