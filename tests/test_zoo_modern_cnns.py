"""specs/efficientnet_b0.yaml run as torchvision's model: a state_dict in torchvision's layout
(tests/data/torchvision/, random values) loads strictly into the compiled spec, whose output
equals a forward written here in plain PyTorch functions from torchvision's definition (its
block table and module order), and whose analysis and FlopCounterMode run give torchvision's
measured counts.

MACs: torchvision's figure is FlopCounterMode's FLOPs / 2, which counts convolutions and
linear layers (their products, not bias adds) and nothing else: batch norm, SiLU, sigmoid,
pooling and squeeze-and-excitation's gate multiply count 0 there, as in archspec's convention
(one MAC per weight use), so the figures are equal with no adjustment."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from torchvision_layouts import layout, random_state_dict

import archspec

ROOT = Path(__file__).resolve().parent.parent


def lively(state: dict) -> dict:
    """Rescaled so that signals neither vanish nor explode through the depth of the network
    (at std 0.05 everywhere the output would be the classifier's bias alone): conv and linear
    weights with std 1/sqrt(fan_in), norm weights and layer scales near 1, batch norm variances
    near 1/2 (which makes up for what SiLU and the squeeze-excitation gate take away)."""
    out = {}
    for key, tensor in state.items():
        if key.endswith("layer_scale") or (key.endswith("weight") and tensor.dim() == 1):
            tensor = 1 + 2 * tensor
        elif key.endswith("weight"):
            tensor = tensor / 0.05 / tensor[0].numel() ** 0.5
        elif key.endswith("running_var"):
            tensor = tensor / 2
        out[key] = tensor
    return out


def compiled(name: str) -> tuple[archspec.Analysis, torch.nn.Module, dict]:
    """The zoo spec analysed and compiled, with a random state_dict of torchvision's layout
    loaded strictly (as torchvision's pretrained file would be)."""
    analysis = archspec.analyze(archspec.load(ROOT / "specs" / f"{name}.yaml"))
    model = archspec.compile(analysis.network).eval()
    state = lively(random_state_dict(name, seed=3))
    model.load_state_dict(state, strict=True)
    return analysis, model, state


def flop_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


# ---- EfficientNet-B0 ---------------------------------------------------------------------------

# torchvision's _efficientnet_conf for B0: expand ratio, kernel, stride, in, out, blocks
B0 = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
      (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]


def efficientnet_b0_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision's EfficientNet-B0 in eval mode, on the tensors of its state_dict."""
    def conv_bn(prefix, x, stride=1, groups=1, act=True):   # Conv2dNormActivation
        w = sd[f"{prefix}.0.weight"]
        x = F.conv2d(x, w, None, stride, w.shape[-1] // 2, 1, groups)
        x = F.batch_norm(x, sd[f"{prefix}.1.running_mean"], sd[f"{prefix}.1.running_var"],
                         sd[f"{prefix}.1.weight"], sd[f"{prefix}.1.bias"], False, 0.0, 1e-5)
        return F.silu(x) if act else x

    def squeeze_excitation(prefix, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.silu(F.conv2d(s, sd[f"{prefix}.fc1.weight"], sd[f"{prefix}.fc1.bias"]))
        s = torch.sigmoid(F.conv2d(s, sd[f"{prefix}.fc2.weight"], sd[f"{prefix}.fc2.bias"]))
        return s * x

    x = conv_bn("features.0", x, stride=2)
    for stage, (expand, _, first_stride, c_in, c_out, blocks) in enumerate(B0, start=1):
        for b in range(blocks):
            p, stride = f"features.{stage}.{b}.block", first_stride if b == 0 else 1
            c = c_out if b else c_in
            y, part = x, 0
            if expand != 1:
                y, part = conv_bn(f"{p}.0", y), 1
            y = conv_bn(f"{p}.{part}", y, stride, groups=c * expand)             # depthwise
            y = squeeze_excitation(f"{p}.{part + 1}", y)
            y = conv_bn(f"{p}.{part + 2}", y, act=False)                          # project
            x = y + x if stride == 1 and c == c_out else y    # stochastic depth: eval identity
    x = conv_bn("features.8", x)
    x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
    return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"])


@pytest.fixture(scope="module")
def efficientnet():
    return compiled("efficientnet_b0")


def test_efficientnet_b0_runs_as_torchvisions_forward(efficientnet):
    _, model, state = efficientnet
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(x), efficientnet_b0_forward(state, x)
    assert ours.shape == (1, 1000)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.abs().max().item())
    assert (theirs - state["classifier.1.bias"]).std() > 0.05   # not the bias alone


def test_efficientnet_b0_drops_paths_at_torchvisions_rates(efficientnet):
    """Block k of 16 drops its residual path with 0.2 * k / 16; blocks without a skip have
    none (torchvision keeps the module there but never calls it)."""
    analysis, _, _ = efficientnet
    rates, k = {}, 0
    for stage, (_, _, first_stride, c_in, c_out, blocks) in enumerate(B0, start=1):
        for b in range(blocks):
            if (first_stride if b == 0 else 1) == 1 and (c_out if b else c_in) == c_out:
                rates[f"features.{stage}.{b}.stochastic_depth"] = 0.2 * k / 16
            k += 1
    nodes = analysis.network.nodes
    assert {name: nodes[name].cfg.p for name in nodes if nodes[name].cfg.type == "stochastic_depth"} \
        == pytest.approx(rates)
    assert {nodes[name].cfg.mode for name in rates} == {"row"}


def test_efficientnet_b0_counts_are_torchvisions(efficientnet):
    analysis, model, _ = efficientnet
    ref = layout("efficientnet_b0")
    assert (analysis.params, analysis.buffers, analysis.macs) == (ref.params, ref.buffers, ref.macs)
    assert (analysis.input_shape, analysis.output_shape) == (ref.input, ref.output)
    assert sum(p.numel() for p in model.parameters()) == ref.params
    assert sum(b.numel() for b in model.buffers()) == ref.buffers
    with torch.no_grad():
        assert flop_macs(model, torch.randn(1, *ref.input)) == ref.macs

