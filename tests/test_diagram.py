"""Block diagrams (archspec diagram / archspec.render): real graphviz output, parsed as SVG."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

import archspec
from archspec.backends.diagram import SKIP_COLOUR, RenderError, build_model, to_dot
from archspec.backends.diagram import render as render_analysis
from archspec.cli import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
DATA = ROOT / "tests" / "data" / "diagram"
MULTIPATH = DATA / "multipath.yaml"
NS = "{http://www.w3.org/2000/svg}"

# CI installs graphviz (tools/setup.sh), so there a missing dot fails instead of skipping.
needs_dot = pytest.mark.skipif(shutil.which(os.environ.get("ARCHSPEC_DOT") or "dot") is None
                               and not os.environ.get("CI"),
                               reason="graphviz 'dot' is not installed")
pytestmark = needs_dot


# ---------------------------------------------------------------------------------- SVG reading

@dataclass
class Item:
    title: str
    classes: set[str]
    texts: list[str]
    element: ET.Element

    @property
    def text(self) -> str:
        return " | ".join(self.texts)


@dataclass
class Picture:
    width: float                  # pt
    height: float
    nodes: dict[str, Item] = field(default_factory=dict)
    edges: list[Item] = field(default_factory=list)
    clusters: dict[str, Item] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)   # every text in the picture

    def edge_pairs(self, cls: str | None = None) -> set[tuple[str, str]]:
        """(tail, head) box names, without the ports skip edges leave and enter by."""
        return {tuple(end.split(":")[0] for end in e.title.split("->")) for e in self.edges
                if cls is None or cls in e.classes}

    def node_with(self, text: str) -> Item:
        [item] = [n for n in self.nodes.values() if text in n.texts]
        return item


def parse_svg(svg: str) -> Picture:
    """Boxes, edges and clusters of a drawing; a cluster's title (a text node inside it, named
    '<block> title') counts as the cluster's text, not as a box."""
    root = ET.fromstring(svg)
    pic = Picture(float(root.get("width", "0pt")[:-2]), float(root.get("height", "0pt")[:-2]))
    titles: dict[str, list[str]] = {}
    for g in root.iter(NS + "g"):
        classes = set((g.get("class") or "").split())
        title = g.find(NS + "title")
        if title is None:
            continue
        item = Item(title.text or "", classes,
                    [t.text.strip() for t in g.iter(NS + "text") if t.text and t.text.strip()], g)
        if "title" in classes:
            titles[f"cluster_{item.title.removesuffix(' title')}"] = item.texts
        elif "node" in classes:
            assert item.title not in pic.nodes, f"two boxes for {item.title}"
            pic.nodes[item.title] = item
        elif "edge" in classes:
            pic.edges.append(item)
        elif "cluster" in classes:
            pic.clusters[item.title] = item
    for cluster, texts in titles.items():
        pic.clusters[cluster].texts.extend(texts)
    pic.texts = [t.text.strip() for t in root.iter(NS + "text") if t.text and t.text.strip()]
    return pic


def draw(spec, tmp_path: Path, name: str = "out.svg", **options) -> Picture:
    out = tmp_path / name
    svg = archspec.render(spec, out, **options)
    assert out.read_text(encoding="utf-8") == svg
    return parse_svg(svg)


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "archspec", *map(str, args)],
                          capture_output=True, text=True, env=env,
                          check=False)


def visible_layers(analysis) -> set[str]:
    """Every layer drawn at full depth: all but the projection shortcuts that are identities."""
    return {n for n, i in analysis.layers.items()
            if not (i.type == "projection" and i.params == 0)}


# ---------------------------------------------------------------------------------- LeNet-5

def test_lenet5_one_box_per_layer_with_textbook_labels_and_shapes(tmp_path):
    pic = draw(SPECS / "lenet5.yaml", tmp_path, params=True)
    assert set(pic.nodes) == {"input", "conv1", "tanh1", "pool1", "conv2", "tanh2", "pool2",
                              "flatten1", "dense1", "tanh3", "dense2", "tanh4", "dense3"}
    # textbook LeNet-5: 32 -5+1-> 28 -/2-> 14 -5+1-> 10 -/2-> 5; 16*5*5 = 400 features
    side1 = 32 - 5 + 1
    side2 = side1 // 2 - 5 + 1
    expect = {
        "input": ["input", "1x32x32"],
        "conv1": ["conv 5x5, 6", f"6x{side1}x{side1}", f"{(5 * 5 * 1 + 1) * 6:,} params"],
        "pool1": [f"6x{side1 // 2}x{side1 // 2}"],
        "conv2": ["conv 5x5, 16", f"16x{side2}x{side2}", f"{(5 * 5 * 6 + 1) * 16:,} params"],
        "pool2": ["16x5x5"],
        "flatten1": ["flatten", "400"],
        "dense1": ["dense 120", "120", f"{(400 + 1) * 120:,} params"],
        "dense3": ["dense 10", "10", f"{(84 + 1) * 10:,} params"],
    }
    for name, texts in expect.items():
        for text in texts:
            assert text in pic.nodes[name].texts, (name, text, pic.nodes[name].texts)
    assert "6x28x28" in pic.nodes["conv1"].texts and "16x10x10" in pic.nodes["conv2"].texts
    # coloured by family, listed in the legend; title with the name and totals
    assert {"conv", "layer"} <= pic.nodes["conv1"].classes
    assert "pool" in pic.nodes["pool1"].classes and "dense" in pic.nodes["dense1"].classes
    fills = {n: pic.nodes[n].element.find(f".//{NS}path").get("fill") for n in pic.nodes}
    assert fills["conv1"] == fills["conv2"] != fills["pool1"] == fills["pool2"]
    assert len({fills["conv1"], fills["pool1"], fills["dense1"], fills["tanh1"],
                fills["flatten1"]}) == 5
    for family in ("conv", "pool", "dense", "activation", "reshape"):
        assert family in pic.texts
    assert "lenet5" in pic.texts
    assert any("61,706 params" in t and "416.52 k MACs" in t for t in pic.texts)
    # a chain: each layer feeds the next, nothing is a skip, no clusters
    assert ("input", "conv1") in pic.edge_pairs() and ("tanh4", "dense3") in pic.edge_pairs()
    assert len(pic.edges) == 12 and not pic.edge_pairs("skip") and not pic.clusters
    assert "output" in pic.nodes["dense3"].classes


def test_params_are_optional_for_layers(tmp_path):
    pic = draw(SPECS / "lenet5.yaml", tmp_path)
    assert not any("params" in t for n in pic.nodes.values() for t in n.texts)


def test_rankdir_lr_is_wide(tmp_path):
    tall = draw(SPECS / "lenet5.yaml", tmp_path, "tb.svg")
    wide = draw(SPECS / "lenet5.yaml", tmp_path, "lr.svg", rankdir="LR")
    assert tall.height > tall.width and wide.width > wide.height


# ---------------------------------------------------------------------------------- depths, folds

# multipath.yaml has 37 layers (two of them identity shortcuts, drawn as skip edges):
# stem; layer1 = repeat of 2 'basic' residual blocks (7 boxes each); down = a 'basic' block with
# a projection shortcut (8 boxes); inception1 (3 branches, 4 layers + concat); sepconv1
# (depthwise + pointwise); sconv, up, concat1, gap1, dense1.
TOP = {"input", "stem", "layer1", "down", "inception1", "sepconv1", "sconv", "up", "concat1",
       "gap1", "dense1"}
DOWN = {"down.conv1", "down.bn1", "down.relu1", "down.conv2", "down.bn2", "down.shortcut",
        "down.add", "down.relu2"}
INCEPTION = {"inception1.branch1.conv1", "inception1.branch2.conv1", "inception1.branch3.pool1",
             "inception1.branch3.conv1", "inception1.concat"}
SEPCONV = {"sepconv1.depthwise", "sepconv1.pointwise"}
REST = {"input", "stem", "sconv", "up", "concat1", "gap1", "dense1"}
BASIC = ["conv1", "bn1", "relu1", "conv2", "bn2", "add", "relu2"]


def test_depth_0_draws_each_top_level_block_as_one_box(tmp_path):
    pic = draw(MULTIPATH, tmp_path, depth=0)
    assert set(pic.nodes) == TOP and not pic.clusters
    # a collapsed block shows its kind or user block name, its output shape and its params
    # (basic block, 16 -> 16 channels: two 3x3 convs without bias and two batch norms)
    basic_params = 2 * (16 * 16 * 9 + 2 * 16)
    assert pic.nodes["layer1"].texts[0] == "basic x 2"  # a repeat names what it repeats
    assert {"16x32x32", f"{2 * basic_params:,} params"} <= set(pic.nodes["layer1"].texts)
    assert {"basic", "32x16x16"} <= set(pic.nodes["down"].texts)
    assert {"inception", "24x16x16"} <= set(pic.nodes["inception1"].texts)
    assert {"separable conv", "32x8x8"} <= set(pic.nodes["sepconv1"].texts)
    assert {"block"} <= pic.nodes["down"].classes
    # the residual skips are inside the collapsed blocks; concat1 reads sepconv1 past sconv
    # and up, so that input is a skip too
    assert pic.edge_pairs("skip") == {("sepconv1", "concat1")}
    assert ("up", "concat1") in pic.edge_pairs()


def test_depth_1_opens_top_level_blocks_and_folds_identical_ones(tmp_path):
    pic = draw(MULTIPATH, tmp_path, depth=1)
    fold = "layer1.0..layer1.1"
    assert set(pic.nodes) == REST | DOWN | INCEPTION | SEPCONV | {fold}
    assert len(pic.nodes) == 23
    assert pic.nodes[fold].texts[0] == "basic x 2" and "fold" in pic.nodes[fold].classes
    assert f"{2 * 2 * (16 * 16 * 9 + 2 * 16):,} params" in pic.nodes[fold].texts
    assert {"cluster_layer1", "cluster_down", "cluster_inception1",
            "cluster_sepconv1"} <= set(pic.clusters)
    assert "cluster_layer1.0" not in pic.clusters
    # the skip around 'down' starts at the folded box; concat1 reads sepconv1 past sconv and up
    assert pic.edge_pairs("skip") == {(fold, "down.shortcut"), ("sepconv1.pointwise", "concat1")}

    unfolded = draw(MULTIPATH, tmp_path, "nofold.svg", depth=1, fold=False)
    assert set(unfolded.nodes) == REST | DOWN | INCEPTION | SEPCONV | {"layer1.0", "layer1.1"}
    assert unfolded.nodes["layer1.0"].texts[0] == "basic"
    assert not any("x 2" in t for t in unfolded.texts if t.startswith("basic"))


def test_full_depth_draws_every_layer_in_nested_clusters(tmp_path):
    pic = draw(MULTIPATH, tmp_path)
    layer1 = {f"layer1.{i}.{n}" for i in (0, 1) for n in BASIC}
    assert set(pic.nodes) == REST | layer1 | DOWN | INCEPTION | SEPCONV
    assert len(pic.nodes) == 36
    analysis = archspec.analyze(MULTIPATH)
    assert set(pic.nodes) == visible_layers(analysis) | {"input"}
    for name in pic.nodes:
        if name != "input":
            info = analysis.layers[name]
            assert pic.nodes[name].texts[:2] == [info.label, "x".join(map(str, info.output_shape))]
    assert pic.nodes["down.conv1"].texts == ["conv 3x3/2, 32", "32x16x16"]
    assert pic.nodes["down.shortcut"].texts[0] == "conv 1x1/2, 32 + bn"
    labels = {n: c.text for n, c in pic.clusters.items()}
    for block in ("layer1", "layer1.0", "layer1.1", "down", "inception1", "sepconv1"):
        assert block in labels[f"cluster_{block}"]
    assert "repeat x 2" in labels["cluster_layer1"] and "basic" in labels["cluster_down"]
    # inception branches are grouped but drawn without a frame or label
    for b in (1, 2, 3):
        branch = pic.clusters[f"cluster_inception1.branch{b}"]
        assert "branch" in branch.classes and not branch.texts


def test_skip_edges_bypass_residual_bodies_in_their_own_style(tmp_path):
    pic = draw(MULTIPATH, tmp_path)
    skips = [e for e in pic.edges if "skip" in e.classes]
    # identity shortcuts go straight to the add; the projection one to the 1x1 conv
    # and the concatenation that reads sepconv1 past sconv and up is a skip as well
    assert pic.edge_pairs("skip") == {("stem", "layer1.0.add"),
                                      ("layer1.0.relu2", "layer1.1.add"),
                                      ("layer1.1.relu2", "down.shortcut"),
                                      ("sepconv1.pointwise", "concat1")}
    for edge in pic.edges:
        path = edge.element.find(NS + "path")
        if edge in skips:
            assert path.get("stroke") == SKIP_COLOUR and path.get("stroke-dasharray")
        else:
            assert path.get("stroke") != SKIP_COLOUR and not path.get("stroke-dasharray")
    # the body is drawn too, and the add reads it
    assert {("stem", "layer1.0.conv1"), ("layer1.0.bn2", "layer1.0.add"),
            ("down.bn2", "down.add"), ("down.shortcut", "down.add")} <= pic.edge_pairs()
    assert "skip" in pic.texts  # in the legend


def test_edges_leaving_a_block_carry_its_shape_once(tmp_path):
    pic = draw(MULTIPATH, tmp_path)
    labelled = {e.title: e.texts for e in pic.edges if e.texts}
    leaving_down = [t for t, x in labelled.items() if t.startswith("down.relu2->")]
    assert len(leaving_down) == 1 and labelled[leaving_down[0]] == ["32x16x16"]
    assert labelled["inception1.concat->sepconv1.depthwise"] == ["24x16x16"]
    assert not any(t.startswith("layer1.0.conv1->") for t in labelled)  # inside a block
    bare = draw(MULTIPATH, tmp_path, "bare.svg", edge_labels=False)
    assert not any(e.texts for e in bare.edges)


def test_folding_needs_identical_chained_blocks():
    """Blocks that differ (shapes), or whose output is also read elsewhere, stay apart."""
    text = """
name: folds
input: [8, 16, 16]
blocks:
  unit:
    params: {c: 8, s: 1}
    layers:
      - {type: conv, name: conv, out_channels: $c, kernel_size: 3, stride: $s, padding: 1}
      - {type: relu, name: act}
layers:
  - type: sequential
    name: stage
    layers:
      - {type: unit, name: a}
      - {type: unit, name: b}
      - {type: unit, name: c}
      - {type: unit, name: d, s: 2}
      - {type: unit, name: e}
      - {type: unit, name: f}
      - {type: concat, name: cat, from: [f, e]}
"""
    model = build_model(archspec.analyze(archspec.loads(text)), depth=1)
    heads = {b.id: b.lines[0][1] for b in model.boxes.values()}
    # a..c fold; d downsamples; e and f are identical but the concat reads e too
    assert heads == {"input": "input", "stage.a..stage.c": "unit x 3", "stage.d": "unit",
                     "stage.e": "unit", "stage.f": "unit", "stage.cat": "concat"}
    assert len(build_model(archspec.analyze(archspec.loads(text)), depth=1, fold=False).boxes) == 8


# ---------------------------------------------------------------------------------- big networks

def deep_spec(blocks: int) -> str:
    return f"""
name: deep
input: [3, 32, 32]
blocks:
  basic:
    params: {{channels: 16}}
    layers:
      - type: residual
        activation: relu
        layers:
          - {{type: conv, out_channels: $channels, kernel_size: 3, padding: 1, bias: false}}
          - batch_norm
          - relu
          - {{type: conv, out_channels: $channels, kernel_size: 3, padding: 1, bias: false}}
          - batch_norm
layers:
  - {{type: conv, name: stem, out_channels: 16, kernel_size: 3, padding: 1}}
  - {{type: repeat, name: body, times: {blocks}, layers: [{{type: basic}}]}}
  - global_avg_pool
  - {{type: dense, out_features: 10}}
"""


def test_a_200_layer_network_at_depth_1_is_one_folded_box_and_fast(tmp_path):
    analysis = archspec.analyze(archspec.loads(deep_spec(30)))
    assert len(analysis.layers) > 200
    start = time.perf_counter()
    pic = parse_svg(render_analysis(analysis, tmp_path / "deep.svg", depth=1))
    assert time.perf_counter() - start < 10
    assert set(pic.nodes) == {"input", "stem", "body.0..body.29", "gap1", "dense1"}
    assert pic.nodes["body.0..body.29"].texts[0] == "basic x 30"
    start = time.perf_counter()
    full = parse_svg(render_analysis(analysis, tmp_path / "deep_full.svg"))
    assert time.perf_counter() - start < 30
    assert set(full.nodes) == visible_layers(analysis) | {"input"}
    assert len(full.edge_pairs("skip")) == 30


def fits_a_page(pic: Picture, min_scale: float = 0.5) -> bool:
    """Shrunk to an A4 page (either orientation), text stays at least min_scale of its size."""
    a4 = (595, 842)
    scale = max(min(a4[0] / pic.width, a4[1] / pic.height),
                min(a4[1] / pic.width, a4[0] / pic.height))
    return scale >= min_scale


@pytest.mark.skipif(not (SPECS / "resnet50.yaml").exists(), reason="no ResNet-50 spec yet")
def test_resnet50_fits_a_page_at_depth_1_and_shows_every_conv_at_full_depth(tmp_path):
    analysis = archspec.analyze(SPECS / "resnet50.yaml")
    start = time.perf_counter()
    pic = parse_svg(render_analysis(analysis, tmp_path / "r50.svg", depth=1))
    assert time.perf_counter() - start < 10
    assert fits_a_page(pic), (pic.width, pic.height)
    heads = sorted(n.texts[0] for n in pic.nodes.values() if "fold" in n.classes)
    assert heads == ["bottleneck x 2", "bottleneck x 2", "bottleneck x 3", "bottleneck x 5"]
    assert "layer3.1..layer3.5" in pic.nodes and len(pic.nodes) == 15

    full = parse_svg(render_analysis(analysis, tmp_path / "r50_full.svg"))
    convs = {n for n, i in analysis.layers.items() if i.family == "conv" and i.params}
    assert len(convs) == 53  # 1 stem + 16 bottlenecks x 3 + 4 projection shortcuts
    assert convs <= set(full.nodes)
    assert set(full.nodes) == visible_layers(analysis) | {"input"}
    assert len(full.edge_pairs("skip")) == 16


def test_convnext_stages_are_one_box_each_at_depth_1(tmp_path):
    """ConvNeXt-T's features open at depth 1; each stage, a repeat of CNBlocks, is one box."""
    pic = parse_svg(render_analysis(archspec.analyze(SPECS / "convnext_tiny.yaml"),
                                    tmp_path / "convnext.svg", depth=1))
    stages = {name: node.texts[0] for name, node in pic.nodes.items() if "cnblock" in node.texts[0]}
    assert stages == {"features.1": "cnblock x 3", "features.3": "cnblock x 3",
                      "features.5": "cnblock x 9", "features.7": "cnblock x 3"}
    assert "96x56x56" in pic.nodes["features.1"].texts



def test_vits_twelve_encoder_blocks_fold_into_one_box_and_open_as_clusters(tmp_path):
    """ViT-B/16's encoder opens at depth 1 and its repeat of encoder blocks is one 'x 12' box;
    at depth 2 the twelve identical blocks fold into one; at depth 3 each is a cluster with its
    two residual adds drawn as skips."""
    analysis = archspec.analyze(SPECS / "vit_b_16.yaml")
    layers = "encoder.layers"
    pic = parse_svg(render_analysis(analysis, tmp_path / "vit1.svg", depth=1))
    assert pic.nodes[layers].texts[0] == "encoder block x 12"
    assert "197x768" in pic.nodes[layers].texts and "85.05 M params" in pic.nodes[layers].texts
    assert set(pic.clusters) == {"cluster_encoder", "cluster_heads"}

    fold = f"{layers}.encoder_layer_0..{layers}.encoder_layer_11"
    pic = parse_svg(render_analysis(analysis, tmp_path / "vit2.svg", depth=2))
    assert pic.nodes[fold].texts[0] == "encoder block x 12" and "fold" in pic.nodes[fold].classes

    pic = parse_svg(render_analysis(analysis, tmp_path / "vit3.svg", depth=3))
    blocks = {f"cluster_{layers}.encoder_layer_{i}" for i in range(12)}
    assert blocks <= set(pic.clusters) and "encoder block" in pic.clusters[min(blocks)].texts[0]
    first = f"{layers}.encoder_layer_0"
    assert {f"{first}.ln_1", f"{first}.self_attention", f"{first}.mlp"} <= set(pic.nodes)
    assert (f"{first}.attention_residual", f"{first}.mlp_residual") in pic.edge_pairs("skip")
    assert len(pic.edge_pairs("skip")) == 24


ZOO = sorted(SPECS.glob("*.yaml"))


@pytest.mark.parametrize("spec", ZOO, ids=[p.stem for p in ZOO])
def test_every_zoo_spec_renders(spec, tmp_path):
    analysis = archspec.analyze(spec)
    pic = parse_svg(render_analysis(analysis, tmp_path / "full.svg"))
    assert set(pic.nodes) == visible_layers(analysis) | {"input"}
    for name in pic.nodes.keys() - {"input"}:
        assert pic.nodes[name].texts[0] == analysis.layers[name].label
    top = parse_svg(render_analysis(analysis, tmp_path / "top.svg", depth=0))
    assert 2 <= len(top.nodes) <= len(pic.nodes)


# ---------------------------------------------------------------------------------- formats

def test_png_pdf_and_dot_formats(tmp_path):
    runner = CliRunner()
    spec = str(MULTIPATH)
    for name, magic in (("d.png", b"\x89PNG\r\n\x1a\n"), ("d.pdf", b"%PDF-"),
                        ("d.svg", b"<?xml")):
        result = runner.invoke(main, ["diagram", spec, "-o", str(tmp_path / name), "--depth", "1"])
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).read_bytes().startswith(magic)
    result = runner.invoke(main, ["diagram", spec, "-o", str(tmp_path / "d.dot")])
    assert result.exit_code == 0, result.output
    source = (tmp_path / "d.dot").read_text(encoding="utf-8")
    assert source.startswith('digraph "tiny-resnet"') and '"cluster_layer1.0"' in source
    # --format wins over the suffix; an unknown suffix needs --format
    result = runner.invoke(main, ["diagram", spec, "-o", str(tmp_path / "pic.img"),
                                  "--format", "png"])
    assert result.exit_code == 0 and (tmp_path / "pic.img").read_bytes()[:4] == b"\x89PNG"
    result = runner.invoke(main, ["diagram", spec, "-o", str(tmp_path / "pic.jpeg")])
    assert result.exit_code == 1 and "--format" in result.output
    assert not (tmp_path / "pic.jpeg").exists()


def test_python_api_returns_text_or_bytes_without_a_file():
    assert archspec.render(SPECS / "lenet5.yaml").startswith("<?xml")
    assert archspec.render(SPECS / "lenet5.yaml", format="png")[:4] == b"\x89PNG"
    source = archspec.render(SPECS / "lenet5.yaml", format="dot", rankdir="LR")
    assert "rankdir=LR" in source and "conv1 -> tanh1" in source


def test_cli_options(tmp_path):
    out = tmp_path / "o.svg"
    result = CliRunner().invoke(main, ["diagram", str(MULTIPATH), "-o", str(out), "--depth", "1",
                                       "--no-fold", "--params", "--rankdir", "lr",
                                       "--no-legend"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    pic = parse_svg(out.read_text(encoding="utf-8"))
    assert {"layer1.0", "layer1.1"} <= set(pic.nodes) and pic.width > pic.height / 3
    assert "264 params" in pic.nodes["inception1.branch1.conv1"].texts  # (32 + 1) * 8
    assert "skip" not in pic.texts and "conv" not in pic.texts  # no legend


# ---------------------------------------------------------------------------------- failures

INSTALL = ("apt-get install graphviz", "brew install graphviz")


def test_without_dot_only_the_dot_format_works(tmp_path):
    env = dict(os.environ, ARCHSPEC_DOT=str(tmp_path / "no-such-dot"))
    ok = cli("diagram", SPECS / "lenet5.yaml", "-o", tmp_path / "l.dot", env=env)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "l.dot").read_text().startswith("digraph lenet5 {")
    for fmt in ("svg", "png", "pdf"):
        out = tmp_path / f"l.{fmt}"
        bad = cli("diagram", SPECS / "lenet5.yaml", "-o", out, env=env)
        assert bad.returncode == 1
        assert "Traceback" not in bad.stderr and "dot" in bad.stderr
        for hint in INSTALL:
            assert hint in bad.stderr
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.dot"]  # no temp files left
    with pytest.raises(RenderError, match="apt-get install graphviz"):
        archspec.render(SPECS / "lenet5.yaml", tmp_path / "api.svg", dot=tmp_path / "nope")
    assert not (tmp_path / "api.svg").exists()


def test_a_failing_dot_leaves_no_file_and_keeps_the_old_one(tmp_path):
    fake = tmp_path / "fake-dot"
    fake.write_text("#!/bin/sh\ncat >/dev/null\necho '<svg partial'\necho 'Error: boom' >&2\n"
                    "exit 3\n")
    fake.chmod(0o755)
    out = tmp_path / "pic.svg"
    with pytest.raises(RenderError, match="boom"):
        archspec.render(SPECS / "lenet5.yaml", out, dot=fake)
    assert not out.exists()
    out.write_text("old picture")
    result = CliRunner().invoke(main, ["diagram", str(SPECS / "lenet5.yaml"), "-o", str(out),
                                       "--dot", str(fake)])
    assert result.exit_code == 1 and "boom" in result.output
    assert out.read_text() == "old picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake-dot", "pic.svg"]


def test_spec_errors_and_the_input_spec_are_safe(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text("name: bad\ninput: [1, 8, 8]\nlayers:\n  - {type: conv, out_channels: 4, "
                    "kernel_size: 9}\n")
    result = cli("diagram", spec, "-o", tmp_path / "bad.svg")
    assert result.returncode == 1 and "error" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bad.svg").exists()
    text = (SPECS / "lenet5.yaml").read_text()
    spec.write_text(text)
    result = cli("diagram", spec, "-o", spec, "--format", "svg")
    assert result.returncode == 1 and "overwrite" in result.stderr
    with pytest.raises(RenderError, match="overwrite"):
        archspec.render(spec, spec, format="svg")
    assert spec.read_text() == text


def test_bad_options_are_clear_errors():
    analysis = archspec.analyze(SPECS / "lenet5.yaml")
    with pytest.raises(RenderError, match="depth"):
        build_model(analysis, depth=-1)
    with pytest.raises(RenderError, match="rankdir"):
        to_dot(build_model(analysis), rankdir="XY")
    with pytest.raises(RenderError, match="format"):
        render_analysis(analysis, format="gif")


def test_diagram_does_not_import_torch(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "archspec", "diagram",
                             SPECS / "lenet5.yaml", "-o", tmp_path / "l.svg"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    imported = re.findall(r"^import time:.*\|\s*(\S+)\s*$", result.stderr, re.MULTILINE)
    assert imported and not [m for m in imported if "torch" in m]
