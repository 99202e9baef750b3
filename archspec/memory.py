"""Memory passes over an analysed network: what autograd keeps for the backward pass (per layer,
each storage counted once), the inference peak (a liveness pass in the compiled order), and a
training-step estimate. Every kind states its own rule (LayerKind.saved, aliases_input); this
module only follows storages through the graph. No torch.

Definitions, matched by archspec/backends/memory_probe.py on the compiled model:
- saved for backward: storages autograd keeps in train mode, parameters and buffers excluded
  (they are model state, counted once in param_bytes); a storage saved by several layers (a
  ReLU's output that the next conv keeps too) counts once, for the first layer that keeps it.
- inference peak: the most bytes of layer outputs alive at once in eval mode, the network input
  included (the caller holds it throughout); an output lives until its last consumer has run
  (a network output to the end, an unused one only while its layer runs); views and identities
  share their input's storage; temporaries inside one layer are not layer outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import shapes
from .ir import INPUT
from .layers.base import GradFlow, Saved

OPTIMIZER_STATE = {"sgd": 0, "momentum": 1, "adam": 2}  # extra copies of each trainable parameter


@dataclass
class Storages:
    """Which storage each value (layer output, or the network input) lives in, and its bytes."""
    of: dict[str, str]
    nbytes: dict[str, int]


def layer_storages(analysis, training: bool) -> Storages:
    """Outputs that alias their input share its storage; every other output is a new one."""
    value_bytes = analysis.batch_size * analysis.dtype_bytes
    of = {INPUT: INPUT}
    nbytes = {INPUT: shapes.product(analysis.input_shape) * value_bytes}
    for name, info in analysis.layers.items():
        node = analysis.network.nodes[name]
        if node.kind.aliases_input(node.cfg, info.input_shapes, training):
            of[name] = of[node.inputs[0]]
        else:
            of[name] = name
            nbytes[name] = shapes.product(info.output_shape) * value_bytes
    return Storages(of, nbytes)


def saved_bytes(analysis) -> dict[str, int]:
    """Per layer: bytes of the storages autograd keeps for the backward pass that this layer is
    the first to keep (train mode, the network input not requiring grad)."""
    store = layer_storages(analysis, training=True)
    requires_grad = {INPUT: False}
    counted: set[str] = set()
    per_layer: dict[str, int] = {}
    for name, info in analysis.layers.items():
        node = analysis.network.nodes[name]
        data = len(node.data_inputs)
        grad = GradFlow(tuple(requires_grad[i] if k < data else False
                              for k, i in enumerate(node.inputs)),
                        params=info.trainable_params > 0)
        requires_grad[name] = grad.any
        total = 0
        for index, item in enumerate(node.kind.saved(node.cfg, info.input_shapes,
                                                     info.output_shape, grad)):
            key, size = storage_of(item, index, name, node.inputs, store, analysis)
            if key not in counted:
                counted.add(key)
                total += size
        per_layer[name] = total
    return per_layer


def storage_of(item: Saved, index: int, name: str, inputs: list[str], store: Storages,
               analysis) -> tuple[str, int]:
    if item.tensor == "new":
        element = 8 if item.int64 else analysis.dtype_bytes
        return f"{name}#{index}", item.elements(analysis.batch_size) * element
    key = store.of[inputs[item.index] if item.tensor == "input" else name]
    return key, store.nbytes[key]


def inference_peak_bytes(analysis) -> int:
    """Most bytes of layer outputs alive at once when the forward runs in the compiled order
    (eval mode), the network input included."""
    store = layer_storages(analysis, training=False)
    nodes = analysis.network.nodes
    last_use: dict[str, str] = {}
    for name in analysis.layers:
        for i in nodes[name].inputs:
            last_use[i] = name
    keep = set(analysis.network.outputs) | {INPUT}
    live: set[str] = {INPUT}
    peak = store.nbytes[INPUT]
    for name in analysis.layers:
        live.add(name)
        peak = max(peak, sum(store.nbytes[k] for k in {store.of[v] for v in live}))
        done = [v for v in live if v not in keep and last_use.get(v, name) == name]
        live.difference_update(done)
    return peak
