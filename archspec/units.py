"""Byte sizes as people read and write them: one formatter for every message and table."""
from __future__ import annotations

import re

BINARY = ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))
UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
         "gb": 10**9, "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30,
         "tib": 2**40}
SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*")


def human_bytes(n: int) -> str:
    """1536 -> '1.50 KiB'; the unit is chosen so the number shows (never '0.00 GiB')."""
    for factor, suffix in BINARY:
        if abs(n) >= factor:
            return f"{n / factor:.2f} {suffix}"
    return f"{n} B"


def parse_bytes(text: str) -> int:
    """'2GiB' -> 2147483648, '500MB' -> 500000000, '1e9' -> 1000000000. ValueError otherwise."""
    match = SIZE.fullmatch(text)
    unit = match and UNITS.get(match.group(2).lower())
    if not match or unit is None:
        raise ValueError(f"{text!r} is not a size: write bytes (1000000, 1e9) or a number with a "
                         "unit (500MB, 2GiB)")
    return int(float(match.group(1)) * unit)
