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
    nbytes = {INPUT: shapes.product(analysis.input_shape) * analysis.batch_size *
              analysis.input_value_bytes}
    for name, info in analysis.layers.items():
        node = analysis.network.nodes[name]
        if analysis.aliases_input(info, training):
            of[name] = of[node.inputs[0]]
        else:
            of[name] = name
            nbytes[name] = shapes.product(info.output_shape) * value_bytes
    return Storages(of, nbytes)


class InplacePlan:
    """Which layers the PyTorch back end runs in place (a ReLU on a batch norm's output, a
    residual add into the body's last output): those whose kind can, where no one else needs
    the first input's storage. Nothing else reads that storage (each value sharing it has exactly
    one consumer, the next in the chain, and is no network output nor the network input), and
    no layer producing it keeps its output for its backward (a ReLU's output may not be
    overwritten; a batch norm keeps its input, so its output may). A layer's answer depends only
    on the layers before it, so the analysis can ask while it runs."""

    def __init__(self, network):
        self.nodes, self.outputs = network.nodes, set(network.outputs)
        self.uses: dict[str, int] = {}
        for node in self.nodes.values():
            for value in node.data_inputs:  # a shape-only input is never read
                self.uses[value] = self.uses.get(value, 0) + 1
        self.decided: dict[str, bool] = {}
        self.keeps: dict[tuple, bool] = {}  # copies of a repeat share a config: asked once

    def runs_inplace(self, analysis, name: str) -> bool:
        if name not in self.decided:
            node = self.nodes[name]
            self.decided[name] = node.kind.inplace_capable and \
                self.overwritable(analysis, node.inputs[0])
        return self.decided[name]

    def overwritable(self, analysis, value: str) -> bool:
        while value != INPUT and value not in self.outputs and self.uses.get(value) == 1:
            node, info = self.nodes[value], analysis.layers.get(value)
            if info is None or self.keeps_output(node, info):
                return False
            if not (any(info.views) or self.runs_inplace(analysis, value)):
                return True
            value = node.inputs[0]
        return False

    def keeps_output(self, node, info) -> bool:
        key = (id(node.cfg), info.output_shape, *info.input_shapes)
        if key not in self.keeps:
            grad = GradFlow((True,) * len(node.inputs), params=True)
            self.keeps[key] = any(s.tensor == "output" for s in node.kind.saved(
                node.cfg, info.input_shapes, info.output_shape, grad))
        return self.keeps[key]


@dataclass
class SavedPlan:
    """What the forward of a training step leaves for the backward: the storages kept (keys of
    Storages) with the first layer that keeps each, and which values require grad."""
    store: Storages
    requires_grad: dict[str, bool]
    first_keeper: dict[str, str]


def saved_plan(analysis) -> SavedPlan:
    store = layer_storages(analysis, training=True)
    requires_grad = {INPUT: False}
    first_keeper: dict[str, str] = {}
    for name, info in analysis.layers.items():
        node = analysis.network.nodes[name]
        data = len(node.data_inputs)
        grad = GradFlow(tuple(requires_grad[i] if k < data else False
                              for k, i in enumerate(node.inputs)),
                        params=info.trainable_params > 0)
        requires_grad[name] = grad.any
        for index, item in enumerate(node.kind.saved(node.cfg, info.input_shapes,
                                                     info.output_shape, grad)):
            key, size = storage_of(item, index, name, node.inputs, store, analysis)
            store.nbytes[key] = size
            first_keeper.setdefault(key, name)
    return SavedPlan(store, requires_grad, first_keeper)


def saved_bytes(analysis) -> dict[str, int]:
    """Per layer: bytes of the storages autograd keeps for the backward pass that this layer is
    the first to keep (train mode, the network input not requiring grad)."""
    plan = analysis.saved_plan
    per_layer = dict.fromkeys(analysis.layers, 0)
    for key, name in plan.first_keeper.items():
        per_layer[name] += plan.store.nbytes[key]
    return per_layer


def storage_of(item: Saved, index: int, name: str, inputs: list[str], store: Storages,
               analysis) -> tuple[str, int]:
    if item.copy_of is not None and (analysis.batch_size == 1 or item.shape[0] == 1):
        item = Saved("input", index=item.copy_of)  # the transposed view needs no copy
    if item.tensor == "new":
        return f"{name}#{index}", item.elements(analysis.batch_size) * \
            item.element_bytes(analysis.dtype_bytes)
    key = store.of[inputs[item.index] if item.tensor == "input" else name]
    return key, store.nbytes[key]


def inference_peak_bytes(analysis) -> int:
    """Most bytes of layer outputs alive at once when the forward runs in the compiled order
    (eval mode), the network input included. Linear: each storage counts the live values in it,
    and each value is dropped at its last consumer (an unused one at once)."""
    store = layer_storages(analysis, training=False)
    nodes = analysis.network.nodes
    last_use: dict[str, str] = {}
    for name in analysis.layers:
        for i in nodes[name].inputs:
            last_use[i] = name
    keep = set(analysis.network.outputs) | {INPUT}
    dies_after: dict[str, list[str]] = {}  # layer -> the values whose last consumer it is
    for value, name in last_use.items():
        if value not in keep:
            dies_after.setdefault(name, []).append(value)
    holders = {INPUT: 1}  # storage -> live values in it
    alive = peak = store.nbytes[INPUT]
    for name in analysis.layers:
        key = store.of[name]
        if not holders.get(key):
            alive += store.nbytes[key]
        holders[key] = holders.get(key, 0) + 1
        peak = max(peak, alive)
        done = dies_after.get(name, [])
        if name not in last_use and name not in keep:
            done = done + [name]
        for value in done:
            key = store.of[value]
            holders[key] -= 1
            if not holders[key]:
                alive -= store.nbytes[key]
    return peak


@dataclass
class TrainingMemory:
    """One training step: exact parts (parameters and buffers, gradients, optimizer state,
    saved for backward) and the backward pass's peak, an estimate from liveness."""
    optimizer: str
    param_bytes: int
    gradient_bytes: int
    optimizer_state_bytes: int
    saved_bytes: int
    backward_peak_bytes: int

    @property
    def step_peak_bytes(self) -> int:
        """Parameters, buffers and optimizer state (always resident) plus the backward peak."""
        return self.param_bytes + self.optimizer_state_bytes + self.backward_peak_bytes

    def to_json(self) -> dict[str, int | str]:
        return {"optimizer": self.optimizer, "gradient_bytes": self.gradient_bytes,
                "optimizer_state_bytes": self.optimizer_state_bytes,
                "backward_peak_bytes": self.backward_peak_bytes,
                "training_peak_bytes": self.step_peak_bytes}


ADAM_STEP_BYTES = 4  # torch.optim.Adam's per-tensor step count: a float32 scalar tensor


def optimizer_state_bytes(analysis, optimizer: str) -> int:
    """torch.optim's state after a step: SGD none, SGD with momentum one buffer per trainable
    parameter, Adam two (exp_avg, exp_avg_sq) plus a scalar step count per parameter tensor."""
    copies = OPTIMIZER_STATE[optimizer] * analysis.trainable_params * analysis.dtype_bytes
    if optimizer == "adam":
        copies += ADAM_STEP_BYTES * sum(i.trainable_tensors for i in analysis.layers.values())
    return copies


def training_memory(analysis, optimizer: str = "adam") -> TrainingMemory:
    return TrainingMemory(
        optimizer=optimizer, param_bytes=analysis.param_bytes,
        gradient_bytes=analysis.trainable_params * analysis.dtype_bytes,
        optimizer_state_bytes=optimizer_state_bytes(analysis, optimizer),
        saved_bytes=analysis.total_saved_bytes, backward_peak_bytes=backward_peak_bytes(analysis))


def backward_peak_bytes(analysis) -> int:
    """Most bytes alive at once during the backward pass, layer by layer in reverse order: the
    saved storages not yet released (a storage goes once its first keeper's backward has run),
    the gradients of activations (a storage's gradient exists from its last consumer's backward
    to its producer's) and the parameter gradients made so far. An estimate: temporaries inside
    an operator's backward and gradient sums where a value has several consumers are left out."""
    plan = analysis.saved_plan
    order = list(analysis.layers)
    position = {name: i for i, name in enumerate(order)}
    end = len(order)
    first_keeper = {key: position[name] for key, name in plan.first_keeper.items()}
    grad_from: dict[str, int] = {}   # storage -> last step (forward order) its gradient exists
    grad_until: dict[str, int] = {}  # storage -> first step, its producer's
    outputs = set(analysis.network.outputs)
    for name in order:
        node = analysis.network.nodes[name]
        for i in node.inputs[:len(node.data_inputs)]:
            if plan.requires_grad[i]:
                key = plan.store.of[i]
                grad_from[key] = max(grad_from.get(key, -1), position[name])
    for name in order:
        key = plan.store.of[name]
        if plan.requires_grad[name]:
            grad_until[key] = min(grad_until.get(key, end), position[name])
            if name in outputs:
                grad_from[key] = end
    # what each step adds, as running sums in reverse order (linear in the layers)
    kept_from = [0] * (end + 1)   # bytes whose first keeper is at this step
    for key, first in first_keeper.items():
        kept_from[first] += plan.store.nbytes[key]
    grads_change = [0] * (end + 2)  # a gradient's bytes from its first step to its last
    for key, last in grad_from.items():
        start, stop = grad_until.get(key, end), min(last, end - 1)
        if start <= stop:
            grads_change[start] += plan.store.nbytes[key]
            grads_change[stop + 1] -= plan.store.nbytes[key]
    grads_at, running = [0] * end, 0
    for step in range(end):
        running += grads_change[step]
        grads_at[step] = running
    saved = sum(kept_from)
    param_grads = 0
    peak = 0
    for step in reversed(range(end)):
        info = analysis.layers[order[step]]
        param_grads += info.trainable_params * analysis.dtype_bytes
        peak = max(peak, saved + grads_at[step] + param_grads)
        saved -= kept_from[step]
    return peak
