"""Open input sizes: the valid sets and shape formulas archspec.sizes derives equal a
brute-force scan through the concrete analysis (archspec.analyze at every size, one open size at
a time with the others held at the spec's own size), and PyTorch agrees at sampled sizes.

The brute force defines validity as the analysis does, plus one rule of `archspec sizes` for a
spec whose own input is concrete: every layer keeps the parameter count it has at that input
(one set of weights serves every size), so flatten + dense pins the sizes.
"""
from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archspec
from archspec.analysis import analyze
from archspec.backends.sizes_report import open_spatial, sizes_report, statement
from archspec.errors import SpecError
from archspec.sizes import scan_open_sizes, shape_formulas, with_size

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def brute_force(network, name: str, upto: int, reference: bool = True):
    """{n: output shapes by layer, or None} for n in 1..upto, through archspec.analyze."""
    size = network.open_sizes[name]
    ref_params = None
    if reference and size.reference is not None:
        ref_params = {k: v.params for k, v in analyze(network).layers.items()}
    found = {}
    for n in range(1, upto + 1):
        shape = with_size(network.input_shape, size.axes, n)
        try:
            a = analyze(replace(network, input_shape=shape))
        except SpecError:
            found[n] = None
            continue
        if ref_params is not None and any(ref_params[k] != v.params for k, v in a.layers.items()):
            found[n] = None
        else:
            found[n] = {k: v.output_shape for k, v in a.layers.items()}
    return found


def value_of(formula_text: str, name: str, n: int) -> Fraction:
    return Fraction(eval(formula_text, {"floor": math.floor, "ceil": math.ceil,
                                        name: Fraction(n)}))


def assert_matches(network, upto: int, layers: list[str] | None = None):
    scans = scan_open_sizes(network)
    for name, result in scans.items():
        truth = brute_force(network, name, upto)
        size = network.open_sizes[name]
        derived = {n for n in truth if result.valid(n)}
        actual = {n for n, v in truth.items() if v is not None and size.min <= n <= (size.max or n)}
        assert derived == actual, (name, statement(result), sorted(actual)[:40])
        for layer in layers or network.outputs:
            formulas = shape_formulas(result, layer)
            for n in sorted(actual):
                for axis, f in enumerate(formulas):
                    got = truth[n][layer][axis]
                    if f.text is not None:
                        assert value_of(f.text, name, n) == got, (layer, f.text, n, got)
                    else:  # a table per class of the period
                        assert f.at(n) == got, (layer, f, n, got)
    return scans


# ---- the acceptance examples ----------------------------------------------------------------

def test_unet_sizes_must_be_multiples_of_8():
    net = archspec.load(SPECS / "unet_small.yaml", input_shape=[1, "H", "W"])
    scans = assert_matches(net, 1024, ["cat3", "cat1", "head"])
    assert statement(scans["H"]) == "H % 8 == 0" and statement(scans["W"]) == "W % 8 == 0"
    assert scans["H"].smallest == 8


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "archspec", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, check=False)


def test_cli_sizes_and_check_at_a_breaking_size():
    done = run_cli("sizes", "specs/unet_small.yaml", "--input", "1xHxW")
    assert done.returncode == 0, done.stderr
    assert "H % 8 == 0" in done.stdout and "W % 8 == 0" in done.stdout
    broken = run_cli("check", "specs/unet_small.yaml", "--input", "1x60x64")
    assert broken.returncode == 1
    first = broken.stderr.splitlines()[0]
    assert first.startswith("specs/unet_small.yaml:31:5: error: at 60x64, concat")
    assert "H must be a multiple of 8" in first and "(layer 'cat3')" in first
    assert "use H = 56 or 64" in broken.stderr


def test_input_overrides_the_spec_input_on_every_command(tmp_path):
    """--input 1x56x72 replaces the spec's 1x64x64 in check, sizes, diagram and export."""
    done = run_cli("check", "specs/unet_small.yaml", "--input", "1x56x72")
    assert done.returncode == 0 and "input 1x56x72 -> output 2x56x72" in done.stdout
    done = run_cli("sizes", "specs/unet_small.yaml", "--input", "1x56x72", "--json")
    import json
    doc = json.loads(done.stdout)
    assert doc["at"] == {"H": 56, "W": 72} and doc["at_valid"]
    done = run_cli("diagram", "specs/unet_small.yaml", "--input", "1x56x72", "-o",
                   str(tmp_path / "u.dot"))
    assert done.returncode == 0 and "56x72" in (tmp_path / "u.dot").read_text()


def test_lenet_flatten_pins_the_sizes():
    """LeNet's dense after the flatten takes 400 features: 16 x 5 x 5, so H in 32..35 (with
    W = 32): pool2 = floor((floor((H - 4) / 2) - 4) / 2) = 5."""
    net = open_spatial(archspec.load(SPECS / "lenet5.yaml"))
    scans = assert_matches(net, 200)
    assert statement(scans["H"]) == "H in {32..35}"


def test_resnet50_any_size_and_macs_formula():
    """ResNet-50: every stride-2 step is ceil(n / 2) on both paths of a block, so any size
    works; at multiples of 32 each layer's map is H/s x W/s, so MACs = k H W + c, with c the
    2048 x 1000 dense (torchvision's 4.09 GMACs at 224)."""
    net = open_spatial(archspec.load(SPECS / "resnet50.yaml"))
    report = sizes_report(net)
    assert statement(report.scans["H"]) == "any H"
    macs = report.figures["macs"].coeffs
    assert set(macs) == {(1, 1), (0, 0)} and macs[(0, 0)] == 2048 * 1000
    assert macs[(1, 1)] * 224 * 224 + 2048 * 1000 == 4_089_184_256


def test_inception_v3_needs_75():
    """torchvision: 'expects tensors with a size of N x 3 x 299 x 299'; the smallest that runs
    is 75 (PyTorch issue threads and the stem's arithmetic: 75 -> 37 -> 35 -> 17 -> 15 -> 7 ->
    3 -> 1)."""
    net = open_spatial(archspec.load(SPECS / "inception_v3.yaml"))
    scans = scan_open_sizes(net)
    assert statement(scans["H"]) == "any H >= 75"


def test_sizes_and_check_with_open_sizes_do_not_import_torch():
    probe = ("import sys\nfrom archspec.cli import main\n"
             "for args in (['sizes', 'specs/unet_small.yaml'], "
             "['check', 'specs/unet_small.yaml', '--input', '1xHxW']):\n"
             "    try:\n        main(args)\n    except SystemExit as exc:\n"
             "        assert exc.code == 0, args\n"
             "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          cwd=ROOT, timeout=300, check=False)
    assert "TORCH False" in done.stderr, done.stderr


# ---- random conv/pool chains ---------------------------------------------------------------

@st.composite
def window_layer(draw):
    kind = draw(st.sampled_from(["conv", "conv", "max_pool", "avg_pool", "conv_transpose",
                                 "upsample", "relu"]))
    if kind == "conv":
        k = draw(st.integers(1, 5))
        layer = {"type": "conv", "out_channels": 2, "kernel_size": k,
                 "stride": draw(st.integers(1, 3)), "dilation": draw(st.integers(1, 2))}
        layer["padding"] = draw(st.sampled_from([0, 1, 2, "same"]))
        return layer
    if kind in ("max_pool", "avg_pool"):
        k = draw(st.integers(1, 3))
        return {"type": kind, "kernel_size": k, "stride": draw(st.integers(1, 3)),
                "padding": draw(st.integers(0, k // 2)), "ceil_mode": draw(st.booleans())}
    if kind == "conv_transpose":
        s = draw(st.integers(1, 2))
        return {"type": kind, "out_channels": 2, "kernel_size": draw(st.integers(1, 3)),
                "stride": s, "output_padding": draw(st.integers(0, s - 1))}
    if kind == "upsample":
        return {"type": "upsample", "scale_factor": 2}
    return {"type": "relu"}


@st.composite
def chain_specs(draw):
    """A 1-D chain of windows and upsamplings, sometimes joined to an earlier layer's output
    (add or concat), so joins put equal-length conditions on the sizes."""
    layers = []
    for i in range(draw(st.integers(1, 6))):
        layer = dict(draw(window_layer()), name=f"l{i}")
        if layer["type"] in ("max_pool", "avg_pool", "relu", "upsample"):
            layer = {k: v for k, v in layer.items()}
        layers.append(layer)
    if len(layers) >= 3 and draw(st.booleans()):
        j = draw(st.integers(0, len(layers) - 2))
        merge = draw(st.sampled_from(["add", "concat"]))
        layers.insert(0, {"type": "conv", "name": "stem", "out_channels": 2, "kernel_size": 1})
        earlier = "stem" if j == 0 else layers[j]["name"]
        layers.append({"type": merge, "name": "join", "from": [layers[-1]["name"], earlier]})
    return {"name": "chain", "input": [2, "L"], "layers": layers}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain_specs())
def test_random_chains_match_a_brute_force_scan(spec):
    """Sizes 1..300 (not 1024: each example is 300 analyses, and a chain's period is at most
    3^6 = 729 while its valid set settles well below 300 for these kernels and paddings)."""
    net = archspec.loads(yaml.safe_dump(spec, sort_keys=False))
    assert_matches(net, 300, list(net.nodes))


# ---- the zoo -----------------------------------------------------------------------------

def zoo_specs():
    out = []
    for path in sorted(SPECS.glob("*.yaml")):
        net = archspec.load(path)
        if open_spatial(net).open_sizes:
            out.append(pytest.param(path.name, id=path.stem))
    return out


FULL_SCAN = {"convnet1.yaml", "edges.yaml", "fc_400x600.yaml", "lenet5.yaml",
             "lenet5_padded.yaml", "lstm_text_classifier.yaml", "signal1d.yaml",
             "unet_small.yaml", "vgg.yaml"}


@pytest.mark.parametrize("name", zoo_specs())
def test_zoo_valid_sets_and_output_shapes_match_a_brute_force_scan(name):
    """The small specs (an analysis in about a millisecond): every size 1..1024 of every open
    dim. The others take 10-75 ms a size, so 1024 sizes of each dim would take minutes; they
    are scanned over every size up to where the derivation stops checking (two periods past
    the last change) plus one more period, for H (or L) with W held; their W behaves as H in
    every zoo spec (inception_v3's 1x7 and 7x1 convs come in pairs)."""
    net = open_spatial(archspec.load(SPECS / name))
    scans = scan_open_sizes(net)
    small = name in FULL_SCAN
    for dim, result in scans.items():
        if not small and dim != next(iter(scans)):
            continue
        upto = 1024 if small else result.checked_to + result.known_period
        truth = brute_force(net, dim, upto)
        actual = {n for n, v in truth.items() if v is not None}
        assert {n for n in truth if result.valid(n)} == actual, (dim, statement(result))
        for out in net.outputs:
            formulas = shape_formulas(result, out)
            for n in actual:
                assert tuple(f.at(n) if f.text is None else value_of(f.text, dim, n)
                             for f in formulas) == truth[n][out], (out, n)


SAMPLED = {"unet_small.yaml": [8, 16, 24, 40, 60, 63, 12], "signal1d.yaml": [3, 4, 5, 6, 77],
           "lenet5.yaml": [31, 32, 35, 36], "squeezenet1_1.yaml": [16, 17, 18, 31],
           "resnet18.yaml": [1, 2, 33, 47]}


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_pytorch_runs_exactly_the_valid_sizes(name):
    """At sizes of the first open dim the derivation calls valid, the model compiled at that
    size runs and gives the output shape of the formula; at the others, the model compiled at
    the spec's own size raises. (Compiled per size: a strided 'same' conv is padded for the
    size it is built at, as TensorFlow pads.)"""
    torch = pytest.importorskip("torch")
    net = open_spatial(archspec.load(SPECS / name))
    model = archspec.compile(net).eval()
    dim, result = next(iter(scan_open_sizes(net).items()))
    axes = net.open_sizes[dim].axes
    formulas = shape_formulas(result, net.outputs[0])
    for n in SAMPLED[name]:
        shape = with_size(net.input_shape, axes, n)
        x = torch.zeros((1, *shape))
        if result.valid(n):
            with torch.no_grad():
                y = archspec.compile(replace(net, input_shape=shape)).eval()(x)
            want = tuple(f.at(n) if f.text is None else value_of(f.text, dim, n)
                         for f in formulas)
            assert tuple(y.shape[1:]) == want, (n, tuple(y.shape))
        else:
            with pytest.raises(RuntimeError), torch.no_grad():
                model(x)


def test_ranges_bound_the_valid_set_and_attention_macs_are_quadratic():
    """A declared range bounds the statement; self-attention's Q K^T and A V are L x L x E
    each (2 x 32 L^2), its projections 4 x 32 x 32 per position and the dense 32 x 8."""
    net = archspec.loads("name: r\ninput: {shape: [3, H, W], sizes: {H: {min: 32, max: 512}}}\n"
                         "layers:\n  - {type: conv, out_channels: 8, kernel_size: 3, stride: 2}\n"
                         "  - global_avg_pool\n")
    scans = assert_matches(net, 600)
    assert statement(scans["H"]) == "32 <= H <= 512" and scans["H"].smallest == 32
    tokens = archspec.loads("name: t\ninput: {shape: [L, 32], layout: tokens}\nlayers:\n"
                            "  - {type: multi_head_attention, num_heads: 4}\n"
                            "  - {type: dense, out_features: 8}\n")
    report = sizes_report(tokens)
    assert report.figures["macs"].coeffs == {(2,): 64, (1,): 4 * 32 * 32 + 32 * 8}


def test_torch_export_takes_the_open_sizes_with_their_constraints(tmp_path):
    """--input 1xHxW: the .pt2 program takes H, W as 8 x Dim (min 2: torch.export
    specialises 1), runs at other multiples of 8 and refuses 60."""
    torch = pytest.importorskip("torch")
    out = tmp_path / "u.pt2"
    done = run_cli("export", "specs/unet_small.yaml", "--input", "1xHxW", "--to", "torch-export",
                   "-o", str(out))
    assert done.returncode == 0, done.stderr
    model = torch.export.load(str(out)).module()
    for h, w in ((16, 24), (40, 72)):
        assert tuple(model(torch.zeros(2, 1, h, w)).shape) == (2, 2, h, w)
    with pytest.raises(AssertionError, match="Guard failed"):
        model(torch.zeros(1, 1, 60, 64))
