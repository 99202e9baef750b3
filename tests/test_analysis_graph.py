"""Analysis.graph: the network as a networkx DiGraph annotated by the analysis. Its figures are
checked against PyTorch running the compiled model (shapes, parameters), MACs derived here from
the PyTorch modules, and the receptive fields in the project's reference (REFERENCE.md)."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
import torch

import archspec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
UNET = ROOT / "tests" / "data" / "diagram" / "unet_small.yaml"


def pytorch_figures(analysis) -> dict[str, dict]:
    """Per layer: output shape (no batch), parameters and MACs, from PyTorch running it."""
    model = archspec.compile(analysis.network).eval()
    modules = dict(model.named_modules())
    seen: dict[str, dict] = {}

    def record(name):
        def hook(module, args, output):
            out = tuple(output.shape[1:])
            macs = 0
            if isinstance(module, torch.nn.modules.conv._ConvTransposeNd):  # per input value
                window = module.out_channels // module.groups * math.prod(module.kernel_size)
                macs = math.prod(args[0].shape[1:]) * window
            elif isinstance(module, torch.nn.modules.conv._ConvNd):   # per output value
                window = module.in_channels // module.groups * math.prod(module.kernel_size)
                macs = math.prod(out) * window
            elif isinstance(module, torch.nn.Linear):
                macs = module.in_features * module.out_features
            seen[name] = {"shape": out, "macs": macs,
                          "params": sum(p.numel() for p in module.parameters())}
        return hook

    handles = [modules[name].register_forward_hook(record(name)) for name in analysis.layers]
    with torch.no_grad():
        model(torch.randn((2,) + tuple(analysis.input_shape)))
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("spec", [SPECS / "lenet5.yaml", UNET, SPECS / "alexnet.yaml"],
                         ids=["lenet5", "unet", "alexnet"])
def test_every_node_carries_the_shape_params_and_macs_pytorch_sees(spec):
    analysis = archspec.analyze(spec)
    graph = analysis.graph
    runtime = pytorch_figures(analysis)
    assert isinstance(graph, nx.DiGraph) and nx.is_directed_acyclic_graph(graph)
    assert set(graph) == set(runtime) | {"input"}
    for name, seen in runtime.items():
        node = graph.nodes[name]
        assert (node["shape"], node["params"]) == (seen["shape"], seen["params"]), name
        if seen["macs"]:  # convs and dense layers; the rest count none
            assert node["macs"] == seen["macs"], name
    assert graph.nodes["input"]["shape"] == tuple(analysis.input_shape)
    # each edge carries the tensor its source makes
    for src, dst, edge in graph.edges(data=True):
        assert edge["shape"] == graph.nodes[src]["shape"], (src, dst)


def test_receptive_fields_match_the_reference_figures():
    """REFERENCE.md: AlexNet 51 after its second conv and 99 after its third; VGG-16 196 at
    conv5_3 (its last conv) and 212 at pool5 (the pool after it)."""
    def convs(graph):
        return [n for n in nx.topological_sort(graph) if graph.nodes[n]["type"] == "conv"]

    alexnet = archspec.analyze(SPECS / "alexnet.yaml").graph
    second, third = convs(alexnet)[1:3]
    assert alexnet.nodes[second]["receptive_field"].size == (51, 51)
    assert alexnet.nodes[third]["receptive_field"].size == (99, 99)
    vgg = archspec.analyze(SPECS / "vgg16.yaml").graph
    last = convs(vgg)[-1]
    assert vgg.nodes[last]["receptive_field"].size == (196, 196)
    pool5 = next(n for n in nx.topological_sort(vgg)
                 if vgg.nodes[n]["type"] == "max_pool" and nx.has_path(vgg, last, n))
    assert vgg.nodes[pool5]["receptive_field"].size == (212, 212)
    assert vgg.nodes["input"]["receptive_field"].size == (1, 1)


def test_skip_edges_are_the_residual_shortcuts_and_the_unet_concatenations():
    unet = archspec.analyze(UNET).graph
    skips = {(u, v) for u, v, skip in unet.edges(data="skip") if skip}
    # the spec concatenates each encoder's output (its last ReLU) with the upsampled path
    assert skips == {("enc1.relu2", "cat1"), ("enc2.relu2", "cat2"), ("enc3.relu2", "cat3")}
    resnet = archspec.analyze(SPECS / "resnet18.yaml").graph
    skipped_to = {v for _, v, skip in resnet.edges(data="skip") if skip}
    # 8 basic blocks: 5 keep their size and skip straight to their add; the first block of
    # layer2-4 halves the size and doubles the channels, so its skip feeds a 1x1 conv
    # (torchvision's downsample: no bias, then a batch norm)
    assert len(skipped_to) == 8
    assert sorted(resnet.nodes[v]["type"] for v in skipped_to) == ["add"] * 5 + ["conv"] * 3
    assert sorted(resnet.nodes[v]["params"] for v in skipped_to
                  if resnet.nodes[v]["type"] == "conv") == [64 * 128, 128 * 256, 256 * 512]
    assert all(resnet.nodes[v]["block"].endswith(".downsample") for v in skipped_to
               if resnet.nodes[v]["type"] == "conv")


def test_nodes_know_their_block_and_the_graph_is_built_once():
    analysis = archspec.analyze(UNET)
    assert analysis.graph is analysis.graph
    assert analysis.graph.nodes["enc1.conv1"]["block"] == "enc1"
    assert analysis.graph.nodes["pool1"]["block"] is None


def test_a_projection_shortcut_is_fed_by_the_skip_and_only_sized_by_the_body():
    graph = archspec.analyze(ROOT / "tests" / "data" / "diagram" / "multipath.yaml").graph
    # 'down' (a basic block, stride 2) projects its input with a 1x1 conv: the block input is
    # the skip, the body's output only tells it which shape to make
    into = {u: d for u, _, d in graph.in_edges("down.shortcut", data=True)}
    assert [(d["index"], d["skip"], d["shape_only"]) for d in into.values()] == [
        (0, True, False), (1, False, True)]
    assert into["down.bn2"]["shape"] == (32, 16, 16)


def test_check_does_not_import_networkx(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "archspec", "check",
                             str(SPECS / "lenet5.yaml")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert "networkx" not in result.stderr
