"""Multi-head attention and the transformer encoder layer, on token sequences [L, E] (features
last, nn.MultiheadAttention's batch_first layout).

Counting convention: the MACs are the Q/K/V and output projections and both matmuls (Q K^T and
the weights times V: L x S x d per head each, S the key length), as PyTorch's math attention
kernel computes them; a causal mask still computes the full product. Softmax, the scaling,
norms and activations count 0. Every output position sees the whole sequence (a causal one every
earlier position), so the field is a note, not a window.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

from pydantic import Field, confloat

from .base import (REGISTRY, SAVES_INPUT, Counts, GradFlow, LayerConfig, LayerKind, PositiveReal,
                   Saved, Shape, ShapeProblem, Size, register, sequence_input,
                   sequence_layout_problem)

Probability = confloat(ge=0, lt=1)  # 1 would drop every attention weight
SEQUENCE = frozenset({"channels_last"})  # tokens [L, E], features last, as lstm takes


def divisors_near(n: int, around: int, count: int = 6) -> list[int]:
    """The divisors of n closest to `around`, in increasing order."""
    found = [d for d in range(1, min(n, 4096) + 1) if n % d == 0]
    return sorted(sorted(found, key=lambda d: (abs(d - around), d))[:count])


def check_heads(num_heads: int, embed: int, field: str = "num_heads") -> None:
    if embed % num_heads:
        near = ", ".join(map(str, divisors_near(embed, num_heads)))
        raise ShapeProblem(
            f"{field} {num_heads} does not divide the embedding dim {embed}: each head takes "
            f"{embed} / {num_heads} = {embed / num_heads:.4g} features", field=field,
            hint=f"choose {field} among the divisors of {embed} (e.g. {near}), or change the "
                 f"embedding dim to a multiple of {num_heads}")


def token_sequence(kind: str, shape: Shape, role: str = "input") -> tuple[int, int]:
    """(length, features) of a [L, E] input; anything else is the user's error."""
    return sequence_input(kind, shape, "E", "attention mixes the positions of a sequence; apply "
                          "it before the layer that pools or flattens the sequence away", role)


def attention_macs(length: int, keys: int, embed: int, kdim: int, vdim: int) -> int:
    """Q, K, V and output projections, then Q K^T and the weights times V (L x S x E in all)."""
    return (length * embed * embed + keys * kdim * embed + keys * vdim * embed
            + length * embed * embed + 2 * length * keys * embed)


class MultiHeadAttentionConfig(LayerConfig):
    type: Literal["multi_head_attention"]
    num_heads: Size = Field(description="Heads; must divide the embedding dim (the query's "
                                        "features).")
    dropout: Probability = Field(0.0, description="Dropout on the attention weights (training).")
    bias: bool = Field(True, description="Biases in the input and output projections.")
    causal: bool = Field(False, description="Each position attends only to itself and earlier "
                                            "ones (self-attention only).")
    embed_dim: Size | None = Field(None, description="Inferred from the query; checked if given.")
    kdim: Size | None = Field(None, description="Inferred from the memory (second) input; checked if given.")
    vdim: Size | None = Field(None, description="Inferred from the memory (second) input; checked if given.")


def _check_given(cfg, field: str, actual: int, what: str) -> None:
    given = getattr(cfg, field)
    if given is not None and given != actual:
        raise ShapeProblem(f"{field} is {given} but the {what} has {actual} features",
                           field=field, hint=f"remove {field} (it is inferred) or set it to "
                                             f"{actual}")


@register
class MultiHeadAttention(LayerKind):
    """Self-attention on one input; cross-attention on two (`from: [query, memory]`: keys and
    values from the second) or three (`from: [query, key, value]`). Lowered to
    nn.MultiheadAttention(batch_first=True), so the state_dict is PyTorch's."""
    name = "multi_head_attention"
    family = "attention"
    Config = MultiHeadAttentionConfig
    base_name = "attn"
    max_inputs = 2
    layouts = SEQUENCE

    def layout_problem(self, cfg, shape, layout):
        return sequence_layout_problem(self.name, shape, layout)

    def dims(self, cfg, inputs) -> tuple[int, int, int, int, int]:
        """(L, S, E, kdim, vdim): query length, key length, embedding, key and value widths."""
        roles = ("query", "memory") if len(inputs) > 1 else ("input",)
        seqs = [token_sequence(self.name, s, role) for s, role in zip(inputs, roles)]
        (length, embed), (keys, kdim) = seqs[0], seqs[-1]
        return length, keys, embed, kdim, kdim

    def output_shape(self, cfg, inputs):
        length, _, embed, kdim, vdim = self.dims(cfg, inputs)
        _check_given(cfg, "embed_dim", embed, "query")
        _check_given(cfg, "kdim", kdim, "memory")
        _check_given(cfg, "vdim", vdim, "memory")
        check_heads(cfg.num_heads, embed)
        if cfg.causal and len(inputs) > 1:
            raise ShapeProblem("causal attention masks a sequence attending to itself, but this "
                               "layer attends to another input", field="causal",
                               hint="remove 'causal: true' (cross-attention sees the whole "
                                    "memory), or give it one input (self-attention)")
        return (length, embed)

    def counts(self, cfg, inputs, output):
        length, keys, embed, kdim, vdim = self.dims(cfg, inputs)
        separate = kdim != embed or vdim != embed  # q/k/v_proj_weight instead of in_proj_weight
        weights = embed * (embed + kdim + vdim) + embed * embed
        biases = 4 * embed if cfg.bias else 0
        tensors = (4 if separate else 2) + (2 if cfg.bias else 0)
        return Counts(params=weights + biases, param_tensors=tensors,
                      macs=attention_macs(length, keys, embed, kdim, vdim))

    def rf_steps(self, cfg, inputs):
        return None

    def notes(self, cfg, inputs) -> list[str]:
        if cfg.causal:
            return [("receptive field: each position sees itself and every earlier position "
                     "(causal attention)")]
        return ["receptive field: every position sees the whole sequence (attention)"]

    def label(self, cfg, inputs):
        what = "causal attention" if cfg.causal else \
            "cross-attention" if len(inputs) > 1 else "self-attention"
        return f"{what}, {cfg.num_heads} head{'s' if cfg.num_heads != 1 else ''}"

    def saved(self, cfg, inputs, output, grad):
        return attention_saved(cfg, inputs, output, grad)


def attention_saved(cfg, inputs, output, grad, query_is_input: bool = True) -> list[Saved]:
    """What nn.MultiheadAttention keeps on the CPU, measured per path. Without dropout PyTorch
    runs the flash kernel: it keeps the projections, its output and one log-sum-exp per head and
    query (float32 or wider), no L x S scores. With dropout it runs the math kernel: the scaled
    queries and keys, the softmax, the dropout mask and the dropped weights (three L x S
    tensors per head) and the values (all upcast to float32 in half precision)."""
    if not grad.any:
        return []
    length, keys, embed, kdim, _ = REGISTRY["multi_head_attention"].dims(cfg, inputs)
    heads, cross, separate = cfg.num_heads, len(inputs) > 1, kdim != embed
    kept = []
    if grad.params:  # the in-projections' inputs, made contiguous from the batch-first view
        kept.append(Saved("new", shape=(length, embed), copy_of=0 if query_is_input else None))
        kept += [Saved("new", shape=(keys, kdim), copy_of=1)] * ((1 + separate) if cross else 0)
    if not cross:
        projections = [(length, 3 * embed)]
    else:
        projections = [(length, embed)] + ([(keys, embed)] * 2 if separate else [(keys, 2 * embed)])
    if cfg.dropout == 0:
        kept += [Saved("new", shape=s) for s in projections]
        return kept + [Saved("new", shape=(length, embed)),
                       Saved("new", shape=(heads, length), float32=True)]
    query_grad = grad.params or grad.inputs[0]
    memory_grad = grad.params or grad.inputs[-1]
    scores = (heads, length, keys)
    if grad.params:  # the output projection's input (the math kernel's output, made contiguous)
        kept.append(Saved("new", shape=(length, embed)))
    if memory_grad:
        kept.append(Saved("new", shape=(length, embed), float32=True))   # scaled queries
    if query_grad:
        kept.append(Saved("new", shape=(keys, embed), float32=True))     # scaled keys
    kept += [Saved("new", shape=scores, float32=True)] * 2               # softmax, mask
    if memory_grad:
        kept.append(Saved("new", shape=scores, float32=True))            # dropped weights
    kept.append(Saved("new", shape=projections[-1], dtypes="wide"))      # holds the values
    kept.append(Saved("new", shape=(keys, embed), dtypes="half", float32=True))
    return kept


class TransformerEncoderLayerConfig(LayerConfig):
    type: Literal["transformer_encoder_layer"]
    nhead: Size = Field(description="Attention heads; must divide d_model.")
    dim_feedforward: Size = Field(2048, description="Width of the feed-forward hidden layer.")
    dropout: Probability = Field(0.1, description="Dropout on the attention weights, after the "
                                                  "attention, inside and after the feed-forward.")
    activation: Literal["relu", "gelu"] = "relu"
    layer_norm_eps: PositiveReal = 1e-5
    norm_first: bool = Field(False, description="Pre-norm (norm before attention and "
                                                "feed-forward) instead of post-norm.")
    bias: bool = Field(True, description="Biases in the linear layers and the layer norms.")
    causal: bool = Field(False, description="Causal self-attention (each position sees itself "
                                            "and earlier ones).")
    d_model: Size | None = Field(None, description="Inferred from the input; checked if given.")


@register
class TransformerEncoderLayer(LayerKind):
    """nn.TransformerEncoderLayer(batch_first=True) of the same settings on a token sequence
    [L, d_model]: self-attention and a two-layer feed-forward, each with a residual add and a
    layer norm (after, or with norm_first before)."""
    name = "transformer_encoder_layer"
    family = "attention"
    Config = TransformerEncoderLayerConfig
    base_name = "encoder_layer"
    layouts = SEQUENCE

    layout_problem = MultiHeadAttention.layout_problem

    def output_shape(self, cfg, inputs):
        length, embed = token_sequence(self.name, inputs[0])
        _check_given(cfg, "d_model", embed, "input")
        check_heads(cfg.nhead, embed, "nhead")
        return (length, embed)

    def counts(self, cfg, inputs, output):
        (length, embed), ff = inputs[0], cfg.dim_feedforward
        weights = 4 * embed * embed + 2 * embed * ff + 2 * embed  # the norms' weights
        biases = 4 * embed + ff + embed + 2 * embed if cfg.bias else 0
        return Counts(params=weights + biases, param_tensors=12 if cfg.bias else 6,
                      macs=attention_macs(length, length, embed, embed, embed)
                      + 2 * length * embed * ff)

    def rf_steps(self, cfg, inputs):
        return None

    notes = MultiHeadAttention.notes

    def label(self, cfg, inputs):
        norm = "pre-norm" if cfg.norm_first else "post-norm"
        causal = ", causal" if cfg.causal else ""
        return f"transformer encoder, {cfg.nhead} heads, ff {cfg.dim_feedforward}, {norm}{causal}"

    def saved(self, cfg, inputs, output, grad):
        return encoder_layer_saved(cfg, inputs, output, grad)


def dropout_saved(p: float, shape: Shape) -> list[Saved]:
    return REGISTRY["dropout"].saved(SimpleNamespace(p=p), [shape], shape, GradFlow((True,), False))


def encoder_layer_saved(cfg, inputs, output, grad) -> list[Saved]:
    """nn.TransformerEncoderLayer's parts in train mode: the attention's rule, dropout masks,
    each layer norm its input and a mean and inverse deviation per token, the linear layers
    their inputs (when their weights train), ReLU its output or GELU its input."""
    if not grad.any:
        return []
    (length, embed), p = inputs[0], cfg.dropout
    token, hidden = (length, embed), (length, cfg.dim_feedforward)
    stats = [Saved("new", shape=(length,))] * 2
    attention = SimpleNamespace(num_heads=cfg.nhead, dropout=p)
    kept = [SAVES_INPUT, *stats] if cfg.norm_first else []
    kept += attention_saved(attention, [token], token, grad, query_is_input=not cfg.norm_first)
    kept += dropout_saved(p, token)
    kept += [Saved("new", shape=token), *stats]          # the first residual sum, normed
    if grad.params:
        kept.append(Saved("new", shape=token))           # the feed-forward's input
    kept.append(Saved("new", shape=hidden))              # ReLU's output or GELU's input
    kept += dropout_saved(p, hidden)
    if grad.params and (p > 0 or cfg.activation == "gelu"):
        kept.append(Saved("new", shape=hidden))          # the second linear layer's input
    kept += dropout_saved(p, token)
    if not cfg.norm_first:
        kept += [Saved("new", shape=token), *stats]      # the second residual sum, normed
    return kept
