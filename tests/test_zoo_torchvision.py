"""The zoo's family specs make torchvision's models exactly: for each model, the spec with its
--set values compiles to a module whose state_dict keys, shapes and order are torchvision's, and
whose analysis (params, buffers, MACs, output shape) equals the figures PyTorch measured on
torchvision's own model (tests/data/torchvision/, see its README)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from torchvision_layouts import ZOO, layout

import archspec
from archspec.cli import main

ROOT = Path(__file__).resolve().parent.parent

def load(name: str) -> archspec.Network:
    spec, params = ZOO[name]
    return archspec.load(ROOT / spec, params=params)


def set_options(params: dict) -> list[str]:
    """`--set name=value` for each param, values as YAML writes them (true, not True)."""
    options = []
    for key, value in params.items():
        options += ["--set", f"{key}={json.dumps(value)}"]
    return options


@pytest.mark.parametrize("name", sorted(ZOO))
def test_state_dict_is_torchvisions_in_order(name):
    model = archspec.compile(load(name), device="meta")
    ours = [(key, tuple(tensor.shape)) for key, tensor in model.state_dict().items()]
    assert ours == list(layout(name).state_dict)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_check_reports_torchvisions_figures(name):
    spec, params = ZOO[name]
    result = CliRunner().invoke(main, ["check", "--json", str(ROOT / spec), *set_options(params)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    ref = layout(name)
    assert (doc["params"], doc["buffers"], doc["macs"]) == (ref.params, ref.buffers, ref.macs)
    assert (tuple(doc["input_shape"]), tuple(doc["output_shape"])) == (ref.input, ref.output)


# ---- expansion is exact: a family member against the same network written out flat -----------
# (no user blocks, no params, no repeats: every layer and name spelled out by hand)
FLAT = {"resnet18": "specs/resnet18.yaml"}


@pytest.mark.parametrize("name", sorted(FLAT))
def test_the_flat_spec_is_torchvisions_model(name):
    model = archspec.compile(ROOT / FLAT[name], device="meta")
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == \
        list(layout(name).state_dict)


@pytest.mark.parametrize("name", sorted(FLAT))
def test_a_family_member_expands_exactly_to_its_flat_spec(name):
    import torch
    family, flat = archspec.analyze(load(name)), archspec.analyze(ROOT / FLAT[name])
    assert list(family.layers) == list(flat.layers)   # every node's name, in order
    assert family.layers == flat.layers               # its kind, inputs, shapes and counts
    assert (family.params, family.buffers, family.macs) == (flat.params, flat.buffers, flat.macs)
    models = []
    for analysis in (family, flat):
        torch.manual_seed(0)                          # the same initialisation, tensor by tensor
        models.append(archspec.compile(analysis.network).eval())
    ours, theirs = (m.state_dict() for m in models)
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    x = torch.randn(1, *flat.input_shape)
    with torch.no_grad():
        assert torch.equal(models[0](x), models[1](x))


# ---- MobileNetV2's width multiplier against torchvision's construction, written out here -----

def torchvision_mobilenet_v2(width: float):
    """torchvision.models.MobileNetV2(width_mult=width)'s modules, as its source builds them."""
    from torch import nn

    def make_divisible(v: float, divisor: int = 8) -> int:
        rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
        return rounded + divisor if rounded < 0.9 * v else rounded

    def conv_bn_relu6(c_in, c_out, kernel=1, stride=1, groups=1):
        return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2,
                                       groups=groups, bias=False),
                             nn.BatchNorm2d(c_out), nn.ReLU6())

    class InvertedResidual(nn.Module):
        def __init__(self, c_in, c_out, stride, expand):
            super().__init__()
            hidden = c_in * expand
            layers = [conv_bn_relu6(c_in, hidden)] if expand != 1 else []
            layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                       nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
            self.conv = nn.Sequential(*layers)

    c_in = make_divisible(32 * width)
    features = [conv_bn_relu6(3, c_in, 3, 2)]
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            features.append(InvertedResidual(c_in, make_divisible(c * width), s if i == 0 else 1, t))
            c_in = make_divisible(c * width)
    last = make_divisible(1280 * max(1.0, width))
    features.append(conv_bn_relu6(c_in, last))
    model = nn.Module()
    model.features = nn.Sequential(*features)
    model.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, 1000))
    return model


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
def test_mobilenet_v2_width_multiplier_is_torchvisions(width):
    import torch
    with torch.device("meta"):
        reference = torchvision_mobilenet_v2(width)
    net = archspec.load(ROOT / "specs" / "mobilenet_v2.yaml", params={"width": width})
    ours = archspec.compile(net, device="meta").state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert archspec.analyze(net).params == sum(p.numel() for p in reference.parameters())
