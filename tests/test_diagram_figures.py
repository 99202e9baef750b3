"""Diagrams a paper would print: skip concatenations drawn like residual skips, conv + norm +
activation in one box (--fuse), tensor shapes on edges (--edge-shapes), and a warning before
drawing a picture too long for a page. The DOT text is read back by the real dot program
(-Tjson0), so the structure asserted is the one graphviz sees."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

import archspec
from archspec.backends.diagram import DiagramTooLong, build_model, to_dot
from archspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
UNET = ROOT / "tests" / "data" / "diagram" / "unet_small.yaml"

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("ARCHSPEC_DOT") or "dot") is None
                                and not os.environ.get("CI"),
                                reason="graphviz 'dot' is not installed")


@dataclass
class DotGraph:
    nodes: dict[str, dict]                  # box name -> attributes, as dot read them
    edges: dict[tuple[str, str], dict]      # (tail, head) -> attributes (visible edges)
    clusters: dict[str, set[str]]           # cluster name -> the boxes inside it (deeply)
    titles: dict[str, dict]                 # cluster name -> its title node

    def texts(self, node: str) -> list[str]:
        """The lines of a box's HTML label."""
        label = self.nodes[node]["label"]
        return [re.sub(r"<[^>]+>", "", part).strip() for part in label.split("<BR/>")]

    def skips(self) -> set[tuple[str, str]]:
        return {pair for pair, attrs in self.edges.items() if attrs.get("class") == "skip"}


def read_dot(source: str) -> DotGraph:
    """The DOT source as graphviz's dot parses (and lays out) it."""
    dot = shutil.which(os.environ.get("ARCHSPEC_DOT") or "dot")
    result = subprocess.run([dot, "-Tjson0"], input=source, capture_output=True, text=True,
                            check=True)
    data = json.loads(result.stdout)
    objects = data.get("objects", [])
    names = {o["_gvid"]: o["name"] for o in objects}
    titles = {f"cluster_{o['name'].removesuffix(' title')}": o for o in objects
              if o.get("class") == "title"}
    nodes = {o["name"]: o for o in objects if "nodes" not in o and o.get("class") != "title"}
    clusters = {o["name"]: {names[n] for n in o["nodes"]} & set(nodes)
                for o in objects if "nodes" in o}
    edges = {(names[e["tail"]], names[e["head"]]): e for e in data.get("edges", [])
             if e.get("style") != "invis"}
    return DotGraph(nodes, edges, clusters, titles)


def draw_dot(spec, **options) -> DotGraph:
    analysis = archspec.analyze(spec)
    rankdir = options.pop("rankdir", "TB")
    return read_dot(to_dot(build_model(analysis, **options), rankdir=rankdir))


# ---------------------------------------------------------------------------------- skips

UNET_LEVELS = (("enc1", "cat1"), ("enc2", "cat2"), ("enc3", "cat3"))  # from the spec's text


def test_unet_skip_concatenations_are_dashed_like_residual_skips():
    """U-Net's concatenations read an encoder output past the whole lower level: drawn dashed,
    on their own side (east ports), and the upsampled input stays a plain edge."""
    top = draw_dot(UNET, depth=0)
    assert top.skips() == set(UNET_LEVELS)
    for pair in UNET_LEVELS:
        attrs = top.edges[pair]
        assert attrs["style"] == "dashed" and attrs["tailport"] == attrs["headport"] == "e"
    for level in "123":
        assert top.edges[(f"up{level}", f"cat{level}")].get("class") != "skip"
    full = draw_dot(UNET)
    assert full.skips() == {(f"{enc}.relu2", cat) for enc, cat in UNET_LEVELS}
    # the encoder blocks are clusters of their six layers, the concat sits outside them
    assert full.clusters["cluster_enc1"] == {f"enc1.{n}" for n in
                                             ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2")}


DENSE = """
name: dense_block
input: [8, 16, 16]
layers:
  - {type: conv, name: c1, out_channels: 4, kernel_size: 3, padding: 1}
  - {type: concat, name: cat1, from: [input, c1]}
  - {type: conv, name: c2, out_channels: 4, kernel_size: 3, padding: 1}
  - {type: concat, name: cat2, from: [cat1, c2]}
  - {type: conv, name: side, out_channels: 4, kernel_size: 1, from: cat2}
  - {type: conv, name: other, out_channels: 4, kernel_size: 3, padding: 1, from: cat2}
  - {type: concat, name: parallel, from: [side, other]}
"""


def test_densenet_concatenations_are_skips_and_parallel_branches_are_not():
    graph = read_dot(to_dot(build_model(archspec.analyze(archspec.loads(DENSE)))))
    # each concat reads its block input directly and through the conv: that edge is a skip;
    # the last concat joins two parallel convs, neither of which bypasses the other
    assert graph.skips() == {("input", "cat1"), ("cat1", "cat2")}


# ---------------------------------------------------------------------------------- --fuse

def test_fuse_draws_each_conv_with_its_norm_and_activation_in_one_box():
    plain = draw_dot(UNET)
    fused = draw_dot(UNET, fuse=True)
    # 7 double convs (enc1-3, bottleneck, dec3-1) x 2 convs each take in a BN and a ReLU
    assert len(plain.nodes) - len(fused.nodes) == 7 * 2 * 2
    assert fused.clusters["cluster_enc1"] == {"enc1.conv1", "enc1.conv2"}
    assert fused.texts("enc1.conv1") == ["conv 3x3, 16 + BN + ReLU", "16x64x64"]
    assert fused.texts("bottleneck.conv2") == ["conv 3x3, 128 + BN + ReLU", "128x8x8"]
    # the transposed convs have nothing to take in; the skips now start at the fused boxes
    assert fused.texts("up3")[0] == "upconv 2x2/2, 64"
    assert fused.skips() == {(f"{enc}.conv2", cat) for enc, cat in UNET_LEVELS}
    assert ("enc1.conv2", "pool1") in fused.edges


def test_fuse_stops_where_a_value_is_read_twice_or_returned():
    fused = draw_dot(SPECS / "resnet18.yaml", fuse=True)
    assert fused.texts("conv1")[0] == "conv 7x7/2, 64 + BN + ReLU"
    # the second conv of a basic block keeps its BN; the add reads it and the skip, then ReLU
    assert fused.texts("layer1.0.conv2")[0] == "conv 3x3, 64 + BN"
    [after_add] = [head for tail, head in fused.edges if tail == "layer1.0.add"]
    assert fused.texts("layer1.0.add")[0] == "add" and fused.texts(after_add)[0] == "relu"
    lenet = draw_dot(SPECS / "lenet5.yaml", fuse=True, params=True)
    assert lenet.texts("conv1") == ["conv 5x5, 6 + tanh", "6x28x28", f"{(5 * 5 + 1) * 6} params"]
    assert lenet.texts("dense3")[0] == "dense 10"  # the output: nothing after it
    returned = archspec.loads("name: r\ninput: [3, 8, 8]\nlayers:\n"
                              "  - {type: conv, name: c, out_channels: 4, kernel_size: 3}\n"
                              "  - {type: relu, name: r}\noutputs: [c, r]\n")
    graph = read_dot(to_dot(build_model(archspec.analyze(returned), fuse=True)))
    assert {"c", "r"} <= set(graph.nodes)  # c is returned: fusing would hide it


def test_cli_fuse_and_edge_shapes(tmp_path):
    out = tmp_path / "lenet.dot"
    result = CliRunner().invoke(main, ["diagram", str(SPECS / "lenet5.yaml"), "-o", str(out),
                                       "--fuse", "--edge-shapes"])
    assert result.exit_code == 0, result.output
    graph = read_dot(out.read_text(encoding="utf-8"))
    assert graph.texts("conv2")[0] == "conv 5x5, 16 + tanh"
    assert graph.edges[("conv1", "pool1")]["label"] == "6x28x28"


# ---------------------------------------------------------------------------------- --edge-shapes

def test_edge_shapes_put_every_tensor_shape_on_its_edge():
    graph = draw_dot(SPECS / "lenet5.yaml", edge_shapes=True)
    # textbook LeNet-5: 32 -5+1-> 28 -/2-> 14 -5+1-> 10 -/2-> 5; 16*5*5 = 400 features
    expected = {("input", "conv1"): "1x32x32", ("conv1", "tanh1"): "6x28x28",
                ("tanh1", "pool1"): "6x28x28", ("pool1", "conv2"): "6x14x14",
                ("conv2", "tanh2"): "16x10x10", ("pool2", "flatten1"): "16x5x5",
                ("flatten1", "dense1"): "400", ("dense1", "tanh3"): "120",
                ("tanh4", "dense3"): "84"}
    for pair, shape in expected.items():
        assert graph.edges[pair]["label"] == shape, pair
    assert all("label" in attrs for attrs in graph.edges.values())
    assert not any("label" in attrs for attrs in draw_dot(SPECS / "lenet5.yaml").edges.values())


def test_edge_shapes_on_skips_and_collapsed_blocks():
    graph = draw_dot(UNET, depth=0, edge_shapes=True)
    assert graph.edges[("enc3", "cat3")]["label"] == "64x16x16"   # enc3's 64 channels at 16x16
    assert graph.edges[("up3", "cat3")]["label"] == "64x16x16"
    assert graph.edges[("cat3", "dec3")]["label"] == "128x16x16"  # 64 + 64 concatenated


# ---------------------------------------------------------------------------------- size warning

def test_a_drawing_too_tall_for_a_page_warns_and_names_a_depth_that_fits(tmp_path):
    out = tmp_path / "r18.svg"
    result = subprocess.run([sys.executable, "-m", "archspec", "diagram",
                             str(SPECS / "resnet18.yaml"), "-o", str(out)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and out.exists()
    # ResNet-18's longest path: input, conv, bn, relu, maxpool; 8 basic blocks of 7 layers
    # (conv bn relu conv bn add relu); global pool, dense
    boxes = 5 + 8 * 7 + 2
    assert re.search(rf"^warning: the diagram will be about [\d,]+ pixels tall \({boxes} boxes "
                     r"end to end\), more than a page shows legibly$", result.stderr, re.MULTILINE)
    assert re.search(r"^  hint: draw blocks as single boxes with --depth 1 \(about [\d,]+ px\), "
                     r"or one box per conv with its norm and activation \(--fuse\)$",
                     result.stderr, re.MULTILINE), result.stderr
    quiet = subprocess.run([sys.executable, "-m", "archspec", "diagram",
                            str(SPECS / "resnet18.yaml"), "-o", str(out), "--depth", "1"],
                           capture_output=True, text=True, check=False)
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_the_size_warning_in_python_and_not_for_dot_source():
    with pytest.warns(DiagramTooLong, match=r"pixels wide .* --depth 1") as caught:
        archspec.render(SPECS / "resnet18.yaml", format="svg", rankdir="LR")
    assert "--depth 1" in caught[0].message.hint
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        archspec.render(SPECS / "resnet18.yaml", format="dot")   # no layout, no warning
        archspec.render(SPECS / "lenet5.yaml", format="svg")     # 13 boxes fit a page


# ---------------------------------------------------------------------------------- routing

def _curve(pos: str) -> list[tuple[float, float]]:
    """Points along an edge as dot laid it out: its cubic Bezier pieces, sampled."""
    points = [tuple(map(float, p.split(",")[:2])) for p in pos.split()
              if not p.startswith(("e,", "s,"))]
    samples = []
    for i in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[i:i + 4]
        for k in range(13):
            t = k / 12
            w = ((1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t * t, t ** 3)
            samples.append((sum(c * p[0] for c, p in zip(w, (p0, p1, p2, p3))),
                            sum(c * p[1] for c, p in zip(w, (p0, p1, p2, p3)))))
    return samples


def _box(centre: str, width_pt: float, height_pt: float):
    x, y = map(float, centre.split(","))
    return x - width_pt / 2, y - height_pt / 2, x + width_pt / 2, y + height_pt / 2


def crossings(graph: DotGraph) -> list[str]:
    """Edges drawn through a cluster title (any edge) or a shape label (skip edges)."""
    titles = {name: _box(t["pos"], float(t["width"]) * 72, float(t["height"]) * 72)
              for name, t in graph.titles.items()}
    labels = {f"label {e['label']} of {pair}": _box(e["lp"], 5.0 * len(e["label"]), 11)
              for pair, e in graph.edges.items() if e.get("label")}
    found = []
    for pair, edge in graph.edges.items():
        obstacles = {**titles, **(labels if edge.get("class") == "skip" else {})}
        for name, (x0, y0, x1, y1) in obstacles.items():
            if any(x0 <= x <= x1 and y0 <= y <= y1 for x, y in _curve(edge["pos"])):
                found.append(f"{pair} through {name}")
    return found


@pytest.mark.parametrize("spec,depth,fuse", [
    (UNET, None, False), (SPECS / "resnet18.yaml", 2, False), (SPECS / "resnet18.yaml", 2, True),
    (ROOT / "tests" / "data" / "diagram" / "multipath.yaml", None, False),
    (SPECS / "mobilenet_v2.yaml", 2, False)],
    ids=["unet", "resnet18-depth2", "resnet18-depth2-fused", "multipath", "mobilenet-depth2"])
def test_no_edge_runs_through_a_cluster_title_and_no_skip_through_a_shape_label(spec, depth,
                                                                                   fuse):
    """Cluster titles are text nodes (dot routes around nodes, not around cluster labels), each
    on a rank of its own; skip edges leave and enter their boxes on the side. Where the old
    drawing put the title in the cluster's label, MobileNetV2's skips ran through them."""
    graph = draw_dot(spec, depth=depth, fuse=fuse)
    assert graph.titles and graph.skips()
    assert crossings(graph) == []
    for name, members in graph.clusters.items():  # each framed cluster shows its block name
        if name in graph.titles:
            assert name.removeprefix("cluster_") in graph.titles[name]["label"]


def test_a_downsampling_shortcut_is_a_skip_drawn_beside_the_merge_it_feeds():
    """ResNet-18's layer2.0 (torchvision's layout): the block input skips to a 1x1 conv and a
    batch norm (its downsample), drawn next to the add rather than beside the body's start."""
    graph = draw_dot(SPECS / "resnet18.yaml", depth=2)
    assert ("layer1.1.relu1", "layer2.0.downsample.0") in graph.skips()

    def height(name: str) -> float:  # dot's y grows upwards
        return float(graph.nodes[name]["pos"].split(",")[1])

    assert height("layer2.0.downsample.0") < height("layer2.0.relu")   # below the body's ReLU
    assert height("layer2.0.downsample.1") > height("layer2.0.add")
