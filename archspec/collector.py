"""Python's cyclic garbage collector paused while a spec is expanded and analysed.

Building 100,000 small objects triggers full collections that re-scan every live object, so the
cost per layer grows with the network (measured 2-3x between 10,000 and 100,000 layers). The
front end and the analysis create no reference cycles worth collecting, so the collector waits
until they are done, then runs as usual.

On resuming, the objects made meanwhile go straight to the oldest generation (gc.freeze then
unfreeze: a move of lists, no scan). Left young, the first allocation after the pause would scan
every one of them (the network, the analysis: nothing to free) and again as they age: 0.3-0.4 s
of a 100,000-layer check, and slower per object the more there are (they leave the cache). Full
collections still visit them as usual."""
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
        gc.freeze()
        gc.unfreeze()
        gc.enable()
