"""Analysis passes over the IR: shapes, parameter/buffer counts, MACs, receptive fields, memory.

Conventions: MACs are multiply-accumulates for one sample, counted for conv, transposed conv,
projection and dense layers (FLOPs = 2 x MACs); pools, norms, activations and merges count 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import shapes
from .collector import collector_paused
from .errors import MAX_KEPT, Diagnostic, InternalError, SpecError
from .ir import INPUT, Network, Node
from .layers.base import (CHANNELS_FIRST, CHANNELS_LAST, LAYOUTS, RFStep, Shape, ShapeProblem,
                          describe_layout, fmt_shape)

# Values in one layer's output for one sample: beyond this (4 PB of float32) a size is a typo,
# and refusing it keeps every count and memory figure a sane number.
MAX_VALUES = 10 ** 15


@dataclass(frozen=True)
class ReceptiveField:
    """Per spatial dim: field size, effective stride (jump) and effective padding, in input pixels."""
    size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]

    def to_json(self) -> dict[str, list[int]]:
        return {"size": list(self.size), "stride": list(self.stride),
                "padding": list(self.padding)}


POINTWISE = RFStep(1, 1, 0)


def rf_identity(ndim: int) -> ReceptiveField:
    return ReceptiveField((1,) * ndim, (1,) * ndim, (0,) * ndim)


def rf_compose(rf: ReceptiveField, steps: list[RFStep]) -> ReceptiveField:
    """One sliding-window layer applied after a field (the Distill recurrences, per dim)."""
    if all(step == POINTWISE for step in steps):  # elementwise layers keep their input's field
        return rf
    return ReceptiveField(
        tuple(shapes.rf_size(r, j, st.kernel) for r, j, st in zip(rf.size, rf.stride, steps)),
        tuple(shapes.rf_jump(j, st.stride) for j, st in zip(rf.stride, steps)),
        tuple(shapes.rf_padding(p, j, st.pad_left) for p, j, st in zip(rf.padding, rf.stride,
                                                                        steps)))


def rf_union(fields: list[ReceptiveField]) -> tuple[ReceptiveField | None, str | None]:
    """Field of a node reached by several paths: the union of the paths' windows.
    Returns (field, note); field is None when the paths' effective strides differ."""
    if len({f.stride for f in fields}) > 1:
        return None, ("paths reach this layer with different effective strides "
                      f"({', '.join(str(list(f.stride)) for f in fields)}): no single field")
    starts = [tuple(-p for p in f.padding) for f in fields]
    ends = [tuple(s + r - 1 for s, r in zip(st, f.size)) for st, f in zip(starts, fields)]
    lo = tuple(min(v) for v in zip(*starts))
    hi = tuple(max(v) for v in zip(*ends))
    merged = ReceptiveField(tuple(b - a + 1 for a, b in zip(lo, hi)), fields[0].stride,
                            tuple(-a for a in lo))
    centres = {tuple(s + e for s, e in zip(st, en)) for st, en in zip(starts, ends)}
    note = None
    if len(centres) > 1:
        note = ("paths are not aligned: their fields have different centres "
                f"({', '.join(str(list(f.size)) + '@' + str(list(f.padding)) for f in fields)}); "
                "the size shown is their union")
    return merged, note


@dataclass
class LayerInfo:
    name: str
    type: str
    family: str
    label: str
    inputs: list[str]
    input_shapes: list[Shape]
    output_shape: Shape
    params: int            # trainable + frozen
    trainable_params: int
    buffers: int
    macs: int
    receptive_field: ReceptiveField | None
    notes: list[str] = field(default_factory=list)
    identity: bool = False  # passes its input through unchanged (e.g. a projection not needed)
    trainable_tensors: int = 0  # parameter tensors that train (each gets optimizer state)
    output_bytes: int = 0   # new memory of this output for the analysis' batch (Analysis.output_bytes)
    layout: str = "channels_first"  # of the output: layers.base.LAYOUTS
    # the kind's aliases_input in eval and in train mode (a view or an identity), found once
    views: tuple[bool, bool] = field(default=(False, False), repr=False, compare=False)

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class Analysis:
    """Everything `check --json` prints is an attribute here (layers as a dict by name; the
    training-step figures under .training), and printing it gives `check`'s table."""
    network: Network
    layers: dict[str, LayerInfo]
    errors: list[Diagnostic]
    batch_size: int = 1
    dtype_bytes: int = 4
    warnings: list[Diagnostic] = field(default_factory=list)  # valid, but likely not meant
    optimizer: str = "adam"   # for the training-step estimate: sgd, momentum or adam
    _saved: dict[str, int] | None = field(default=None, repr=False)
    _inplace: Any = field(default=None, repr=False, compare=False)  # memory.InplacePlan
    omitted: int = 0  # errors found past MAX_KEPT, counted only
    _totals: dict[tuple, Any] = field(default_factory=dict, repr=False, compare=False)
    _graph: Any = field(default=None, repr=False, compare=False)
    _plan: Any = field(default=None, repr=False, compare=False)  # memory.SavedPlan

    @property
    def name(self) -> str:
        return self.network.name

    @property
    def valid(self) -> bool:
        return not self.errors

    @property
    def input_shape(self) -> Shape:
        return self.network.input_shape

    @property
    def output_shapes(self) -> list[Shape]:
        return [self.layers[o].output_shape for o in self.network.outputs if o in self.layers]

    @property
    def output_shape(self) -> Shape | list[Shape]:
        """The output's shape; a list of shapes for a network with several outputs."""
        outs = self.output_shapes
        return outs[0] if len(outs) == 1 else outs

    def total(self, attr: str) -> int:
        """A sum over the layers, computed once (the layers are complete when it is asked)."""
        key = (attr, len(self.layers))
        if key not in self._totals:
            self._totals[key] = sum(getattr(info, attr) for info in self.layers.values())
        return self._totals[key]

    @property
    def params(self) -> int:
        return self.total("params")

    @property
    def trainable_params(self) -> int:
        return self.total("trainable_params")

    @property
    def buffers(self) -> int:
        return self.total("buffers")

    @property
    def frozen_params(self) -> int:
        return self.params - self.trainable_params

    @property
    def macs(self) -> int:
        return self.total("macs")

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def inplace_layers(self) -> frozenset[str]:
        """Layers the PyTorch back end runs in place, overwriting their first input
        (archspec.memory.InplacePlan)."""
        return frozenset(name for name in self.layers if self.runs_inplace(name))

    def runs_inplace(self, name: str) -> bool:
        if self._inplace is None:
            from .memory import InplacePlan
            self._inplace = InplacePlan(self.network)
        return self._inplace.runs_inplace(self, name)

    def aliases_input(self, info: LayerInfo, training: bool) -> bool:
        """The layer's output shares its first input's storage: a view, an identity, or a layer
        run in place."""
        return info.views[training] or self.runs_inplace(info.name)

    def output_bytes(self, info: LayerInfo) -> int:
        """New memory the layer's output takes in inference: 0 for a view or an identity (a
        flatten, a projection not needed, dropout in eval) or a layer run in place, which
        share their input's storage."""
        if self.aliases_input(info, False):
            return 0
        return shapes.product(info.output_shape) * self.batch_size * self.dtype_bytes

    @property
    def input_layout(self) -> str:
        return self.network.input_layout

    @property
    def input_value_bytes(self) -> int:
        """Bytes of one input value: token ids are int64, anything else the analysis' dtype."""
        return 8 if self.input_layout == "ids" else self.dtype_bytes

    @property
    def input_bytes(self) -> int:
        return shapes.product(self.input_shape) * self.batch_size * self.input_value_bytes

    @property
    def activation_bytes(self) -> int:
        """The input and every distinct layer output of one forward pass, none freed: a bound
        on the inference peak (inference_peak_bytes is the exact figure)."""
        return self.total("output_bytes") + self.input_bytes

    @property
    def saved_bytes(self) -> dict[str, int]:
        """Per layer: bytes autograd keeps for the backward pass (archspec.memory)."""
        if self._saved is None:
            from .memory import saved_bytes
            self._saved = saved_bytes(self)
        return self._saved

    @property
    def saved_plan(self):
        """What a training step's forward keeps for the backward (archspec.memory.SavedPlan),
        found once: the table, the totals and --json all read it."""
        if self._plan is None:
            from .memory import saved_plan
            self._plan = saved_plan(self)
        return self._plan

    @property
    def total_saved_bytes(self) -> int:
        return sum(self.saved_bytes.values())

    @property
    def training(self):
        """One training step's memory (archspec.memory.TrainingMemory) with self.optimizer."""
        key = ("training", self.optimizer, len(self.layers))
        if key not in self._totals:  # the table's totals and --json both ask
            from .memory import training_memory
            self._totals[key] = training_memory(self, self.optimizer)
        return self._totals[key]

    @property
    def inference_peak_bytes(self) -> int:
        key = ("inference_peak_bytes", len(self.layers))
        if key not in self._totals:
            from .memory import inference_peak_bytes
            self._totals[key] = inference_peak_bytes(self)
        return self._totals[key]

    @property
    def graph(self):
        """The network as a networkx DiGraph annotated with this analysis (archspec.graph):
        nodes carry shape, counts, MACs and receptive field; edges the shape and a skip flag."""
        if self._graph is None:
            from .graph import annotated_graph
            self._graph = annotated_graph(self)
        return self._graph

    @property
    def param_bytes(self) -> int:
        return (self.params + self.buffers) * self.dtype_bytes

    def __str__(self) -> str:
        from .backends.report import report_lines, text_width
        return "\n".join(line.text for line in report_lines(self, text_width(),
                                                              partial=not self.valid))

    def __rich_console__(self, console, options):
        from .backends.report import rich_lines
        yield from rich_lines(self, options.max_width)

    @collector_paused()
    def to_json(self) -> dict[str, Any]:
        outs = self.output_shapes
        return {
            "name": self.name,
            "valid": self.valid,
            "input_shape": list(self.input_shape),
            "input_layout": self.input_layout,
            "output_shape": list(outs[0]) if len(outs) == 1 else [list(o) for o in outs],
            "params": self.params,
            "trainable_params": self.trainable_params,
            "frozen_params": self.params - self.trainable_params,
            "buffers": self.buffers,
            "macs": self.macs,
            "flops": 2 * self.macs,
            "batch_size": self.batch_size,
            "dtype_bytes": self.dtype_bytes,
            "activation_bytes": self.activation_bytes,
            "saved_bytes": self.total_saved_bytes,
            "inference_peak_bytes": self.inference_peak_bytes,
            "param_bytes": self.param_bytes,
            **self.training.to_json(),
            "layers": [{
                "name": i.name, "type": i.type, "label": i.label, "inputs": i.inputs,
                "output_shape": list(i.output_shape), "layout": i.layout, "params": i.params,
                "trainable_params": i.trainable_params, "buffers": i.buffers, "macs": i.macs,
                "frozen_params": i.frozen_params, "flops": i.flops,
                "output_bytes": i.output_bytes,
                "saved_bytes": self.saved_bytes[i.name],
                "receptive_field": i.receptive_field.to_json() if i.receptive_field else None,
                "notes": i.notes,
            } for i in self.layers.values()],
            "errors": [d.to_json() for d in self.errors],
            "warnings": [d.to_json() for d in self.warnings],
        }


def invalid_json(name: str | None, errors: list[Diagnostic]) -> dict[str, Any]:
    """--json for a spec that could not be analysed: the keys of Analysis.to_json, figures null."""
    unknown = ("input_shape", "input_layout", "output_shape", "params", "trainable_params", "frozen_params",
               "buffers", "macs", "flops", "batch_size", "dtype_bytes", "activation_bytes",
               "saved_bytes", "inference_peak_bytes", "param_bytes", "optimizer",
               "gradient_bytes", "optimizer_state_bytes", "backward_peak_bytes",
               "training_peak_bytes")
    return {"name": name, "valid": False, **dict.fromkeys(unknown), "layers": [],
            "errors": [d.to_json() for d in errors], "warnings": []}


@collector_paused()
def analyze(network: Network, *, batch_size: int = 1, dtype_bytes: int = 4,
            optimizer: str = "adam") -> Analysis:
    """Annotate every node; raises SpecError (with .partial = the Analysis so far) on shape errors."""
    shapes_of: dict[str, Shape] = {INPUT: network.input_shape}
    layouts: dict[str, str] = {INPUT: network.input_layout}
    spatial = len(network.input_shape) - (network.input_layout != "ids")  # ids: every axis
    fields: dict[str, ReceptiveField | None] = {
        INPUT: rf_identity(spatial) if spatial else None}
    result = Analysis(network, {}, [], batch_size, dtype_bytes, optimizer=optimizer)
    seen: dict[tuple, Diagnostic] = {}
    rules: dict[tuple, tuple] = {}
    for node in network.nodes.values():
        if node.broken or any(i not in shapes_of for i in node.inputs):
            continue  # an upstream error was already reported
        in_shapes = [shapes_of[i] for i in node.inputs]
        in_layouts = [layouts[i] for i in node.inputs]
        try:
            check_layouts(node, in_shapes, in_layouts)
            info = analyze_node(node, in_shapes, fields, rules)
            info.layout = output_layout(node, in_shapes, in_layouts, info.output_shape)
        except ShapeProblem as problem:
            report_once(result, shape_diagnostic(network, node, in_shapes, problem), seen)
            continue
        info.output_bytes = result.output_bytes(info)
        result.layers[node.name] = info
        shapes_of[node.name] = info.output_shape
        layouts[node.name] = info.layout
        fields[node.name] = info.receptive_field
    if result.errors:
        raise SpecError(result.errors, partial=result, omitted=result.omitted)
    result.warnings = unused_outputs(network)
    return result


def report_once(result: Analysis, diagnostic: Diagnostic, seen: dict[tuple, Diagnostic]) -> None:
    """Copies of a layer failing the same way at the same place count as one, and past
    MAX_KEPT errors are only counted: a big spec's report stays linear."""
    key = (diagnostic.file, diagnostic.line, diagnostic.column, diagnostic.message,
           tuple(diagnostic.notes))
    if key in seen:
        seen[key].repeats += 1
    elif len(result.errors) >= MAX_KEPT:
        result.omitted += 1
    else:
        seen[key] = diagnostic
        result.errors.append(diagnostic)


def unused_outputs(network: Network) -> list[Diagnostic]:
    """Layers computed and then dropped: nothing reads them and they are not outputs."""
    used = set(network.outputs)
    for node in network.nodes.values():
        used.update(node.inputs)
    by_place: dict[tuple, list[Diagnostic]] = {}  # a repeat's copies share one place
    for node in network.nodes.values():
        if node.name not in used:
            warning = network.source.diagnostic(
                node.path, f"the output of '{node.name}' is never used", layer=node.name,
                notes=node.context, hint=f"list it in 'outputs:' to return it as well (outputs: "
                f"[{', '.join(network.outputs + [node.name])}]), read it with 'from:', or remove it")
            warning.severity = "warning"
            by_place.setdefault((warning.file, warning.line, warning.column), []).append(warning)
    for same in by_place.values():
        if len(same) > 1:
            same[0].notes.append(f"so are the outputs of {len(same) - 1} more copies written here "
                                 f"(last: '{same[-1].layer}')")
    return [same[0] for same in by_place.values()]


def check_layouts(node: Node, in_shapes: list[Shape], in_layouts: list[str]) -> None:
    """The first input's layout is one the kind takes (so its shape rule may assume it), and
    the paths a merge joins agree (a vector joins a vector)."""
    kind, cfg = node.kind, node.cfg
    accepted, layout = kind.accepts(cfg), in_layouts[0]
    if accepted is not None and layout not in accepted and not (
            layout == "vector" and accepted & (CHANNELS_FIRST | CHANNELS_LAST) - {"vector"}):
        raise kind.layout_problem(cfg, in_shapes[0], layout)
    data = len(node.data_inputs)
    for name, shape, other in list(zip(node.inputs, in_shapes, in_layouts))[1:data]:
        if other != layout and len(shape) > 1:
            raise ShapeProblem(
                f"{kind.name} joins {describe_layout(in_shapes[0], layout)} with "
                f"{describe_layout(shape, other)} from '{name}'",
                hint="bring the inputs to one layout first (a transpose or permute moves the "
                     "features)")


def output_layout(node: Node, in_shapes: list[Shape], in_layouts: list[str], out: Shape) -> str:
    layout = node.kind.output_layout(node.cfg, in_shapes, in_layouts, out)
    if layout not in LAYOUTS:
        raise InternalError(f"layer kind '{node.kind.name}' gave the unknown layout {layout!r}")
    return layout


def apply_rules(node: Node, in_shapes: list[Shape], rules: dict[tuple, tuple]) -> tuple:
    """The kind's rules for this layer: (output, counts, rf steps, label, identity, whether it is
    a view in eval and in train mode). Copies of a repeat share their config (the expander
    validates an item once), so for the same input shapes the results are the same and are
    computed once."""
    kind, cfg = node.kind, node.cfg
    key = (id(cfg), *in_shapes)  # the network holds every config while it is analysed
    if key in rules:
        return rules[key]
    try:
        out = tuple(kind.output_shape(cfg, in_shapes))
        found = (out, kind.counts(cfg, in_shapes, out), kind.rf_steps(cfg, in_shapes),
                 kind.label(cfg, in_shapes), kind.is_identity(cfg, in_shapes),
                 tuple(kind.aliases_input(cfg, in_shapes, mode) for mode in (False, True)))
    except ShapeProblem:
        raise
    except Exception as exc:  # a kind's rule crashed: our bug, not the user's
        raise InternalError(f"layer kind '{kind.name}' failed on '{node.name}' with inputs "
                            f"{in_shapes}: {type(exc).__name__}: {exc}") from exc
    rules[key] = found
    return found


def analyze_node(node: Node, in_shapes: list[Shape], fields, rules: dict[tuple, tuple]
                 ) -> LayerInfo:
    kind, cfg = node.kind, node.cfg
    out, counts, steps, label, identity, views = apply_rules(node, in_shapes, rules)
    if min(out, default=1) < 1:
        raise ShapeProblem(f"output shape {list(out)} has an empty dim",
                           hint="reduce the downsampling or the padding before this layer")
    if shapes.product(out) > MAX_VALUES:
        raise ShapeProblem(f"output {fmt_shape(out)} has {shapes.product(out):.3g} values per "
                           f"sample, more than the limit of {MAX_VALUES:.0e}",
                           hint="no network holds tensors this large; check the sizes and "
                                "upsampling factors up to this layer")
    if counts.params + counts.buffers > MAX_VALUES:
        raise ShapeProblem(f"this layer has {counts.params + counts.buffers:.3g} parameters and "
                           f"buffers, more than the limit of {MAX_VALUES:.0e}",
                           hint="no layer holds this many weights; check its sizes and channels")
    rf, notes = None, []
    parents = [fields.get(i) for i in node.data_inputs]
    gates = gate_inputs(node, in_shapes, out)
    if gates:  # squeeze-and-excitation: the field is the spatial path's
        parents = [p for i, p in enumerate(parents) if i not in gates]
        notes.extend(f"'{node.inputs[i]}' ({fmt_shape(in_shapes[i])}) is a gate that adds global "
                     "context; the field shown is that of the spatial path" for i in gates)
    if steps is not None and parents and all(p is not None for p in parents):
        composed = [rf_compose(p, steps) for p in parents]
        rf, note = rf_union(composed) if len(composed) > 1 else (composed[0], None)
        if note:
            notes.append(note)
    notes.extend(kind.notes(cfg, in_shapes))
    trainable = counts.params if cfg.trainable else 0
    return LayerInfo(name=node.name, type=kind.name, family=kind.family, label=label,
                     inputs=list(node.inputs), input_shapes=in_shapes, output_shape=out,
                     params=counts.params, trainable_params=trainable, buffers=counts.buffers,
                     macs=counts.macs, receptive_field=rf, notes=notes, identity=identity,
                     trainable_tensors=counts.param_tensors if cfg.trainable else 0,
                     views=views)


def gate_inputs(node: Node, in_shapes: list[Shape], out: Shape) -> list[int]:
    """Inputs of a broadcasting product that hold one value per channel (spatial size 1) while
    the output is a map: gates, as in squeeze-and-excitation."""
    if not node.kind.broadcasts or all(n == 1 for n in out[1:]):
        return []
    gates = [i for i, s in enumerate(in_shapes) if len(s) > 1 and all(n == 1 for n in s[1:])]
    return gates if len(gates) < len(in_shapes) else []


def shape_diagnostic(network: Network, node: Node, in_shapes, problem: ShapeProblem) -> Diagnostic:
    path = node.path + ((problem.field,) if problem.field else ())
    notes = list(problem.notes)
    if len(in_shapes) > 1:
        notes += [f"input '{name}': {fmt_shape(s)}" for name, s in zip(node.inputs, in_shapes)]
    else:
        notes.append(f"input shape: {fmt_shape(in_shapes[0])} (from '{node.inputs[0]}')")
    notes += node.context
    return network.source.diagnostic(path, problem.message, hint=problem.hint, layer=node.name,
                                     notes=notes)
