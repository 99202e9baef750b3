"""Names are the user's to choose: numbered sequentials, inline blocks, named shortcuts and
branches, repeat copy names. Each compiled model's state_dict (keys, order, shapes) equals the
one of the same network written here with torch.nn as torchvision writes it, and loads into it
strictly, computing the same outputs."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import archspec


def layout(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def assert_same_network(spec: str, reference: nn.Module, input_shape: tuple[int, ...]):
    """Same keys, order and shapes; and with the reference's weights, the same outputs."""
    model = archspec.compile(archspec.loads(spec))
    assert layout(model) == layout(reference)
    torch.manual_seed(0)
    for p in reference.parameters():
        nn.init.normal_(p, std=0.2)
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    reference.eval()
    x = torch.randn(2, *input_shape)
    assert torch.allclose(model(x), reference(x), atol=1e-5)
    return model


# ---- numbered sequentials ---------------------------------------------------------------

VGG_LIKE = """
name: vgg_like
input: [3, 16, 16]
blocks:
  conv_bn_relu:                    # three members: a numbered sequential counts each
    params: {channels: ~}
    layers:
      - {type: conv, out_channels: $channels, kernel_size: 3, padding: 1}
      - batch_norm
      - relu
layers:
  - type: sequential
    name: features
    numbered: true
    layers:
      - {type: conv, out_channels: 8, kernel_size: 3, padding: 1, activation: relu}   # 0, 1
      - {type: max_pool, kernel_size: 2}                                             # 2
      - {type: conv_bn_relu, channels: 16, inline: true}                             # 3, 4, 5
      - type: repeat                                                                 # 6 .. 11
        times: 2
        inline: true
        layers: [{type: conv, out_channels: 16, kernel_size: 3, padding: 1}, batch_norm, relu]
      - {type: max_pool, kernel_size: 2}                                             # 12
  - {type: adaptive_avg_pool, name: avgpool, output_size: 2}
  - flatten
  - type: sequential
    name: classifier
    numbered: true
    layers:
      - {type: dense, out_features: 32, activation: relu}                            # 0, 1
      - {type: dropout, p: 0.5}                                                      # 2
      - {type: dense, out_features: 10}                                              # 3
"""


class VGGLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_a_numbered_sequential_counts_activations_and_inline_blocks_as_nn_sequential():
    assert_same_network(VGG_LIKE, VGGLike(), (3, 16, 16))
    names = list(archspec.loads(VGG_LIKE).nodes)
    assert names[:13] == [f"features.{i}" for i in range(13)]
    assert names[-4:] == [f"classifier.{i}" for i in range(4)]


# A Fire-like block that is not inline takes one number, as torchvision's features.3.
FIRE_IN_FEATURES = """
name: squeeze_like
input: [3, 16, 16]
blocks:
  fire:
    params: {squeeze: ~, expand: ~}
    layers:
      - {type: conv, name: squeeze, out_channels: $squeeze, kernel_size: 1}
      - {type: relu, name: squeeze_activation}
      - {type: conv, name: expand1x1, out_channels: $expand, kernel_size: 1, from: squeeze_activation}
      - {type: conv, name: expand3x3, out_channels: $expand, kernel_size: 3, padding: 1,
         from: squeeze_activation}
      - {type: concat, from: [expand1x1, expand3x3]}
layers:
  - type: sequential
    name: features
    numbered: true
    layers:
      - {type: conv, out_channels: 8, kernel_size: 3, activation: relu}
      - {type: max_pool, kernel_size: 2}
      - {type: fire, squeeze: 4, expand: 8}
      - {type: fire, squeeze: 4, expand: 8}
"""


class Fire(nn.Module):
    def __init__(self, cin, squeeze, expand):
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_activation = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


def test_a_block_in_a_numbered_sequential_takes_one_number():
    reference = nn.Module()
    reference.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
                                       Fire(8, 4, 8), Fire(16, 4, 8))
    reference.forward = reference.features.forward
    model = assert_same_network(FIRE_IN_FEATURES, reference, (3, 16, 16))
    assert "features.3.squeeze.weight" in model.state_dict()


def test_an_inline_block_alone_in_a_copy_or_a_block_body_fills_that_scope():
    spec = """
name: alone
input: [3, 8, 8]
blocks:
  unit:
    layers:
      - {type: conv, name: conv, out_channels: 4, kernel_size: 1}
      - {type: batch_norm, name: bn}
  wrap:
    layers:
      - {type: sequential, inline: true, layers: [{type: relu, name: act}]}
layers:
  - {type: repeat, name: stage, times: 2, layers: [{type: unit, inline: true}]}
  - {type: wrap, name: w}
"""
    assert list(archspec.loads(spec).nodes) == ["stage.0.conv", "stage.0.bn", "stage.1.conv",
                                                "stage.1.bn", "w.act"]



class PreNormBlock(nn.Module):
    """torchvision's ViT EncoderBlock without attention: x + fc1(ln_1(x)), then + fc2(ln_2(.))."""

    def __init__(self, dim: int):
        super().__init__()
        self.ln_1, self.fc1 = nn.LayerNorm(dim), nn.Linear(dim, dim)
        self.ln_2, self.fc2 = nn.LayerNorm(dim), nn.Linear(dim, dim)

    def forward(self, x):
        x = x + self.fc1(self.ln_1(x))
        return x + self.fc2(self.ln_2(x))


def test_inline_residuals_in_one_scope_count_their_adds():
    """An inline residual's add is 'add'; a second one in the same scope is counted (add1), so
    a block of two pre-norm residuals names its layers as torchvision does, without scopes."""
    spec = """
name: pre-norm
input: {shape: [5, 8], layout: tokens}
blocks:
  pre_norm:
    layers:
      - type: residual
        inline: true
        layers: [{type: layer_norm, name: ln_1}, {type: dense, name: fc1, out_features: 8}]
      - type: residual
        inline: true
        layers: [{type: layer_norm, name: ln_2}, {type: dense, name: fc2, out_features: 8}]
layers:
  - {type: pre_norm, name: block}
"""
    assert [n for n in archspec.loads(spec).nodes if "add" in n] == ["block.add", "block.add1"]
    reference = nn.Module()
    reference.block = PreNormBlock(8)
    reference.forward = reference.block.forward
    assert_same_network(spec, reference, (5, 8))


WITH_OR_WITHOUT_BN = """
name: toggled
params: {batch_norm: false}
input: [3, 8, 8]
layers:
  - type: sequential
    name: features
    numbered: true
    layers:
      - type: repeat
        times: 2
        inline: true
        index: k
        layers:
          - {type: conv, out_channels: "4 * ($k + 1)", kernel_size: 3, padding: 1}
          - {type: batch_norm, when: $batch_norm}
          - relu
"""


@pytest.mark.parametrize("batch_norm", [False, True])
def test_an_item_left_out_by_when_takes_no_number(batch_norm):
    # torchvision's VGG make_layers: [conv, (bn), relu] per conv, numbered as nn.Sequential
    members = []
    for k, cin in enumerate([3, 4]):
        members += [nn.Conv2d(cin, 4 * (k + 1), 3, padding=1)]
        members += [nn.BatchNorm2d(4 * (k + 1))] if batch_norm else []
        members += [nn.ReLU()]
    reference = nn.Module()
    reference.features = nn.Sequential(*members)
    reference.forward = reference.features.forward
    network = archspec.loads(WITH_OR_WITHOUT_BN, params={"batch_norm": batch_norm})
    assert list(network.nodes) == [f"features.{i}" for i in range(len(members))]
    model = archspec.compile(network)
    assert layout(model) == layout(reference)


# ---- residual shortcuts ------------------------------------------------------------------

BASIC_BLOCKS = """
name: layer_like
input: [8, 16, 16]
blocks:
  basic_body:                      # torchvision's BasicBlock, without its addition
    params: {channels: ~, stride: 1}
    layers:
      - {type: conv, name: conv1, out_channels: $channels, kernel_size: 3, stride: $stride,
         padding: 1, bias: false}
      - {type: batch_norm, name: bn1}
      - {type: relu, name: relu}
      - {type: conv, name: conv2, out_channels: $channels, kernel_size: 3, padding: 1, bias: false}
      - {type: batch_norm, name: bn2}
layers:
  - type: sequential
    name: layer2
    numbered: true
    layers:
      - type: residual
        activation: relu
        layers: [{type: basic_body, channels: 16, stride: 2, inline: true}]
        shortcut:
          name: downsample
          numbered: true
          layers:
            - {type: conv, out_channels: 16, kernel_size: 1, stride: 2, bias: false}
            - batch_norm
      - type: residual
        activation: relu
        layers: [{type: basic_body, channels: 16, inline: true}]
"""


class BasicBlock(nn.Module):
    """torchvision.models.resnet.BasicBlock, written out."""

    def __init__(self, cin, cout, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (self.downsample(x) if self.downsample is not None else x))


def test_a_named_numbered_shortcut_gives_torchvisions_downsample_keys():
    down = nn.Sequential(nn.Conv2d(8, 16, 1, 2, bias=False), nn.BatchNorm2d(16))
    reference = nn.Module()
    reference.layer2 = nn.Sequential(BasicBlock(8, 16, 2, down), BasicBlock(16, 16))
    reference.forward = reference.layer2.forward
    model = assert_same_network(BASIC_BLOCKS, reference, (8, 16, 16))
    assert "layer2.0.downsample.1.running_var" in model.state_dict()


def test_shortcut_none_adds_nothing():
    spec = """
name: plain
input: [4, 8, 8]
layers:
  - type: residual
    name: body
    layers: [{type: conv, name: conv, out_channels: 4, kernel_size: 1}]
    shortcut: none
    activation: relu
"""
    network = archspec.loads(spec)
    assert [n.kind.name for n in network.nodes.values()] == ["conv", "relu"]
    model = archspec.compile(network)
    x = torch.randn(2, 4, 8, 8)
    sd = model.state_dict()
    expected = torch.relu(nn.functional.conv2d(x, sd["body.conv.weight"], sd["body.conv.bias"]))
    assert torch.allclose(model(x), expected, atol=1e-6)


# ---- branches ----------------------------------------------------------------------------

INCEPTION = """
name: inception_like
input: [8, 12, 12]
blocks:
  basic_conv:                      # torchvision's BasicConv2d
    params: {channels: ~, kernel: 1, padding: 0}
    layers:
      - {type: conv, name: conv, out_channels: $channels, kernel_size: $kernel, padding: $padding,
         bias: false}
      - {type: batch_norm, name: bn, eps: 0.001}
      - {type: relu, name: relu}
layers:
  - type: inception
    name: inception3a
    branches:
      branch1: [{type: basic_conv, channels: 4, inline: true}]
      branch2:
        numbered: true
        layers: [{type: basic_conv, channels: 3}, {type: basic_conv, channels: 6, kernel: 3, padding: 1}]
      branch3:
        numbered: true
        layers:
          - {type: max_pool, kernel_size: 3, stride: 1, padding: 1}
          - {type: basic_conv, channels: 2}
"""


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, kernel=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self):
        super().__init__()
        self.branch1 = BasicConv2d(8, 4)
        self.branch2 = nn.Sequential(BasicConv2d(8, 3), BasicConv2d(3, 6, 3, 1))
        self.branch3 = nn.Sequential(nn.MaxPool2d(3, 1, 1), BasicConv2d(8, 2))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x)], 1)


def test_branches_as_a_mapping_name_and_number_their_paths():
    reference = nn.Module()
    reference.inception3a = Inception()
    reference.forward = reference.inception3a.forward
    assert_same_network(INCEPTION, reference, (8, 12, 12))


def test_branch_names_name_the_branches_in_order():
    spec = """
name: named
input: [4, 8, 8]
layers:
  - type: branches
    name: mix
    branch_names: [left, right]
    branches:
      - [{type: conv, name: conv, out_channels: 2, kernel_size: 1}]
      - [{type: conv, name: conv, out_channels: 3, kernel_size: 1}]
"""
    model = archspec.compile(archspec.loads(spec))
    assert layout(model) == [("mix.left.conv.weight", (2, 4, 1, 1)), ("mix.left.conv.bias", (2,)),
                             ("mix.right.conv.weight", (3, 4, 1, 1)),
                             ("mix.right.conv.bias", (3,))]


# ---- repeat copy names -------------------------------------------------------------------

DENSE_BLOCK = """
name: dense_like
input: [3, 8, 8]
layers:
  - type: sequential
    name: features
    layers:
      - {type: conv, name: conv0, out_channels: 8, kernel_size: 3, padding: 1, bias: false}
      - type: repeat
        name: denseblock1
        times: 3
        copy_names: "denselayer${$i + 1}"
        layers:
          - {type: batch_norm, name: norm1}
          - {type: relu, name: relu1}
          - {type: conv, name: conv1, out_channels: 8, kernel_size: 1, bias: false}
          - {type: batch_norm, name: norm2}
          - {type: relu, name: relu2}
          - {type: conv, name: conv2, out_channels: 4, kernel_size: 3, padding: 1, bias: false}
          - {type: concat, from: [input, conv2]}
"""


class DenseLayer(nn.Module):
    """torchvision.models.densenet._DenseLayer (bn_size 2, growth 4), written out."""

    def __init__(self, cin):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(cin, 8, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 4, 3, padding=1, bias=False)

    def forward(self, x):
        new = self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))
        return torch.cat([x, new], 1)


def test_copy_names_name_repeat_copies_as_densenet_does():
    block = nn.Sequential()
    for k in range(3):
        block.add_module(f"denselayer{k + 1}", DenseLayer(8 + 4 * k))
    reference = nn.Module()
    reference.features = nn.Sequential()
    reference.features.add_module("conv0", nn.Conv2d(3, 8, 3, padding=1, bias=False))
    reference.features.add_module("denseblock1", block)
    reference.forward = reference.features.forward
    model = assert_same_network(DENSE_BLOCK, reference, (3, 8, 8))
    assert "features.denseblock1.denselayer3.conv1.weight" in model.state_dict()


# ---- the diagram ------------------------------------------------------------------------

def test_the_diagram_draws_clusters_for_scoped_blocks_and_none_for_inline_ones(tmp_path):
    svg = archspec.render(archspec.loads(VGG_LIKE + """
  - type: residual
    name: res
    layers: [{type: dense, out_features: 10}]
  - type: sequential
    inline: true
    layers: [{type: dense, out_features: 10}]
"""), tmp_path / "out.svg")
    clusters = set(re.findall(r"<title>cluster_([^<]*)</title>", svg))
    assert clusters == {"features", "classifier", "res"}
    boxes = set(re.findall(r"<title>([^<&]*)</title>", svg)) - {f"cluster_{c}" for c in clusters}
    assert {"features.3", "features.11", "dense1"} <= boxes   # inline members, boxes of their own


# ---- misuse ------------------------------------------------------------------------------

@pytest.mark.parametrize("snippet, where, message, hint", [
    ("""
  - type: sequential
    numbered: true
    layers:
      - relu
      - {type: relu, name: act}
""", (8, 28), "'act' names a member of a numbered sequential", "this one is 'seq1.1'"),
    ("""
  - {type: conv, name: conv, out_channels: 4, kernel_size: 1}
  - type: sequential
    inline: true
    layers: [{type: relu, name: conv}]
""", (7, 33), "name 'conv' is already used in this scope", "inline block 'sequential'"),
    ("""
  - {type: sequential, name: s, inline: true, layers: [relu]}
""", (4, 30), "an inline block has no name of its own", "remove 'name'"),
    ("""
  - {type: repeat, times: 2, inline: true, copy_names: "c${$i}", layers: [relu]}
""", (4, 56), "an inline repeat has no copies to name", "remove 'copy_names'"),
    ("""
  - type: branches
    branch_names: [a]
    branches: [[relu], [relu]]
""", (5, 19), "branch_names has 1 names for 2 branches", "one name per branch"),
    ("""
  - type: branches
    branches: {a: [relu], b: {name: c, layers: [relu]}}
""", (5, 37), "this branch is named twice ('b' and 'c')", "keep one"),
    ("""
  - type: branches
    branches: {a: [relu], a-b: [relu]}
""", (5, 27), "'a-b' is not a valid name", "letters, digits and '_'"),
])
def test_naming_misuse_is_a_located_diagnostic_with_a_hint(snippet, where, message, hint):
    with pytest.raises(archspec.SpecError) as info:
        archspec.loads("name: t\ninput: [4, 8, 8]\nlayers:" + snippet)
    [d] = info.value.diagnostics
    assert (d.line, d.column) == where, d
    assert message in d.message, d
    assert hint in d.hint, d
