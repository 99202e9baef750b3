"""Recurrent layers: LSTM and GRU on token sequences [L, D] (features last), lowered to
nn.LSTM / nn.GRU with batch_first=True, so the state_dict is PyTorch's (weight_ih_l0,
weight_hh_l0, bias_ih_l0, bias_hh_l0, weight_hr_l0 with proj_size, *_reverse).

Counting convention: the MACs are the gate matmuls, per step and direction the input's
(in x gates*H) and the hidden state's (P x gates*H), plus the projection (H x P) of an LSTM with
proj_size, times the sequence length (gates: 4 for LSTM, 3 for GRU; P = proj_size or H). The
gates' bias additions, sigmoids, tanhs and products count 0, as for every elementwise op.
"""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from annotated_types import Ge, Le
from pydantic import Field, confloat

from .base import (Counts, LayerConfig, LayerKind, Offset, RFStep, Saved, Shape, ShapeProblem,
                   Size, check_declared, register, sequence_input, sequence_layout_problem)

MAX_RECURRENT_LAYERS = 100  # each layer is a loop over the sequence; deeper stacks are typos
LayerCount = Annotated[int, Ge(1), Le(MAX_RECURRENT_LAYERS)]


class RecurrentConfig(LayerConfig):
    hidden_size: Size = Field(description="Features of the hidden state (per direction).")
    num_layers: LayerCount = Field(1, description="Stacked recurrent layers (at most 100).")
    bidirectional: bool = Field(False, description="Also run the sequence backwards; outputs "
                                                   "concatenate both directions.")
    bias: bool = Field(True, description="bias_ih and bias_hh in every layer.")
    dropout: confloat(ge=0, le=1) = Field(
        0.0, description="Dropout on each layer's output but the last's (needs num_layers > 1).")
    steps: Literal["all", "last"] = Field(
        "all", description="all: every step's output [L, H*directions]; last: the final hidden "
                           "state of the last layer, both directions concatenated (h_n), "
                           "[H*directions].")
    batch_first: bool = Field(
        True, description="Always true: the compiled layer takes [N, L, D] (samples first).")
    input_size: Size | None = Field(None, description="Inferred; checked if given.")

    # unknown fields users bring from Keras: the hint of their error
    field_hints: ClassVar[dict[str, str]] = {
        "units": "Keras' units is hidden_size here",
        "return_sequences": "write steps: all (every step's output) or steps: last (the final "
                            "state)",
        "return_state": "write steps: last for the final hidden state (h_n)",
        "go_backwards": "write bidirectional: true for both directions",
        "recurrent_dropout": "archspec has PyTorch's dropout between stacked layers only "
                             "(dropout, with num_layers > 1)",
    }


class LSTMConfig(RecurrentConfig):
    type: Literal["lstm"]
    proj_size: Offset = Field(0, description="LSTM with projections: the hidden state is "
                                             "projected to this size (below hidden_size); 0: none.")


class GRUConfig(RecurrentConfig):
    type: Literal["gru"]

    field_hints: ClassVar[dict[str, str]] = {
        **RecurrentConfig.field_hints,
        "proj_size": "proj_size is an LSTM field: PyTorch's GRU has no projection (remove it, "
                     "or use type: lstm)"}


class _Recurrent(LayerKind):
    family = "recurrent"
    layouts = frozenset({"channels_last"})  # a sequence [L, D], features last
    gates: int = 0
    title = ""

    def layout_problem(self, cfg, shape, layout):
        return sequence_layout_problem(self.name, shape, layout)

    @staticmethod
    def out_size(cfg) -> int:
        """Features of the hidden state handed on, per direction."""
        return getattr(cfg, "proj_size", 0) or cfg.hidden_size

    @staticmethod
    def directions(cfg) -> int:
        return 2 if cfg.bidirectional else 1

    def output_shape(self, cfg, inputs):
        length, features = sequence_input(
            self.name, inputs[0], "D", "a recurrent layer runs along a sequence: apply it before "
            "the layer that pools or flattens the sequence away, or give the spec a sequence input")
        if not cfg.batch_first:
            raise ShapeProblem(
                "batch_first: false is not available: shapes in a spec have no batch dim, and "
                f"the compiled {self.name} takes [N, L, D], samples first", field="batch_first",
                hint="remove batch_first; to feed sequence-first data [L, N, D], call the model "
                     "on x.transpose(0, 1)")
        check_declared(cfg, "input_size", features, "features")
        proj = getattr(cfg, "proj_size", 0)
        if proj >= cfg.hidden_size:
            raise ShapeProblem(f"proj_size {proj} must be smaller than hidden_size "
                               f"{cfg.hidden_size}", field="proj_size",
                               hint="project to fewer features than the hidden state has, or "
                                    "remove proj_size (0: no projection)")
        if cfg.dropout > 0 and cfg.num_layers == 1:
            raise ShapeProblem(
                f"dropout {cfg.dropout:g} applies between stacked layers, and this {self.name} "
                "has one", field="dropout",
                hint=f"set num_layers above 1, or remove dropout and put a "
                     f"{{type: dropout, p: {cfg.dropout:g}}} layer after it")
        width = self.directions(cfg) * self.out_size(cfg)
        return (width,) if cfg.steps == "last" else (length, width)

    def counts(self, cfg, inputs, output):
        length, features = inputs[0]
        h, p, dirs = cfg.hidden_size, self.out_size(cfg), self.directions(cfg)
        gate_rows = self.gates * h
        proj = h * p if p != h else 0
        params = tensors = macs = 0
        for layer in range(cfg.num_layers):
            fan_in = features if layer == 0 else dirs * p
            weights = gate_rows * (fan_in + p) + proj
            params += dirs * (weights + (2 * gate_rows if cfg.bias else 0))
            tensors += dirs * (2 + 2 * cfg.bias + (proj > 0))
            macs += dirs * length * weights
        return Counts(params=params, macs=macs, param_tensors=tensors)

    def rf_steps(self, cfg, inputs):
        """Step t sees steps 0..t (a causal window of L, all its padding on the left), and
        both directions see the whole sequence (a window of 2L - 1 centred on t)."""
        if cfg.steps == "last":
            return None  # a vector: no sequence axis left
        length = inputs[0][0]
        if cfg.bidirectional:
            return [RFStep(2 * length - 1, 1, length - 1)]
        return [RFStep(length, 1, length - 1)]

    def notes(self, cfg, inputs) -> list[str]:
        if cfg.steps == "last":
            return [(f"receptive field: the final state has seen every step of the sequence "
                    f"({self.title})")]
        if cfg.bidirectional:
            return [(f"receptive field: every step sees the whole sequence (a bidirectional "
                    f"{self.title})")]
        return [(f"receptive field: step t sees steps 0 to t, every earlier step (a recurrent "
                f"{self.title}: a window of the sequence's length, padded on the left)")]

    def label(self, cfg, inputs):
        text = f"{'bi' if cfg.bidirectional else ''}{self.title} {cfg.hidden_size}"
        if getattr(cfg, "proj_size", 0):
            text += f" proj {cfg.proj_size}"
        if cfg.num_layers > 1:
            text += f" x{cfg.num_layers}"
        return text + (", last" if cfg.steps == "last" else "")

    def saved(self, cfg, inputs, output, grad):
        """What ATen's CPU recurrent kernel keeps in train mode (the compiled layer runs it, not
        oneDNN's, whose workspace depends on the processor). Per layer: the input projection of
        the whole sequence keeps its input (when the weights train: the input made sequence-first,
        once per direction in layer 0, then the previous layer's output or its dropout); each
        step keeps its gates and products (cell_saved); the zero initial states are one tensor
        each for all layers; dropout between layers keeps its mask."""
        if not grad.any:
            return []
        length, features = inputs[0]
        h, p, dirs = cfg.hidden_size, self.out_size(cfg), self.directions(cfg)
        kept = []
        if grad.params:
            kept += [Saved("new", shape=(length, features), copy_of=0)] * dirs
        for layer in range(cfg.num_layers):
            kept += self.cell_saved(cfg, length, h, p, grad.params) * dirs
            if layer == cfg.num_layers - 1:
                break
            between = (length, dirs * p)
            if cfg.dropout == 1:
                kept.append(Saved("new", shape=(), batched=False))  # times a zero scalar
            elif cfg.dropout > 0:
                kept.append(Saved("new", shape=between))  # the mask
            if grad.params:
                kept.append(Saved("new", shape=between))  # the next layer's input
        states = (cfg.num_layers * dirs,)
        if grad.params:
            kept.append(Saved("new", shape=states + (p,)))  # h_0, kept by the first step's matmul
        return kept + self.initial_cell_saved(states + (h,))

    def cell_saved(self, cfg, length: int, h: int, p: int, weights: bool) -> list[Saved]:
        raise NotImplementedError

    def initial_cell_saved(self, shape: Shape) -> list[Saved]:
        return []


@register
class LSTM(_Recurrent):
    """nn.LSTM(batch_first=True) of the same settings; steps: last hands on h_n of the last
    layer (both directions concatenated, forward first)."""
    name = "lstm"
    Config = LSTMConfig
    gates = 4
    title = "LSTM"

    def cell_saved(self, cfg, length, h, p, weights):
        """Per step: the gates [N, 4H] (their sigmoids and tanh), tanh of the cell state, the
        previous cell state (the first step's is c_0); when the weights train the previous
        hidden state (for weight_hh; the first step's is h_0) and, with proj_size, the
        unprojected state (for weight_hr)."""
        kept = [Saved("new", shape=(4 * h,)), Saved("new", shape=(h,))] * length
        kept += [Saved("new", shape=(h,))] * (length - 1)
        if weights:
            kept += [Saved("new", shape=(p,))] * (length - 1)
            if p != h:
                kept += [Saved("new", shape=(h,))] * length
        return kept

    def initial_cell_saved(self, shape):
        return [Saved("new", shape=shape)]  # c_0, kept by the first step's forget gate product


@register
class GRU(_Recurrent):
    """nn.GRU(batch_first=True) of the same settings; steps: last hands on h_n of the last
    layer (both directions concatenated, forward first)."""
    name = "gru"
    Config = GRUConfig
    gates = 3
    title = "GRU"

    def cell_saved(self, cfg, length, h, p, weights):
        """Per step: the hidden state's gates [N, 3H] (reset and update sigmoids), copies of the
        two tensors multiplied in place (the reset-gated state and the update-gated difference),
        the new gate's tanh; when the weights train the previous hidden state (for weight_hh)."""
        kept = [Saved("new", shape=(3 * h,))] + [Saved("new", shape=(h,))] * 3
        return kept * length + [Saved("new", shape=(h,))] * ((length - 1) * weights)
