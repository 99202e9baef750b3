"""Variables in expressions, evaluated per item when it is expanded: spec and block params, a
repeat's index, the incoming tensor ($in_channels, $in_shape), `type:` by expression and
`when:`. The motivating families are compared with the same networks written out flat and with
PyTorch modules written in the test as torchvision writes them."""
from __future__ import annotations

import pytest
import torch
from test_naming_rules import BasicBlock
from torch import nn

import archspec
from archspec.errors import SpecError


def load(text: str, **params):
    return archspec.loads(text, params=params)


def errors(text: str, **params):
    with pytest.raises(SpecError) as caught:
        archspec.analyze(archspec.loads(text, params=params))
    return caught.value.diagnostics


# ---- a ResNet stage as one repeat --------------------------------------------------------

STAGE = """
name: stage
input: [64, 16, 16]
params: {planes: 128, blocks: 2}
blocks:
  basic:
    params: {planes: ~, stride: 1}
    layers:
      - type: residual
        activation: relu
        layers:
          - {type: conv, name: conv1, out_channels: $planes, kernel_size: 3, stride: $stride,
             padding: 1, bias: false}
          - {type: batch_norm, name: bn1}
          - relu
          - {type: conv, name: conv2, out_channels: $planes, kernel_size: 3, padding: 1,
             bias: false}
          - {type: batch_norm, name: bn2}
        shortcut:
          name: downsample
          numbered: true
          layers:
            - {type: conv, out_channels: $planes, kernel_size: 1, stride: $stride, bias: false,
               when: "$stride != 1 or $in_channels != $planes"}
            - {type: batch_norm, when: "$stride != 1 or $in_channels != $planes"}
layers:
  - type: repeat
    name: layer2
    times: $blocks
    layers: [{type: basic, planes: $planes, stride: "2 if $i == 0 else 1"}]
"""


def torch_stage(blocks: int):
    """torchvision's layer2 of a ResNet-18/34 (BasicBlock as torchvision writes it)."""
    down = nn.Sequential(nn.Conv2d(64, 128, 1, 2, bias=False), nn.BatchNorm2d(128))
    return nn.Sequential(BasicBlock(64, 128, 2, down),
                         *[BasicBlock(128, 128) for _ in range(blocks - 1)])


@pytest.mark.parametrize("blocks", [2, 3])
def test_a_resnet_stage_is_one_repeat_whose_first_copy_strides_and_projects(blocks):
    model = archspec.compile(load(STAGE, blocks=blocks))
    reference = torch_stage(blocks)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {f"layer2.{k}": tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(ours.items()) == list(theirs.items())  # keys, shapes and order
    model.load_state_dict({f"layer2.{k}": v for k, v in reference.state_dict().items()})
    model.eval(), reference.eval()
    x = torch.randn(2, 64, 16, 16)
    torch.testing.assert_close(model(x), reference(x))


def test_the_stage_analyzes_like_the_same_stage_written_out():
    flat = """
name: flat
input: [64, 16, 16]
layers:
  - type: sequential
    name: layer2
    layers:
      - type: residual
        name: "0"
        activation: relu
        layers:
          - {type: conv, name: conv1, out_channels: 128, kernel_size: 3, stride: 2, padding: 1, bias: false}
          - {type: batch_norm, name: bn1}
          - relu
          - {type: conv, name: conv2, out_channels: 128, kernel_size: 3, padding: 1, bias: false}
          - {type: batch_norm, name: bn2}
        shortcut:
          name: downsample
          numbered: true
          layers:
            - {type: conv, out_channels: 128, kernel_size: 1, stride: 2, bias: false}
            - batch_norm
      - type: residual
        name: "1"
        activation: relu
        layers:
          - {type: conv, name: conv1, out_channels: 128, kernel_size: 3, padding: 1, bias: false}
          - {type: batch_norm, name: bn1}
          - relu
          - {type: conv, name: conv2, out_channels: 128, kernel_size: 3, padding: 1, bias: false}
          - {type: batch_norm, name: bn2}
"""
    ours, theirs = archspec.analyze(load(STAGE)), archspec.analyze(archspec.loads(flat))
    describe = [(n, i.type, i.output_shape, i.params, i.macs) for n, i in ours.layers.items()]
    assert describe == [(n, i.type, i.output_shape, i.params, i.macs)
                        for n, i in theirs.layers.items()]
    # conv 3x3 64->128, bn, conv 3x3 128->128, bn, 1x1 projection and its bn; then no projection
    expected = (9 * 64 * 128 + 2 * 128 + 9 * 128 * 128 + 2 * 128 + 64 * 128 + 2 * 128) + \
        (9 * 128 * 128 + 2 * 128 + 9 * 128 * 128 + 2 * 128)
    assert ours.params == expected


def test_a_shortcut_whose_layers_are_all_left_out_is_the_identity():
    net = load(STAGE)
    assert not any(n.startswith("layer2.1.downsample") for n in net.nodes)
    add = net.nodes["layer2.1.add"]
    assert add.inputs == ["layer2.1.bn2", "layer2.0.relu2"]  # the copy's input, as a skip
    assert add.skip_inputs == {1}


# ---- DenseNet's transition, MobileNet's widths, tables, types by expression ----------------

def test_densenet_transition_halves_the_incoming_channels():
    text = """
name: dense
input: [64, 16, 16]
layers:
  - type: repeat
    name: denseblock1
    times: 3
    copy_names: "denselayer${$i + 1}"
    layers:
      - {type: conv, name: conv, out_channels: 32, kernel_size: 3, padding: 1}
      - {type: concat, from: [input, conv]}
  - {type: conv, name: transition, out_channels: "$in_channels // 2", kernel_size: 1}
  - {type: avg_pool, kernel_size: 2}
"""
    analysis = archspec.analyze(archspec.loads(text))
    assert analysis.layers["transition"].output_shape == (80, 16, 16)  # (64 + 3 * 32) // 2
    assert analysis.output_shape == (80, 8, 8)


def test_in_shape_is_the_incoming_shape_without_batch():
    text = """
name: s
input: [3, 20, 12]
layers:
  - {type: conv, out_channels: 8, kernel_size: 3}
  - {type: conv, out_channels: "$in_shape[1] + len($in_shape)", kernel_size: 1, from: input}
"""
    assert archspec.analyze(archspec.loads(text)).output_shape == (20 + 3, 20, 12)


def torchvision_make_divisible(v, divisor):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


@pytest.mark.parametrize("width", [0.5, 0.75, 1.0, 1.4])
def test_mobilenet_widths_round_as_torchvision_does(width):
    text = """
name: m
input: [3, 32, 32]
params: {width: 1.0, cs: [32, 96, 1280]}
blocks:
  conv_bn:
    params: {c: ~}
    layers:
      - {type: conv, out_channels: "make_divisible($c * $width, 8)", kernel_size: 1}
layers:
  - {type: repeat, times: 3, layers: [{type: conv_bn, c: "$cs[$i]"}]}
"""
    net = load(text, width=width)
    widths = [n.cfg.out_channels for n in net.nodes.values()]
    assert widths == [torchvision_make_divisible(c * width, 8) for c in (32, 96, 1280)]


FAMILY = """
name: family
input: [16, 8, 8]
params:
  depth: 18
  stages: {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}
  bottleneck: "$depth >= 50"
blocks:
  basic:
    layers: [{type: conv, name: c, out_channels: 16, kernel_size: 3, padding: 1}]
  bottleneck:
    layers:
      - {type: conv, name: a, out_channels: 4, kernel_size: 1}
      - {type: conv, name: b, out_channels: 16, kernel_size: 1}
layers:
  - type: repeat
    name: layer3
    times: $stages[$depth][2]
    layers: [{type: "'bottleneck' if $bottleneck else 'basic'"}]
"""


@pytest.mark.parametrize("depth, copies, kind", [(18, 2, "basic"), (34, 6, "basic"),
                                                  (50, 6, "bottleneck")])
def test_a_table_chooses_the_copies_and_an_expression_chooses_the_block(depth, copies, kind):
    net = load(FAMILY, depth=depth)
    assert len({n.split(".")[1] for n in net.nodes}) == copies
    assert {net.blocks[f"layer3.{k}"].title or net.blocks[f"layer3.{k}"].kind
            for k in range(copies)} == {kind}
    per_copy = 16 * 16 * 9 + 16 if kind == "basic" else (16 * 4 + 4) + (4 * 16 + 16)
    assert archspec.analyze(net).params == copies * per_copy


def test_a_layer_type_by_expression():
    text = ("name: t\ninput: [4, 8, 8]\nparams: {act: relu}\n"
            "layers:\n  - {type: $act}\n  - {type: \"'sigmoid' if $act == 'relu' else 'tanh'\"}\n")
    assert [n.kind.name for n in load(text).nodes.values()] == ["relu", "sigmoid"]
    assert [n.kind.name for n in load(text, act="gelu").nodes.values()] == ["gelu", "tanh"]


def test_a_type_by_expression_that_names_no_type_is_located():
    (d,) = errors("name: t\ninput: [4, 8, 8]\nparams: {act: rellu}\nlayers:\n  - {type: $act}\n")
    assert d.message == "unknown layer type 'rellu'" and (d.line, d.column) == (5, 12)
    assert d.hint == "did you mean 'relu'?"


def test_a_mapping_as_type_beside_an_expression_is_located_not_a_crash():
    # found by the fuzz suite mutating specs/vgg.yaml: the item's expression sent it through
    # the per-item evaluation, which looked the mapping up among the block names
    (d,) = errors("name: t\ninput: [4]\nparams: {c: 3}\n"
                  "layers:\n  - {type: {type: dense}, out_features: $c}\n")
    assert d.message == "layer has no 'type'" and (d.line, d.column) == (5, 5)


# ---- when: --------------------------------------------------------------------------------

WHEN = """
name: w
input: [4, 8, 8]
params: {batch_norm: true}
layers:
  - {type: conv, name: conv, out_channels: 8, kernel_size: 3, padding: 1, bias: "not $batch_norm"}
  - {type: batch_norm, name: bn, when: $batch_norm}
  - {type: relu, from: bn}
"""


def test_when_false_leaves_the_item_out_and_its_name_means_its_input():
    on, off = load(WHEN), load(WHEN, batch_norm=False)
    assert list(on.nodes) == ["conv", "bn", "relu1"]
    assert list(off.nodes) == ["conv", "relu1"] and off.nodes["relu1"].inputs == ["conv"]
    assert archspec.analyze(off).params == 4 * 8 * 9 + 8  # the conv keeps its bias


def test_when_false_skips_the_errors_of_the_fields_it_guards():
    text = ("name: t\ninput: [4, 8, 8]\nparams: {sizes: [3]}\nlayers:\n"
            "  - {type: repeat, times: 3, layers: [{type: conv, out_channels: 4, "
            "kernel_size: \"$sizes[$i]\", when: \"$i < len($sizes)\"}]}\n")
    assert len(load(text).nodes) == 1


@pytest.mark.parametrize("value, shown", [("1", "1"), ("\"'yes' if $i == 0 else 'no'\"", "'yes'"),
                                          ("\"$i\"", "0")])
def test_when_must_be_a_boolean(value, shown):
    text = ("name: t\ninput: [4, 8, 8]\nlayers:\n"
            f"  - {{type: repeat, times: 1, layers: [{{type: relu, when: {value}}}]}}\n")
    (d,) = errors(text)
    assert d.message == f"when must be true or false (got {shown})"
    assert (d.line, d.column) == (4, 58) and d.hint  # at the value of when


def test_when_on_a_block_use():
    text = ("name: t\ninput: [4, 8, 8]\nparams: {extra: false}\nblocks:\n  two:\n"
            "    layers: [relu, relu]\nlayers:\n  - {type: two, when: $extra}\n  - sigmoid\n")
    assert list(load(text).nodes) == ["sigmoid1"]
    assert len(load(text, extra=True).nodes) == 3


# ---- the repeat index and scopes -----------------------------------------------------------

def test_the_index_variable_is_named_by_index():
    text = ("name: t\ninput: [4, 8, 8]\nlayers:\n  - type: repeat\n    times: 3\n    index: k\n"
            "    layers: [{type: conv, out_channels: \"4 * ($k + 1)\", kernel_size: 1}]\n")
    assert [n.cfg.out_channels for n in load(text).nodes.values()] == [4, 8, 12]


def test_nested_repeats_see_both_indexes_innermost_first():
    text = ("name: t\ninput: [4, 8, 8]\nlayers:\n  - type: repeat\n    times: 2\n    index: j\n"
            "    layers:\n      - type: repeat\n        times: 2\n"
            "        layers: [{type: conv, out_channels: \"10 * ($j + 1) + $i\", kernel_size: 1}]\n")
    assert [n.cfg.out_channels for n in load(text).nodes.values()] == [10, 11, 20, 21]


def test_an_error_in_one_copy_is_located_and_names_its_values():
    text = ("name: t\ninput: [4, 8, 8]\nparams: {sizes: [1, 3]}\nlayers:\n"
            "  - {type: repeat, times: 3, layers: [{type: conv, out_channels: 4, "
            "kernel_size: \"$sizes[$i]\"}]}\n")
    (d,) = errors(text)
    assert d.message == "index 2 is out of range: '$sizes' has 2 items in '$sizes[$i]'"
    assert (d.line, d.column) == (5, 82) and d.hint


def test_an_expression_needing_an_unknown_shape_adds_no_second_error():
    text = ("name: t\ninput: [4, 8, 8]\nlayers:\n"
            "  - {type: conv, out_channels: 4, kernel_size: 9}\n"
            "  - {type: conv, out_channels: \"$in_channels\", kernel_size: 1}\n")
    (d,) = errors(text)
    assert "kernel" in d.message and d.line == 4


def test_items_without_expressions_are_shared_by_every_copy():
    """The validation of an item without '$' is done once for all the copies (their configs are
    one object), also next to items that are evaluated per copy."""
    text = ("name: t\ninput: [4, 8, 8]\nlayers:\n  - type: repeat\n    times: 50\n    layers:\n"
            "      - {type: conv, out_channels: 4, kernel_size: 1}\n"
            "      - {type: conv, out_channels: \"4 + $i % 2\", kernel_size: 1}\n")
    nodes = list(load(text).nodes.values())
    assert len({id(n.cfg) for n in nodes[0::2]}) == 1
    assert len({id(n.cfg) for n in nodes[1::2]}) == 50
    assert [n.cfg.out_channels for n in nodes[1:5:2]] == [4, 5]
