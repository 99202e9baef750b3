"""parameters() and state_dict() list the layers in the order the spec writes them (not by
nesting depth), so loading weights by position pairs the right tensors."""
from __future__ import annotations

import json
from pathlib import Path

import torch

import archspec

HERE = Path(__file__).resolve().parent
SPECS = HERE.parent / "specs"

SPEC = """
name: order
input: [3, 8, 8]
layers:
  - {type: conv, name: stem, out_channels: 4, kernel_size: 1}
  - type: sequential
    name: features
    layers:
      - {type: conv, name: conv1, out_channels: 4, kernel_size: 3, padding: 1}
      - type: sequential
        name: deeper
        layers: [{type: batch_norm, name: bn}]
      - {type: conv, name: conv2, out_channels: 4, kernel_size: 1}
  - global_avg_pool
  - {type: dense, name: fc, out_features: 2}
"""

# written here from the spec above, in its order
SPEC_ORDER = ["stem.weight", "stem.bias", "features.conv1.weight", "features.conv1.bias",
              "features.deeper.bn.weight", "features.deeper.bn.bias",
              "features.deeper.bn.running_mean", "features.deeper.bn.running_var",
              "features.deeper.bn.num_batches_tracked", "features.conv2.weight",
              "features.conv2.bias", "fc.weight", "fc.bias"]


def test_state_dict_and_parameters_follow_the_spec_order():
    model = archspec.compile(archspec.loads(SPEC))
    assert list(model.state_dict()) == SPEC_ORDER
    parameters = [k for k in SPEC_ORDER if "running" not in k and "num_batches" not in k]
    assert [name for name, _ in model.named_parameters()] == parameters
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(4, 3, 1, 1), (4,), (4, 4, 3, 3), (4,), (4,), (4,), (4, 4, 1, 1), (4,),
                      (2, 4), (2,)]
    assert [name for name, _ in model.named_children()] == ["stem", "features", "gap1", "fc"]


def test_weights_loaded_by_position_land_in_the_right_layers():
    source, target = archspec.compile(archspec.loads(SPEC)), archspec.compile(archspec.loads(SPEC))
    with torch.no_grad():
        for src, dst in zip(source.parameters(), target.parameters()):
            dst.copy_(src)
    x = torch.randn(2, 3, 8, 8)
    source.eval(), target.eval()
    assert torch.equal(source(x), target(x))


def test_resnets_list_their_weights_in_torchvisions_order():
    reference = json.loads((HERE / "data" / "torchvision_state_dict_order.json").read_text())
    for name in ("resnet18", "resnet50"):
        model = archspec.compile(SPECS / f"{name}.yaml", device="meta")
        # the spec names torchvision's 'downsample' Sequential(conv, bn) 'shortcut'
        ours = [k.replace("shortcut.conv.", "downsample.0.").replace("shortcut.bn.", "downsample.1.")
                for k in model.state_dict()]
        assert ours == reference[name]
