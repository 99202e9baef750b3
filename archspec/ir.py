"""The intermediate representation: a DAG of layer nodes with hierarchical names."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .layers.base import LayerConfig, LayerKind, Shape

INPUT = "input"  # name of the network's input node
Path = tuple[Any, ...]


@dataclass
class Node:
    name: str                      # hierarchical: "layer1.0.conv1"
    kind: LayerKind
    cfg: LayerConfig
    inputs: list[str]              # node names, in argument order ("input" for the network input)
    path: Path                     # where the layer was written in the spec source
    scope: tuple[str, ...] = ()    # enclosing block names, outermost first (full names)
    skip_inputs: frozenset[int] = frozenset()  # argument indexes that are skip connections
    broken: bool = False           # an input reference failed to resolve
    context: list[str] = field(default_factory=list)  # notes, e.g. "in block instance 'layer1.0'"

    @property
    def data_inputs(self) -> list[str]:
        """Inputs whose values flow through (a projection's second input only sets its shape)."""
        return self.inputs[:getattr(self.kind, "data_inputs", len(self.inputs))]


@dataclass
class Block:
    """A composite's scope (residual, inception, sequential, repeat, user block): a diagram cluster."""
    name: str
    kind: str                      # residual, inception, branches, sequential, repeat, a user block
    path: Path
    parent: str | None
    title: str | None = None       # the user block it instantiates, when it was inlined
    output: str | None = None      # node whose value is the block's output
    members: list[str] = field(default_factory=list)  # nodes directly or deeply inside


@dataclass
class Network:
    name: str
    description: str | None
    input_shape: Shape
    nodes: dict[str, Node]         # topological (definition) order
    blocks: dict[str, Block]
    outputs: list[str]
    source: Any                    # SourceMap of the spec text
    params: dict[str, Any] = field(default_factory=dict)  # the spec's parameters, as bound
    input_layout: str = "channels_first"  # layers.base.LAYOUTS; rank 1 is a vector
    # sizes the spec or --input leaves open, by name (frontend.open_sizes.OpenSize); the
    # network is expanded at their probe sizes, and archspec.sizes says which sizes it takes
    open_sizes: dict[str, Any] = field(default_factory=dict)
    # the same network at another input shape, when its layers read $in_shape (else None:
    # only the input shape changes)
    at_input: Callable[[tuple], "Network"] | None = field(default=None, repr=False)
