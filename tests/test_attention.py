"""multi_head_attention against PyTorch: nn.MultiheadAttention(batch_first=True) of the same
settings gives the state_dict (keys, shapes, order) and, with the same weights, the output;
the MACs are FlopCounterMode's under the math attention kernel and the derivation written out
here (projections plus L x S x E for Q K^T and again for the weights times V); a causal layer
equals attention with the upper triangle masked, written out here."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from archspec.backends.pytorch.lowering import lower
from archspec.layers.base import REGISTRY, ShapeProblem

KIND = REGISTRY["multi_head_attention"]


def build(fields: dict, shapes: list[tuple[int, ...]]):
    cfg = KIND.Config.model_validate({"type": "multi_head_attention", **fields})
    output = KIND.output_shape(cfg, shapes)
    return cfg, output, KIND.counts(cfg, shapes, output), lower(KIND, cfg, shapes, output)


def math_kernel_macs(module: nn.Module, *xs) -> int:
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(*xs)
    return counter.get_total_flops() // 2


CASES = [  # (fields, input shapes, nn.MultiheadAttention arguments)
    ({"num_heads": 4}, [(6, 16)], dict(embed_dim=16, num_heads=4)),
    ({"num_heads": 1, "bias": False}, [(3, 8)], dict(embed_dim=8, num_heads=1, bias=False)),
    ({"num_heads": 2, "causal": True}, [(7, 8)], dict(embed_dim=8, num_heads=2)),
    ({"num_heads": 2, "dropout": 0.1}, [(5, 8), (9, 8)], dict(embed_dim=8, num_heads=2,
                                                              dropout=0.1)),
    ({"num_heads": 3}, [(5, 12), (4, 10)], dict(embed_dim=12, num_heads=3, kdim=10, vdim=10)),
    ({"num_heads": 2, "bias": False}, [(2, 6), (3, 5)], dict(embed_dim=6, num_heads=2, kdim=5,
                                                             vdim=5, bias=False)),
]


@pytest.mark.parametrize("fields, shapes, torch_args", CASES)
def test_attention_has_pytorchs_state_dict_params_and_output(fields, shapes, torch_args):
    torch.manual_seed(0)
    cfg, output, counts, module = build(fields, shapes)
    reference = nn.MultiheadAttention(**torch_args, batch_first=True)
    want = reference.state_dict()
    got = module.state_dict()
    assert [(k, tuple(v.shape)) for k, v in got.items()] == \
        [(k, tuple(v.shape)) for k, v in want.items()]
    assert counts.params == sum(p.numel() for p in reference.parameters())
    assert counts.param_tensors == len(list(reference.parameters()))
    assert output == shapes[0]
    reference.load_state_dict(got)
    module.eval(), reference.eval()
    xs = [torch.randn((2,) + s) for s in shapes]
    query, memory = xs[0], xs[-1]
    mask = torch.ones(len(query[0]), len(query[0]), dtype=torch.bool).triu(1) \
        if cfg.causal else None
    with torch.no_grad():
        want_out = reference(query, memory, memory, attn_mask=mask, need_weights=False)[0]
        torch.testing.assert_close(module(*xs), want_out)


@pytest.mark.parametrize("fields, shapes, torch_args", CASES)
def test_attention_macs_are_the_math_kernels_and_the_written_derivation(fields, shapes,
                                                                        torch_args):
    _, _, counts, module = build(fields, shapes)
    (length, embed), (keys, kdim) = shapes[0], shapes[-1]
    projections = length * embed * embed + 2 * keys * kdim * embed + length * embed * embed
    assert counts.macs == projections + 2 * length * keys * embed
    module.eval()
    xs = [torch.randn((1,) + s) for s in shapes]
    assert math_kernel_macs(module, *xs) == counts.macs


def test_causal_attention_is_attention_with_the_future_masked_and_counts_the_full_product():
    torch.manual_seed(1)
    _, _, counts, module = build({"num_heads": 2, "causal": True}, [(5, 8)])
    _, _, full, _ = build({"num_heads": 2}, [(5, 8)])
    assert counts.macs == full.macs  # PyTorch computes every score, then masks
    module.eval()
    x = torch.randn(3, 5, 8)
    w_q, w_k, w_v = module.in_proj_weight.chunk(3)
    b_q, b_k, b_v = module.in_proj_bias.chunk(3)

    def heads(t):  # [N, L, E] -> [N, heads, L, E / heads]
        return t.view(3, 5, 2, 4).transpose(1, 2)
    q, k, v = heads(x @ w_q.T + b_q), heads(x @ w_k.T + b_k), heads(x @ w_v.T + b_v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(4)
    scores = scores.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(3, 5, 8)
    want = mixed @ module.out_proj.weight.T + module.out_proj.bias
    with torch.no_grad():
        torch.testing.assert_close(module(x), want)
        # the first position sees only itself: changing later positions leaves it alone
        later = x.clone()
        later[:, 1:] += 1.0
        torch.testing.assert_close(module(later)[:, 0], module(x)[:, 0])


@pytest.mark.parametrize("kind, field, heads, embed, near", [
    ("multi_head_attention", "num_heads", 5, 768, "1, 2, 3, 4, 6, 8"),
    ("transformer_encoder_layer", "nhead", 7, 512, "1, 2, 4, 8, 16, 32"),
])
def test_heads_must_divide_the_embedding(kind, field, heads, embed, near):
    cfg = REGISTRY[kind].Config.model_validate({"type": kind, field: heads})
    with pytest.raises(ShapeProblem) as info:
        REGISTRY[kind].output_shape(cfg, [(10, embed)])
    assert info.value.field == field
    assert f"{field} {heads} does not divide the embedding dim {embed}" in info.value.message
    assert f"divisors of {embed} (e.g. {near}" in info.value.hint


@pytest.mark.parametrize("shapes, message", [
    ([(768,)], "needs a token sequence [L, E] (features last) but its input is a vector of 768"),
    ([(3, 4, 4)], "its input is a 3x4x4 map"),
    ([(4, 8), (2, 3, 3)], "its memory is a 2x3x3 map"),
])
def test_attention_refuses_what_is_not_a_token_sequence(shapes, message):
    cfg = KIND.Config.model_validate({"type": "multi_head_attention", "num_heads": 2})
    with pytest.raises(ShapeProblem) as info:
        KIND.output_shape(cfg, shapes)
    assert message in info.value.message
    assert info.value.hint


def test_causal_cross_attention_is_refused():
    cfg = KIND.Config.model_validate({"type": "multi_head_attention", "num_heads": 2,
                                      "causal": True})
    with pytest.raises(ShapeProblem, match="causal attention masks a sequence attending to "
                                           "itself") as info:
        KIND.output_shape(cfg, [(4, 8), (6, 8)])
    assert info.value.field == "causal"


def test_a_given_embed_dim_or_kdim_must_agree():
    cfg = KIND.Config.model_validate({"type": "multi_head_attention", "num_heads": 2,
                                      "kdim": 7})
    with pytest.raises(ShapeProblem, match="kdim is 7 but the memory has 6 features"):
        KIND.output_shape(cfg, [(4, 8), (5, 6)])


@pytest.mark.parametrize("spelling", ["MultiheadAttention", "attention", "mha",
                                      "SelfAttention"])
def test_pytorch_and_keras_spellings_suggest_multi_head_attention(spelling):
    import archspec
    from archspec.errors import SpecError
    with pytest.raises(SpecError) as info:
        archspec.loads(f"name: t\ninput: {{shape: [6, 16], layout: tokens}}\nlayers:\n"
                       f"  - {{type: {spelling}, num_heads: 2}}\n")
    (d,) = info.value.diagnostics
    assert d.message == f"unknown layer type '{spelling}'"
    assert d.hint == "did you mean 'multi_head_attention'?" and (d.line, d.column) == (4, 12)


ATTENTION_SPEC = """
name: attention kinds
input: {shape: [6, 16], layout: tokens}
layers:
  - {type: multi_head_attention, name: self_attn, num_heads: 4}
  - {type: multi_head_attention, name: causal, num_heads: 2, causal: true, bias: false}
  - {type: dense, name: narrow, out_features: 12, from: input}
  - {type: parameter, name: memory, mode: prepend}
  - {type: multi_head_attention, name: cross, num_heads: 2, from: [causal, memory]}
"""


def test_attention_exports_to_python_torch_export_and_onnx(tmp_path):
    import onnxruntime

    import archspec
    from archspec.backends.export.exported_program import exported_program
    from archspec.backends.export.onnx_model import onnx_bytes
    from archspec.backends.export.python_source import python_source
    from archspec.backends.pytorch.compiler import class_name
    network = archspec.loads(ATTENTION_SPEC)
    analysis = archspec.analyze(network)
    assert analysis.layers["cross"].input_shapes == [(6, 16), (7, 12)]
    torch.manual_seed(0)
    model = archspec.compile(network).eval()
    namespace: dict = {}
    exec(compile(python_source(analysis), "<generated>", "exec"), namespace)
    exported = namespace[class_name(network.name)]().eval()
    exported.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 6, 16)
    with torch.no_grad():
        want = model(x)
        torch.testing.assert_close(exported(x), want)
    program = exported_program(analysis, model=model)
    torch.testing.assert_close(program.module()(x), want)
    session = onnxruntime.InferenceSession(onnx_bytes(program, analysis),
                                           providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 6, 16)
        with torch.no_grad():
            want = model(x)
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ---- transformer_encoder_layer: nn.TransformerEncoderLayer(batch_first=True) --------------------

ENCODER = REGISTRY["transformer_encoder_layer"]
ENCODER_CASES = [  # fields beside nhead and dim_feedforward; the same as PyTorch's arguments
    {},
    {"activation": "gelu", "norm_first": True, "layer_norm_eps": 1e-6, "dropout": 0.0},
    {"bias": False, "dropout": 0.2},
    {"norm_first": True, "causal": True},
]


def encoder(fields: dict, shape: tuple[int, int], nhead: int = 2, ff: int = 24):
    cfg = ENCODER.Config.model_validate({"type": "transformer_encoder_layer", "nhead": nhead,
                                         "dim_feedforward": ff, **fields})
    output = ENCODER.output_shape(cfg, [shape])
    return cfg, output, ENCODER.counts(cfg, [shape], output), lower(ENCODER, cfg, [shape], output)


@pytest.mark.parametrize("fields", ENCODER_CASES)
def test_encoder_layer_is_pytorchs_in_state_dict_params_and_output(fields):
    torch.manual_seed(0)
    cfg, output, counts, module = encoder(fields, (7, 16))
    args = {k: v for k, v in fields.items() if k != "causal"}
    reference = nn.TransformerEncoderLayer(16, 2, dim_feedforward=24, batch_first=True, **args)
    assert [(k, tuple(v.shape)) for k, v in module.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]
    assert counts.params == sum(p.numel() for p in reference.parameters())
    assert counts.param_tensors == len(list(reference.parameters()))
    assert output == (7, 16)
    reference.load_state_dict(module.state_dict())
    x = torch.randn(3, 7, 16)
    mask = nn.Transformer.generate_square_subsequent_mask(7) if cfg.causal else None
    for training in (False, True):
        module.train(training), reference.train(training)
        torch.manual_seed(1)
        got = module(x)
        torch.manual_seed(1)
        want = reference(x, src_mask=mask, is_causal=cfg.causal)
        torch.testing.assert_close(got, want)
    with torch.no_grad():  # eval without grad: PyTorch's fused fast path, same values
        module.eval()
        torch.testing.assert_close(module(x), reference.eval()(x, src_mask=mask,
                                                               is_causal=cfg.causal))


@pytest.mark.parametrize("fields", ENCODER_CASES)
def test_encoder_layer_macs_are_attention_and_the_feed_forward(fields):
    _, _, counts, module = encoder(fields, (7, 16))
    length, embed, ff = 7, 16, 24
    attention = 4 * length * embed * embed + 2 * length * length * embed
    assert counts.macs == attention + 2 * length * embed * ff
    module.eval()
    assert math_kernel_macs(module, torch.randn(1, length, embed)) == counts.macs

