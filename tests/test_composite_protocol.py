"""The composite protocol: composites drive expansion only through archspec.frontend.composite's
Host; scopes carry expression variables chained innermost-first (a repeat copy binds its
index); and `input` inside a block is that block's own input, never the network's."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import archspec
from archspec.frontend import expand
from archspec.frontend.composite import HOST_MEMBERS

BLOCKS = Path(expand.__file__).resolve().parent.parent / "layers" / "blocks.py"


def test_composites_reach_the_expander_only_through_the_protocol():
    tree = ast.parse(BLOCKS.read_text())
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "host"}
    params = {a.arg for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              for a in f.args.args}
    assert "ex" not in params            # no composite takes the expander itself
    assert used and used <= HOST_MEMBERS, used - HOST_MEMBERS
    missing = [m for m in HOST_MEMBERS if not hasattr(expand.Expander, m)]
    assert not missing
    imports = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.endswith("frontend.expand") for m in imports)


NESTED_REPEATS = """
name: nested
input: [2, 4, 4]
layers:
  - type: repeat
    name: stage
    times: 2
    index: k
    layers:
      - relu
      - type: repeat
        name: inner
        times: 3
        index: j
        layers: [relu, relu]
      - type: repeat
        name: shadow
        times: 2
        index: k
        layers: [relu, relu]
"""


def test_a_repeat_copy_binds_its_index_and_lookup_is_innermost_first(monkeypatch):
    seen: dict[str, dict] = {}
    opened = expand.Expander.open

    def recording(self, outer, *args, **kwargs):
        inner = opened(self, outer, *args, **kwargs)
        if inner is not None:
            seen[".".join(inner.prefix)] = dict(inner.variables())
        return inner
    monkeypatch.setattr(expand.Expander, "open", recording)
    archspec.loads(NESTED_REPEATS)
    assert seen["stage"] == {}
    assert seen["stage.0"] == {"k": 0} and seen["stage.1"] == {"k": 1}
    assert seen["stage.1.inner.2"] == {"k": 1, "j": 2}   # the outer copy's k is visible inside
    assert seen["stage.1.shadow.0"] == {"k": 0}          # an inner k hides the outer one
    assert seen["stage.0.shadow.1"] == {"k": 1}


# A DenseNet dense block: each layer concatenates its own input with `growth` new channels.
DENSE = """
name: dense
input: [3, 8, 8]
layers:
  - {type: conv, name: stem, out_channels: 16, kernel_size: 3, padding: 1}
  - type: repeat
    name: block
    times: 3
    layers:
      - batch_norm
      - relu
      - {type: conv, name: conv, out_channels: 4, kernel_size: 3, padding: 1, bias: false}
      - {type: concat, from: [input, conv]}
"""


class DenseLayer(nn.Module):
    def __init__(self, channels: int, growth: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(torch.relu(self.bn(x)))], 1)


def test_input_inside_a_repeat_copy_is_the_copys_own_input():
    # written here as torchvision's DenseNet does: layer k sees 16 + 4k channels
    reference = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1),
                              *[DenseLayer(16 + 4 * k, 4) for k in range(3)])
    analysis = archspec.analyze(archspec.loads(DENSE))
    assert analysis.output_shapes[0] == tuple(reference(torch.zeros(1, 3, 8, 8)).shape[1:])
    model = archspec.compile(archspec.loads(DENSE))
    assert [t.shape for t in model.state_dict().values()] == \
        [t.shape for t in reference.state_dict().values()]
    assert model.state_dict()["block.2.conv.weight"].shape == (4, 24, 3, 3)


def test_input_inside_a_user_block_is_the_instances_input():
    spec = """
name: ub
input: [3, 8, 8]
blocks:
  widen:
    layers:
      - {type: conv, name: conv, out_channels: 5, kernel_size: 1}
      - {type: concat, from: [input, conv]}
layers:
  - {type: conv, out_channels: 7, kernel_size: 1}
  - {type: widen, name: w1}
  - {type: widen, name: w2}
"""
    model = archspec.compile(archspec.loads(spec))
    # w1 reads the 7 channels of conv1, w2 the 7 + 5 of w1: never the network's 3
    assert model.state_dict()["w1.conv.weight"].shape == (5, 7, 1, 1)
    assert model.state_dict()["w2.conv.weight"].shape == (5, 12, 1, 1)
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 17, 8, 8)


def test_input_at_top_level_is_still_the_network_input():
    spec = """
name: top
input: [3, 8, 8]
layers:
  - {type: conv, name: a, out_channels: 4, kernel_size: 1}
  - {type: concat, from: [input, a]}
"""
    assert archspec.analyze(archspec.loads(spec)).output_shapes[0] == (7, 8, 8)


def test_a_layer_inside_a_block_cannot_be_named_input():
    spec = """
name: t
input: [3, 8, 8]
layers:
  - type: sequential
    layers:
      - {type: relu, name: input}
"""
    with pytest.raises(archspec.SpecError) as info:
        archspec.loads(spec)
    [d] = info.value.diagnostics
    assert (d.line, d.column) == (7, 28)
    assert d.message == "'input' is reserved for the block's own input" and d.hint
