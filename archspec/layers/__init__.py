"""Layer kinds, one module per family; importing this package registers them all."""
from . import (activation, attention, blocks, conv, dense, learned, merge, norm,  # noqa: F401
               pool, recurrent, reshape, spatial, upsample)
from .base import COMPOSITES, REGISTRY, Counts, LayerKind, RFStep, ShapeProblem  # noqa: F401
