"""Open input sizes: names in the input shape (`input: [3, H, W]`), their ranges
(`input: {shape: [3, H, W], sizes: {H: {min: 32, max: 2048}}}`) and the --input override.

A network with open sizes is expanded at one concrete size (its probe: the default, else the
spec's own size, else the smallest size allowed above 63); archspec.sizes derives which sizes
it accepts. Channels (and a token sequence's features) stay concrete.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, PositiveInt

from ..errors import Diagnostic

DIM_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
PROBE = 64  # the size a name without default or reference is expanded at (no rule needs more)


class SizeRange(BaseModel):
    """The sizes an open dim may take, in `input: {sizes: {H: {min: 32, max: 2048}}}`."""
    model_config = ConfigDict(extra="forbid", strict=True)
    min: PositiveInt = 1
    max: PositiveInt | None = None
    default: PositiveInt | None = None


@dataclass(frozen=True)
class OpenSize:
    name: str
    axes: tuple[int, ...]          # the input's axes (no batch) it stands for: [3, S, S] ties two
    min: int = 1
    max: int | None = None
    default: int | None = None
    reference: int | None = None   # the spec's own size there, when --input opened it

    @property
    def probe(self) -> int:
        for size in (self.default, self.reference):
            if size is not None and self.min <= size <= (self.max or size):
                return size
        return min(max(self.min, PROBE), self.max or PROBE)


def parse_input_text(text: str) -> list[int | str]:
    """'3xHxW' -> [3, 'H', 'W']; '1x60x64' -> [1, 60, 64] (ValueError with the reason)."""
    parts = [p.strip() for p in re.split(r"[x,]", text.strip())]
    if not 1 <= len(parts) <= 4 or not all(parts):
        raise ValueError(f"'{text}' is not a shape: write sizes joined by x, channels first, "
                         "without the batch (e.g. 3x224x224, or 3xHxW to leave H and W open)")
    shape: list[int | str] = []
    for part in parts:
        if part.isdigit() and int(part) >= 1:
            shape.append(int(part))
        elif re.fullmatch(DIM_NAME, part):
            shape.append(part)
        else:
            raise ValueError(f"'{part}' in '{text}' is neither a size (a positive integer) nor "
                             "a name for an open size (H, W, L, ...)")
    return shape


def fixed_axes(rank: int, layout: str) -> set[int]:
    """Axes that must stay concrete: a map's channels, a token sequence's features."""
    if layout == "ids":
        return set()
    if rank == 1:
        return {0}  # a feature vector's features size the first dense
    return {rank - 1} if layout == "channels_last" else {0}


def open_sizes(shape: tuple, layout: str, ranges: dict[str, SizeRange], path: tuple, smap,
               reference: tuple | None
               ) -> tuple[tuple[int, ...], dict[str, OpenSize], list[Diagnostic]]:
    """(the probe shape, the open sizes by name, located problems) of an input shape that may
    hold names."""
    problems: list[Diagnostic] = []
    axes: dict[str, list[int]] = {}
    for axis, size in enumerate(shape):
        if isinstance(size, str):
            if axis in fixed_axes(len(shape), layout):
                what = "features" if layout == "channels_last" or len(shape) == 1 else "channels"
                problems.append(smap.diagnostic(path + (axis,), f"the input's {what} cannot be "
                                                f"left open ('{size}')", hint=f"give the number "
                                                f"of {what}; only sizes along the map or the "
                                                "sequence may be names"))
            axes.setdefault(size, []).append(axis)
    for name in ranges:
        if name not in axes:
            problems.append(smap.diagnostic(path[:-1] + ("sizes", name), f"sizes names '{name}', "
                                            "which is not a name in the input shape", at_key=True,
                                            hint=f"the open sizes are: {', '.join(axes) or 'none'}"
                                            if axes else "write the name in the shape, e.g. "
                                            "shape: [3, H, W]"))
    found = {}
    for name, where in axes.items():
        given = ranges.get(name, SizeRange())
        if given.max is not None and given.max < given.min:
            problems.append(smap.diagnostic(path[:-1] + ("sizes", name), f"the range of '{name}' "
                                            f"is empty (min {given.min} > max {given.max})",
                                            hint="swap min and max"))
        ref = {reference[a] for a in where} if reference and len(reference) == len(shape) \
            and all(isinstance(reference[a], int) for a in where) else set()
        found[name] = OpenSize(name, tuple(where), given.min, given.max, given.default,
                               ref.pop() if len(ref) == 1 else None)
    probe = tuple(found[s].probe if isinstance(s, str) else s for s in shape)
    return probe, found, problems
