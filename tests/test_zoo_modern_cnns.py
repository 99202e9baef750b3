"""specs/efficientnet_b0.yaml and specs/convnext_tiny.yaml run as torchvision's models: a
state_dict in torchvision's layout (tests/data/torchvision/, random values) loads strictly into
the compiled spec, whose output equals a forward written here in plain PyTorch functions from
torchvision's definition (its block table and module order), and whose analysis and
FlopCounterMode run give torchvision's measured counts; drop-path rates are torchvision's.

MACs: torchvision's figure is FlopCounterMode's FLOPs / 2, which counts convolutions and
linear layers (their products, not bias adds) and nothing else: batch and layer norm, SiLU,
GELU, sigmoid, pooling, squeeze-and-excitation's gate multiply and ConvNeXt's layer_scale
multiply count 0 there, as in archspec's convention (one MAC per weight use), so the figures
are equal with no adjustment. ConvNeXt's linear layers run on channels-last maps [H, W, C]:
H x W x in x out each, in both."""
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


def drop_rates(analysis: archspec.Analysis) -> dict[str, float]:
    nodes = analysis.network.nodes
    return {name: node.cfg.p for name, node in nodes.items() if node.cfg.type == "stochastic_depth"}


def test_efficientnet_b0_drops_paths_at_torchvisions_rates():
    """Block k of 16 drops its residual path with 0.2 * k / 16; blocks without a skip have
    none (torchvision keeps the module there but never calls it)."""
    analysis = archspec.analyze(ROOT / "specs" / "efficientnet_b0.yaml")
    rates, k = {}, 0
    for stage, (_, _, first_stride, c_in, c_out, blocks) in enumerate(B0, start=1):
        for b in range(blocks):
            if (first_stride if b == 0 else 1) == 1 and (c_out if b else c_in) == c_out:
                rates[f"features.{stage}.{b}.stochastic_depth"] = 0.2 * k / 16
            k += 1
    assert drop_rates(analysis) == pytest.approx(rates)
    assert {analysis.network.nodes[name].cfg.mode for name in rates} == {"row"}


# ---- ConvNeXt-T ----------------------------------------------------------------------------------

CONVNEXT_T = [(96, 3), (192, 3), (384, 9), (768, 3)]   # torchvision's block_setting: dim, blocks


def convnext_tiny_forward(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ConvNeXt-T in eval mode, on the tensors of its state_dict."""
    def layer_norm_2d(prefix, x):                 # LayerNorm2d: over C, channels last and back
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], sd[f"{prefix}.weight"],
                         sd[f"{prefix}.bias"], 1e-6)
        return y.permute(0, 3, 1, 2)

    x = F.conv2d(x, sd["features.0.0.weight"], sd["features.0.0.bias"], stride=4)
    x = layer_norm_2d("features.0.1", x)
    for stage, (dim, blocks) in enumerate(CONVNEXT_T):
        for b in range(blocks):                   # CNBlock
            p = f"features.{2 * stage + 1}.{b}"
            y = F.conv2d(x, sd[f"{p}.block.0.weight"], sd[f"{p}.block.0.bias"], padding=3,
                         groups=dim).permute(0, 2, 3, 1)
            y = F.layer_norm(y, (dim,), sd[f"{p}.block.2.weight"], sd[f"{p}.block.2.bias"], 1e-6)
            y = F.gelu(F.linear(y, sd[f"{p}.block.3.weight"], sd[f"{p}.block.3.bias"]))
            y = F.linear(y, sd[f"{p}.block.5.weight"], sd[f"{p}.block.5.bias"])
            x = sd[f"{p}.layer_scale"] * y.permute(0, 3, 1, 2) + x   # stochastic depth: identity
        if stage < len(CONVNEXT_T) - 1:           # downsampling
            p = f"features.{2 * stage + 2}"
            x = F.conv2d(layer_norm_2d(f"{p}.0", x), sd[f"{p}.1.weight"], sd[f"{p}.1.bias"],
                         stride=2)
    x = layer_norm_2d("classifier.0", F.adaptive_avg_pool2d(x, 1)).flatten(1)
    return F.linear(x, sd["classifier.2.weight"], sd["classifier.2.bias"])


def test_convnext_tiny_drops_paths_at_torchvisions_rates():
    """Block k of 18 drops its residual path with 0.1 * k / 17 (the last block: 0.1)."""
    analysis = archspec.analyze(ROOT / "specs" / "convnext_tiny.yaml")
    names = [f"features.{2 * stage + 1}.{b}.stochastic_depth"
             for stage, (_, blocks) in enumerate(CONVNEXT_T) for b in range(blocks)]
    assert drop_rates(analysis) == pytest.approx({name: 0.1 * k / 17 for k, name in enumerate(names)})


def test_convnext_tiny_macs_derived_by_hand():
    """Stem, then per block a 7x7 depthwise conv and two linear layers (C -> 4C -> C) at every
    position, a 2x2 stride-2 conv between stages, the classifier: torchvision's measured figure."""
    macs, positions = 3 * 96 * 4 * 4 * 56 * 56, 56 * 56
    for stage, (dim, blocks) in enumerate(CONVNEXT_T):
        macs += blocks * positions * (7 * 7 * dim + 2 * dim * 4 * dim)
        if stage < len(CONVNEXT_T) - 1:
            positions //= 4
            macs += positions * 2 * 2 * dim * 2 * dim
    macs += 768 * 1000
    assert macs == layout("convnext_tiny").macs
    assert archspec.analyze(ROOT / "specs" / "convnext_tiny.yaml").macs == macs


# ---- both: torchvision's state_dict loads, the output is torchvision's, the counts too --------

FORWARD = {"efficientnet_b0": (efficientnet_b0_forward, "classifier.1.bias"),
           "convnext_tiny": (convnext_tiny_forward, "classifier.2.bias")}


@pytest.fixture(scope="module", params=sorted(FORWARD))
def model(request):
    return request.param, *compiled(request.param)


def test_runs_as_torchvisions_forward(model):
    name, _, compiled_model, state = model
    forward, classifier_bias = FORWARD[name]
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = compiled_model(x), forward(state, x)
    assert ours.shape == (1, 1000)
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5 * theirs.abs().max().item())
    assert (theirs - state[classifier_bias]).std() > 0.05   # not the classifier's bias alone


def test_counts_are_torchvisions(model):
    name, analysis, compiled_model, _ = model
    ref = layout(name)
    assert (analysis.params, analysis.buffers, analysis.macs) == (ref.params, ref.buffers, ref.macs)
    assert (analysis.input_shape, analysis.output_shape) == (ref.input, ref.output)
    assert sum(p.numel() for p in compiled_model.parameters()) == ref.params
    assert sum(b.numel() for b in compiled_model.buffers()) == ref.buffers
    with torch.no_grad():
        assert flop_macs(compiled_model, torch.randn(1, *ref.input)) == ref.macs
