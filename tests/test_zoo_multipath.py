"""Issue 4's zoo (multi-path networks) against outside figures and against PyTorch.

Parameter and buffer totals come from REFERENCE.md (torchvision's model definitions, the
GoogLeNet paper); the other figures are derived by hand below, never read off our own output.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import archspec
from archspec.backends.verify import mismatches

SPECS = Path(__file__).resolve().parent.parent / "specs"
ALL_SPECS = sorted(SPECS.glob("*.yaml"))


def analysis(name: str) -> archspec.Analysis:
    return archspec.analyze(SPECS / f"{name}.yaml")


def bn(c: int) -> tuple[int, int]:
    """(params, buffers) of a batch norm over c channels."""
    return 2 * c, 2 * c + 1


# ---- GoogLeNet (paper) ---------------------------------------------------------------------

def test_googlenet_paper_matches_the_paper():
    a = analysis("googlenet_paper")
    assert a.params == 6_998_552          # REFERENCE.md
    assert a.buffers == 0                 # no batch norm
    assert a.output_shapes == [(1000,)]
    # Table 1 of the paper: output size of every inception module.
    expected = {"3a": (256, 28), "3b": (480, 28), "4a": (512, 14), "4b": (512, 14),
                "4c": (512, 14), "4d": (528, 14), "4e": (832, 14), "5a": (832, 7),
                "5b": (1024, 7)}
    for module, (channels, size) in expected.items():
        assert a.layers[f"inception{module}.concat"].output_shape == (channels, size, size)
    # The 5x5 branch is a true 5x5 conv (torchvision's variant uses 3x3 there).
    assert a.layers["inception3a.branch3.conv"].params == 16 * 25 * 32 + 32
    assert a.layers["avgpool"].output_shape == (1024, 1, 1)
    drop = a.network.nodes["dropout"].cfg
    assert drop.p == 0.4


def test_googlenet_paper_runs_like_its_analysis():
    assert mismatches(analysis("googlenet_paper"), device="meta") == []


# ---- ResNet-18 ------------------------------------------------------------------------------

def resnet18_macs_by_hand() -> int:
    """Convolutions, projection shortcuts and the classifier of torchvision's resnet18 at 224."""
    macs = 64 * 112 * 112 * 3 * 7 * 7                     # conv1
    c_in = 64
    for c, hw in ((64, 56), (128, 28), (256, 14), (512, 7)):
        out = c * hw * hw
        macs += out * c_in * 9 + 3 * out * c * 9         # four 3x3 convs per stage
        if c_in != c:
            macs += out * c_in                            # 1x1 downsample shortcut
        c_in = c
    return macs + 512 * 1000                              # fc


def test_resnet18_reference_figures():
    a = analysis("resnet18")
    assert a.params == 11_689_512
    assert a.buffers == 9_620
    assert a.macs == resnet18_macs_by_hand()
    assert abs(a.macs - 1.81e9) / 1.81e9 < 0.01           # REFERENCE.md: about 1.81 G
    assert a.output_shapes == [(1000,)]
    assert a.layers["layer4.1.add"].output_shape == (512, 7, 7)


def test_resnet18_runs_on_cpu_like_its_analysis():
    a = analysis("resnet18")
    assert mismatches(a, device="cpu", batch_size=1) == []


def test_resnet18_module_names_follow_torchvision():
    model = archspec.compile(SPECS / "resnet18.yaml", device="meta")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer1.0.conv1.weight"] == (64, 64, 3, 3)
    assert shapes["layer2.0.conv1.weight"] == (128, 64, 3, 3)
    assert shapes["layer4.1.bn2.running_var"] == (512,)
    assert shapes["fc.weight"] == (1000, 512)


# ---- ResNet-50 ------------------------------------------------------------------------------

def test_resnet50_reference_figures_and_runtime():
    a = analysis("resnet50")
    assert a.params == 25_557_032
    # v1.5: the stride sits on the 3x3 conv of the first bottleneck of stages 2-4
    assert a.layers["layer2.0.conv1"].output_shape == (128, 56, 56)
    assert a.layers["layer2.0.conv2"].output_shape == (128, 28, 28)
    # every stage's first block projects (layer1 too: 64 -> 256 channels), no other block does
    projected = sorted(i.name for i in a.layers.values()
                       if i.type == "projection" and i.params > 0)
    assert projected == ["layer1.0.shortcut", "layer2.0.shortcut", "layer3.0.shortcut",
                         "layer4.0.shortcut"]
    assert a.output_shapes == [(1000,)]
    assert mismatches(a, device="meta") == []


# ---- MobileNetV2 ----------------------------------------------------------------------------

def test_mobilenet_v2_reference_figures_and_runtime():
    a = analysis("mobilenet_v2")
    assert a.params == 3_504_872
    # identity skips exactly where stride is 1 and channels are kept: the repeats of each
    # (t, c, n, s) row after its first block: 1 + 2 + 3 + 2 + 2 + 0 = 10 additions
    adds = [i.name for i in a.layers.values() if i.type == "add"]
    assert adds == [f"features.{n}.add" for n in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]
    assert a.layers["features.18.2"].output_shape == (1280, 7, 7)
    assert a.output_shapes == [(1000,)]
    assert mismatches(a, device="cpu", batch_size=1) == []


# ---- small U-Net ----------------------------------------------------------------------------

def unet_params_by_hand() -> tuple[int, int]:
    params = buffers = 0

    def double_conv(c_in, c):
        nonlocal params, buffers
        params += c_in * 9 * c + c * 9 * c                 # two bias-free 3x3 convs
        p, b = bn(c)
        params, buffers = params + 2 * p, buffers + 2 * b

    double_conv(1, 16), double_conv(16, 32), double_conv(32, 64), double_conv(64, 128)
    for c_in, c in ((128, 64), (64, 32), (32, 16)):
        params += c_in * c * 2 * 2 + c                     # transposed 2x2 conv with bias
        double_conv(2 * c, c)                              # after concatenating the skip
    params += 16 * 2 + 2                                   # 1x1 head
    return params, buffers


def test_unet_small_shapes_counts_and_runtime():
    a = analysis("unet_small")
    assert (a.params, a.buffers) == unet_params_by_hand()
    assert a.output_shapes == [(2, 64, 64)]
    for level, (c, hw) in {"3": (128, 16), "2": (64, 32), "1": (32, 64)}.items():
        cat = a.layers[f"cat{level}"]
        assert cat.output_shape == (c, hw, hw)
        assert cat.inputs == [f"up{level}", f"enc{level}.relu2"]   # from: [upN, encN]
    assert mismatches(a, device="cpu") == []


# ---- 1-D audio ResNet -----------------------------------------------------------------------

def test_resnet1d_audio_shapes_and_runtime():
    a = analysis("resnet1d_audio")
    # stem: floor((16000 + 2*32 - 80) / 16) + 1 = 1000, pooled by 4 -> 250; then halvings
    assert a.layers["conv1"].output_shape == (32, 1000)
    assert a.layers["maxpool"].output_shape == (32, 250)
    assert a.layers["layer2.1.add"].output_shape == (64, 125)
    assert a.layers["layer3.1.add"].output_shape == (128, 63)
    assert a.layers["layer4.1.add"].output_shape == (256, 32)
    assert a.output_shapes == [(35,)]
    assert a.layers["conv1"].receptive_field.size == (80,)
    assert mismatches(a, device="cpu") == []


# ---- every spec in the zoo, including those added later -------------------------------------

@pytest.mark.parametrize("path", ALL_SPECS, ids=[p.stem for p in ALL_SPECS])
def test_every_spec_matches_pytorch_on_meta(path):
    assert mismatches(archspec.analyze(path), device="meta") == []


# ---- multi-path mistakes: clear errors at file:line:col -------------------------------------
# Each spec starts at line 1; columns are 1-based and were counted by hand.

def only_error(spec: str) -> archspec.Diagnostic:
    with pytest.raises(archspec.SpecError) as caught:
        archspec.analyze(archspec.loads(spec))
    assert len(caught.value.diagnostics) == 1, caught.value
    return caught.value.diagnostics[0]


def where(d: archspec.Diagnostic) -> tuple:
    return d.file, d.line, d.column


def test_add_of_different_shapes():
    d = only_error("""name: bad_add
input: [3, 16, 16]
layers:
  - {type: conv, name: a, out_channels: 8, kernel_size: 3, padding: 1}
  - {type: conv, name: b, out_channels: 8, kernel_size: 3, stride: 2, padding: 1}
  - {type: add, name: sum, from: [a, b]}
""")
    assert where(d) == ("<string>", 6, 5)      # the add's mapping
    assert d.layer == "sum"
    assert d.message == "add needs inputs of one shape, got 8x16x16, 8x8x8"
    assert "input 'b': 8x8x8" in d.notes
    assert "<string>:6:5: error: add needs inputs of one shape" in d.format()


def test_residual_whose_body_changes_the_shape_needs_a_projection():
    d = only_error("""name: bad_residual
input: [8, 16, 16]
layers:
  - type: residual
    name: down
    layers:
      - {type: conv, out_channels: 16, kernel_size: 3, stride: 2, padding: 1}
""")
    assert where(d) == ("<string>", 4, 5)      # 'type: residual'
    assert d.layer == "down.add"
    assert d.message == "add needs inputs of one shape, got 16x8x8, 8x16x16"
    assert "shortcut: projection" in d.hint


def test_concat_of_different_spatial_sizes():
    d = only_error("""name: bad_concat
input: [3, 16, 16]
layers:
  - {type: conv, name: full, out_channels: 4, kernel_size: 3, padding: 1}
  - {type: max_pool, name: pooled, kernel_size: 2}
  - {type: concat, name: joined, from: [full, pooled]}
""")
    assert where(d) == ("<string>", 6, 5)
    assert d.layer == "joined"
    assert d.message == "concat along dim 1 needs equal sizes in dim 2, got 4x16x16, 4x8x8"


def test_inception_branches_of_different_spatial_sizes():
    d = only_error("""name: bad_inception
input: [3, 16, 16]
layers:
  - type: inception
    name: mixed
    branches:
      - [{type: conv, out_channels: 8, kernel_size: 1}]
      - [{type: conv, out_channels: 8, kernel_size: 3}]
""")
    assert where(d) == ("<string>", 4, 5)
    assert d.layer == "mixed.concat"
    assert "got 8x16x16, 8x14x14" in d.message
    assert "input 'mixed.branch2.conv1': 8x14x14" in d.notes


def test_dangling_from_reference():
    d = only_error("""name: dangling
input: [3, 16, 16]
layers:
  - {type: conv, name: stem, out_channels: 8, kernel_size: 3, padding: 1}
  - {type: concat, from: [stem, stme]}
""")
    assert where(d) == ("<string>", 5, 33)     # the misspelt name itself
    assert d.message == "no layer named 'stme' is visible here"
    assert d.hint == "did you mean 'stem'?"


def test_dangling_from_on_a_block():
    d = only_error("""name: dangling_block
input: [3, 16, 16]
layers:
  - {type: conv, name: stem, out_channels: 8, kernel_size: 3, padding: 1}
  - type: residual
    from: steam
    layers: [{type: conv, out_channels: 8, kernel_size: 3, padding: 1}]
""")
    assert where(d) == ("<string>", 6, 11)
    assert d.message == "no layer named 'steam' is visible here"


@pytest.mark.parametrize("spec, line, column, name, block", [
    ("""name: into_residual
input: [3, 16, 16]
layers:
  - type: residual
    name: block
    layers:
      - {type: conv, name: inner, out_channels: 3, kernel_size: 3, padding: 1}
      - relu
  - {type: concat, from: [block, inner]}
""", 9, 34, "inner", "block"),
    ("""name: into_user_block
input: [3, 16, 16]
blocks:
  unit:
    params: {c: ~}
    layers:
      - {type: conv, name: squeeze, out_channels: $c, kernel_size: 1}
      - {type: conv, name: expand, out_channels: $c * 2, kernel_size: 3, padding: 1}
layers:
  - {type: unit, name: u1, c: 4}
  - {type: add, from: [u1, squeeze]}
""", 11, 28, "squeeze", "u1"),
    ("""name: into_sibling_branch
input: [3, 16, 16]
layers:
  - type: branches
    name: split
    branches:
      - [{type: conv, name: left, out_channels: 4, kernel_size: 1}]
      - [{type: conv, name: right, out_channels: 4, kernel_size: 1, from: left}]
""", 8, 75, "left", "split.branch1"),
], ids=["residual", "user-block", "sibling-branch"])
def test_reference_into_a_blocks_private_scope(spec, line, column, name, block):
    d = only_error(spec)
    assert where(d) == ("<string>", line, column)
    assert d.message == f"'{name}' is inside block '{block}' and not visible here"
    assert "private" in d.hint


def test_forward_reference_would_make_a_cycle():
    d = only_error("""name: cycle
input: [3, 16, 16]
layers:
  - {type: conv, name: a, out_channels: 8, kernel_size: 3, padding: 1, from: b}
  - {type: conv, name: b, out_channels: 8, kernel_size: 3, padding: 1, from: a}
""")
    assert where(d) == ("<string>", 4, 78)     # the 'b' after 'from:'
    assert d.message == ("'b' is defined further down; a layer can only take inputs from "
                         "layers above it")
    assert "cycles are not allowed" in d.hint
