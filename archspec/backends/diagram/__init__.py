"""Block diagrams of an analysed network, drawn by graphviz's ``dot`` (no torch).

Three steps, each usable alone:

    model = build_model(analysis, depth=1)   # which boxes, clusters and edges to draw (model.py)
    source = to_dot(model, rankdir="LR")     # DOT text, built by the graphviz package (dot.py)
    svg = run_dot(source, "svg")             # the picture, from the ``dot`` program (rendering.py)

``render`` chains them and writes the file atomically. How each layer kind is drawn is the
lowering table in lowering.py. The ``dot`` program is looked up as the ``dot`` argument, else
the ARCHSPEC_DOT environment variable, else ``dot`` on the PATH.
"""
from __future__ import annotations

from .dot import SKIP_COLOUR, to_dot
from .lowering import FAMILY_COLOURS, LOWERING
from .model import DiagramModel, RenderError, build_model
from .rendering import (FORMATS, MAX_DOT_BOXES, DiagramTooLong, check_drawable, find_dot,
                     output_format, render, run_dot)

__all__ = ["FAMILY_COLOURS", "FORMATS", "LOWERING", "MAX_DOT_BOXES", "SKIP_COLOUR",
           "DiagramModel", "DiagramTooLong", "RenderError", "build_model", "check_drawable",
           "find_dot", "output_format", "render", "run_dot", "to_dot"]
