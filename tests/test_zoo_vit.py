"""specs/vit_b_16.yaml runs as torchvision's ViT-B/16: a state_dict in torchvision's layout
(tests/data/torchvision/vit_b_16.json, random values) loads strictly into the compiled spec,
whose output equals a forward written here in plain PyTorch functions from torchvision's
VisionTransformer (patchify conv, class token, position embedding, 12 pre-norm encoder blocks,
final layer norm, class token, head), and whose FlopCounterMode run under the math attention
kernel gives torchvision's measured MACs. (Keys, shapes, order and `archspec check --json`'s
counts are checked with the other torchvision models in test_zoo_torchvision.py.)

MACs: FlopCounterMode counts the patchify conv, the linear layers and the two batched matrix
products of attention (Q K^T and the weights times V, L x L x E each); layer norms, GELU,
softmax and the additions count 0 there and in archspec's convention."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from test_zoo_modern_cnns import lively
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from torchvision_layouts import layout, random_state_dict

import archspec

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "vit_b_16.yaml"
DIM, HEADS, MLP, DEPTH, PATCH = 768, 12, 3072, 12, 16   # torchvision's vit_b_16 arguments


def vit_b_16_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ViT-B/16 in eval mode (dropout off), on the tensors of its state_dict."""
    x = F.conv2d(x, sd["conv_proj.weight"], sd["conv_proj.bias"], stride=PATCH)
    x = x.reshape(x.shape[0], DIM, -1).permute(0, 2, 1)                 # [N, 196, 768]
    x = torch.cat([sd["class_token"].expand(x.shape[0], -1, -1), x], dim=1)
    x = x + sd["encoder.pos_embedding"]
    n, length, head_dim = x.shape[0], x.shape[1], DIM // HEADS
    for b in range(DEPTH):
        p = f"encoder.layers.encoder_layer_{b}"
        y = F.layer_norm(x, (DIM,), sd[f"{p}.ln_1.weight"], sd[f"{p}.ln_1.bias"], 1e-6)
        q, k, v = F.linear(y, sd[f"{p}.self_attention.in_proj_weight"],
                           sd[f"{p}.self_attention.in_proj_bias"]).chunk(3, dim=-1)
        q, k, v = (t.reshape(n, length, HEADS, head_dim).transpose(1, 2) for t in (q, k, v))
        weights = torch.softmax(q @ k.transpose(-2, -1) / head_dim ** 0.5, dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(n, length, DIM)
        x = x + F.linear(y, sd[f"{p}.self_attention.out_proj.weight"],
                         sd[f"{p}.self_attention.out_proj.bias"])
        y = F.layer_norm(x, (DIM,), sd[f"{p}.ln_2.weight"], sd[f"{p}.ln_2.bias"], 1e-6)
        y = F.gelu(F.linear(y, sd[f"{p}.mlp.0.weight"], sd[f"{p}.mlp.0.bias"]))
        x = x + F.linear(y, sd[f"{p}.mlp.3.weight"], sd[f"{p}.mlp.3.bias"])
    x = F.layer_norm(x, (DIM,), sd["encoder.ln.weight"], sd["encoder.ln.bias"], 1e-6)
    return F.linear(x[:, 0], sd["heads.head.weight"], sd["heads.head.bias"])


def test_vit_b_16_loads_torchvisions_state_dict_and_runs_as_its_forward_and_counts():
    """One forward of the compiled model (86 M parameters: one is enough), under
    FlopCounterMode with the math attention kernel and nn.MultiheadAttention's fast path off."""
    analysis = archspec.analyze(archspec.load(SPEC))
    ref = layout("vit_b_16")
    assert (analysis.params, analysis.buffers, analysis.macs) == (ref.params, ref.buffers, ref.macs)
    state = lively(random_state_dict("vit_b_16", seed=3))
    model = archspec.compile(analysis.network, state_dict=state).eval()   # loads strictly
    assert list(model.state_dict()) == ref.keys()
    assert sum(p.numel() for p in model.parameters()) == ref.params
    x = torch.randn(1, *ref.input, generator=torch.Generator().manual_seed(0))
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), FlopCounterMode(display=False) as fc:
            ours = model(x)
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    assert fc.get_total_flops() // 2 == ref.macs
    with torch.no_grad():
        theirs = vit_b_16_forward(state, x)
    assert ours.shape == (1, 1000)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.abs().max().item())
    assert (theirs - state["heads.head.bias"]).std() > 0.05   # not the head's bias alone


def test_vit_b_16_macs_derived_by_hand():
    """Patchify (196 positions x 768 x 3 x 16 x 16), then per block over 197 tokens: Q, K, V and
    the output projection (4 E^2 per token), Q K^T and weights x V (2 L^2 E), the MLP (2 E x
    3072 per token); the head. torchvision's measured figure."""
    tokens = (224 // PATCH) ** 2 + 1
    block = 4 * tokens * DIM * DIM + 2 * tokens * tokens * DIM + 2 * tokens * DIM * MLP
    macs = (tokens - 1) * DIM * 3 * PATCH * PATCH + DEPTH * block + DIM * 1000
    assert macs == layout("vit_b_16").macs == archspec.analyze(SPEC).macs
