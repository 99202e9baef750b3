"""The analysed network as a networkx graph, and which of its edges are skip connections.

``skip_inputs`` needs nothing but the IR (the diagram uses it without networkx);
``annotated_graph`` is what ``Analysis.graph`` gives users.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .ir import INPUT, Network

if TYPE_CHECKING:
    import networkx as nx

    from .analysis import Analysis

# Merges whose inputs may bypass a path (a residual add, U-Net's and DenseNet's concatenations);
# a product's second input is a gate (squeeze-and-excitation), not a skip.
SKIP_MERGES = frozenset({"add", "concat"})


def skip_inputs(network: Network) -> dict[str, frozenset[int]]:
    """Per node, the argument indexes that are skip connections: those the block expansion
    marked (a residual's identity or projection shortcut), the way into a residual's shortcut
    written as layers (a downsampling conv and norm), and each input of an add or concat that
    also reaches it through one of its other inputs, so that its edge bypasses that path."""
    position = {INPUT: -1} | {name: i for i, name in enumerate(network.nodes)}
    shortcuts = {name: set(block.members) for name, block in network.blocks.items()
                 if block.kind == "shortcut"}
    found: dict[str, frozenset[int]] = {}
    for node in network.nodes.values():
        skips = set(node.skip_inputs)
        scope = ".".join(node.scope)
        if scope in shortcuts:
            skips.update(i for i, src in enumerate(node.data_inputs)
                         if src not in shortcuts[scope])
        if node.kind.name in SKIP_MERGES:
            data = node.data_inputs
            skips.update(i for i, src in enumerate(data)
                         if any(_reaches(network, src, other, position)
                                for other in data if other != src))
        if skips:
            found[node.name] = frozenset(skips)
    return found


def _reaches(network: Network, src: str, dst: str, position: dict[str, int]) -> bool:
    """Whether a value flows from src to dst, searching back from dst through the nodes
    defined after src only (a residual body or a U-Net level, not the whole network)."""
    floor = position.get(src, -2)
    todo, seen = [dst], {dst}
    while todo:
        name = todo.pop()
        if name == INPUT or name not in network.nodes:
            continue
        for parent in network.nodes[name].data_inputs:
            if parent == src:
                return True
            if parent not in seen and position.get(parent, -2) > floor:
                seen.add(parent)
                todo.append(parent)
    return False


def annotated_graph(analysis: Analysis) -> nx.DiGraph:
    """One node per analysed layer plus 'input', in definition order. Node attributes: type,
    label, shape (output, no batch dim), params, trainable_params, buffers, macs,
    receptive_field (archspec.analysis.ReceptiveField or None), block (innermost enclosing
    block or None). Edge attributes: index (argument position), shape (the tensor it carries),
    skip (a skip connection), shape_only (only sets the consumer's shape, like a projection
    shortcut's second input)."""
    import networkx as nx  # imported on use: it costs a tenth of a second

    from .analysis import rf_identity
    net = analysis.network
    graph = nx.DiGraph(name=net.name)
    spatial = len(net.input_shape) - 1
    graph.add_node(INPUT, type="input", label="input", shape=net.input_shape, params=0,
                   trainable_params=0, buffers=0, macs=0, block=None,
                   receptive_field=rf_identity(spatial) if spatial else None)
    skips = skip_inputs(net)
    for name, info in analysis.layers.items():
        node = net.nodes[name]
        scope = [b for b in (".".join(node.scope[:i]) for i in range(1, len(node.scope) + 1))
                 if b in net.blocks]
        graph.add_node(name, type=info.type, label=info.label, shape=info.output_shape,
                       params=info.params, trainable_params=info.trainable_params,
                       buffers=info.buffers, macs=info.macs,
                       receptive_field=info.receptive_field, block=scope[-1] if scope else None)
        for index, (src, shape) in enumerate(zip(node.inputs, info.input_shapes)):
            graph.add_edge(src, name, index=index, shape=shape,
                           skip=index in skips.get(name, ()),
                           shape_only=index >= len(node.data_inputs))
    return graph
