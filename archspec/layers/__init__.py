"""Layer kinds, one module per family; importing this package registers them all."""
from . import activation, attention, blocks, conv, dense, merge, norm, pool, recurrent, upsample  # noqa: F401
from .base import COMPOSITES, REGISTRY, Counts, LayerKind, RFStep, ShapeProblem  # noqa: F401
