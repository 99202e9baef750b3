"""Plain-text tables that fit a width and never cut a figure.

rich's Table measures every cell through its renderable protocol (most of `check`'s time on a
big network) and, in a narrow terminal, drops columns and cuts cells with an ellipsis. Here
widths come from the strings once, and a table that does not fit changes layout instead:
  1. one line per row, text columns wrapped (names break after a dot, labels at spaces);
  2. two lines per row: the text cells, then the figures aligned under their own headers;
  3. the text cells, then "header: value" pairs packed into as many lines as the width needs.
Figures (right-aligned columns: numbers, shapes) are never wrapped or cut in any layout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

GAP = "  "
INDENT = "  "
MIN_TEXT = 14  # narrower text columns wrap most names; the two-line layout reads better then


@dataclass(frozen=True)
class Column:
    header: str
    figure: bool = True  # right-aligned, never wrapped


@dataclass(frozen=True)
class Line:
    text: str
    style: str = ""  # a rich style, used where the output has styles


def wrap(text: str, width: int) -> list[str]:
    """Break after dots and at spaces; a piece longer than the width is split (text cells only)."""
    if len(text) <= width:
        return [text]
    lines, current = [], ""
    for piece in re.findall(r"[^ .]*\.|[^ .]+ ?| ", text):
        if current and len(current) + len(piece.rstrip()) > width:
            lines.append(current.rstrip())
            current = ""
        while len(piece.rstrip()) > width:
            lines.append(piece[:width])
            piece = piece[width:]
        current += piece
    if current.strip():
        lines.append(current.rstrip())
    return lines or [""]


def fit(columns: list[Column], rows: list[tuple[str, ...]], width: int) -> list[Line]:
    """The table as lines no longer than `width` where the figures allow it."""
    natural = [max([len(c.header)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    if sum(natural) + len(GAP) * (len(columns) - 1) <= width:
        return _one_line(columns, rows, natural)
    figures = [i for i, c in enumerate(columns) if c.figure]
    texts = [i for i, c in enumerate(columns) if not c.figure]
    compact = list(natural)
    for i in figures:  # headers may wrap at spaces, figures may not
        compact[i] = max([len(w) for w in columns[i].header.split()] +
                         [len(r[i]) for r in rows])
    room = width - sum(compact[i] for i in figures) - len(GAP) * (len(columns) - 1)
    wanted = [min(natural[i], MIN_TEXT) for i in texts]
    if room >= sum(wanted):
        for i, w in zip(texts, _share(room, wanted, [natural[i] for i in texts])):
            compact[i] = w
        return _one_line(columns, rows, compact)
    if len(INDENT) + sum(compact[i] for i in figures) + len(GAP) * (len(figures) - 1) <= width:
        return _two_lines(columns, rows, compact, texts, figures, width)
    return _records(columns, rows, texts, figures, width)


def _share(room: int, start: list[int], most: list[int]) -> list[int]:
    """Give the room to the text columns, each up to its natural width, widest need first."""
    widths = list(start)
    spare = room - sum(widths)
    while spare > 0 and any(w < m for w, m in zip(widths, most)):
        i = max(range(len(widths)), key=lambda k: most[k] - widths[k])
        grant = min(spare, most[i] - widths[i])
        widths[i] += grant
        spare -= grant
    return widths


def _cells(values: list[str], widths: list[int], figure: list[bool]) -> list[str]:
    """One table row as lines: each cell wrapped to its column, then laid side by side."""
    wrapped = [[v] if fig else wrap(v, w) for v, w, fig in zip(values, widths, figure)]
    height = max(len(c) for c in wrapped)
    out = []
    for k in range(height):
        parts = [(c[k] if k < len(c) else "") for c in wrapped]
        out.append(GAP.join(p.rjust(w) if fig else p.ljust(w)
                            for p, w, fig in zip(parts, widths, figure)).rstrip())
    return out


def _header(columns: list[Column], widths: list[int], figure: list[bool]) -> list[Line]:
    """Headers wrapped at spaces to their column, bottom-aligned over the figures."""
    wrapped = [wrap(c.header, w) for c, w in zip(columns, widths)]
    height = max(len(h) for h in wrapped)
    wrapped = [[""] * (height - len(h)) + h for h in wrapped]
    return [Line(GAP.join(h[k].rjust(w) if fig else h[k].ljust(w)
                          for h, w, fig in zip(wrapped, widths, figure)).rstrip(), style="bold")
            for k in range(height)]


def _one_line(columns: list[Column], rows: list[tuple[str, ...]], widths: list[int]) -> list[Line]:
    figure = [c.figure for c in columns]
    lines = _header(columns, widths, figure)
    if not any(len(v) > w for r in rows for v, w in zip(r, widths)):  # the fast, common case
        template = GAP.join(f"{{:{'>' if fig else '<'}{w}}}" for w, fig in zip(widths, figure))
        lines.extend(Line(template.format(*r).rstrip()) for r in rows)
        return lines
    for row in rows:
        lines.extend(Line(text) for text in _cells(list(row), widths, figure))
    return lines


def _text_line(values: tuple[str, ...], texts: list[int], width: int) -> list[str]:
    """The text cells of a row on one line (wrapped when even that is too long)."""
    return wrap(GAP.join(values[i] for i in texts if values[i]) or values[texts[0]], width)


def _two_lines(columns, rows, widths, texts, figures, width) -> list[Line]:
    fig_columns = [columns[i] for i in figures]
    fig_widths = [widths[i] for i in figures]
    lines = [Line(GAP.join(columns[i].header for i in texts), style="bold")]
    lines += [Line(INDENT + h.text, style="bold")
              for h in _header(fig_columns, fig_widths, [True] * len(figures))]
    template = INDENT + GAP.join(f"{{:>{w}}}" for w in fig_widths)
    for row in rows:
        lines.extend(Line(t) for t in _text_line(row, texts, width))
        lines.append(Line(template.format(*(row[i] for i in figures)).rstrip()))
    return lines


def _records(columns, rows, texts, figures, width) -> list[Line]:
    lines = []
    for row in rows:
        lines.extend(Line(t) for t in _text_line(row, texts, width))
        current = ""
        for i in figures:
            if not row[i]:
                continue
            pair = f"{columns[i].header}: {row[i]}"
            if current and len(INDENT + current + GAP + pair) > width:
                lines.append(Line(INDENT + current))
                current = ""
            current = f"{current}{GAP}{pair}" if current else pair
        if current:
            lines.append(Line(INDENT + current))
    return lines
