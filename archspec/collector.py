"""Python's cyclic garbage collector paused while a spec is expanded and analysed.

Building 100,000 small objects triggers full collections that re-scan every live object, so the
cost per layer grows with the network (measured 2-3x between 10,000 and 100,000 layers). The
front end and the analysis create no reference cycles worth collecting, so the collector waits
until they are done, then runs as usual."""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collector_paused() -> Iterator[None]:
    if not gc.isenabled():  # paused by an outer caller, or by the user: leave it so
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
