"""What a name means: a layer's name is its output as the user sees it, qualified names reach
into blocks in from: and outputs: alike, and a layer never reads itself or its own block."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import archspec
from archspec.cli import main
from archspec.errors import SpecError

ACTIVATED = """
name: act
input: [3, 8, 8]
layers:
  - {type: conv, name: a, out_channels: 4, kernel_size: 1, activation: relu}
  - {type: conv, name: b, out_channels: 4, kernel_size: 1, from: input}
  - {type: add, from: [a, b]}
outputs: [add1, a]
"""


def errors(text: str):
    with pytest.raises(SpecError) as info:
        archspec.analyze(archspec.loads(text))
    return info.value.diagnostics


def only_error(text: str):
    [d] = errors(text)
    assert d.hint, d
    return d


def test_a_layer_name_with_activation_shorthand_means_the_activated_output():
    model = archspec.compile(archspec.loads(ACTIVATED))
    assert list(model.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias"]
    x = torch.randn(5, 3, 8, 8)
    total, a = model(x)
    sd = model.state_dict()
    a_expected = F.relu(F.conv2d(x, sd["a.weight"], sd["a.bias"]))   # derived here, by hand
    b_expected = F.conv2d(x, sd["b.weight"], sd["b.bias"])
    assert torch.allclose(a, a_expected, atol=1e-6)
    assert torch.allclose(total, a_expected + b_expected, atol=1e-6)
    assert (a >= 0).all() and (a == 0).any()  # the ReLU really ran on what 'a' returns


def test_the_table_json_and_diagram_show_the_add_reading_the_activation(tmp_path):
    spec = tmp_path / "act.yaml"
    spec.write_text(ACTIVATED)
    result = CliRunner().invoke(main, ["check", "--json", str(spec)])
    doc = json.loads(result.stdout)
    inputs = {layer["name"]: layer["inputs"] for layer in doc["layers"]}
    assert inputs["add1"] == ["relu1", "b"] and inputs["relu1"] == ["a"]
    dot = tmp_path / "act.dot"
    result = CliRunner().invoke(main, ["diagram", str(spec), "-o", str(dot)])
    assert result.exit_code == 0, result.output
    edges = dot.read_text()
    assert "relu1 -> add1" in edges and "a -> add1" not in edges


SCOPED = """
name: scoped
input: [3, 8, 8]
layers:
  - type: sequential
    name: b1
    layers:
      - {type: conv, name: c1, out_channels: 4, kernel_size: 1, activation: relu}
      - {type: conv, name: c2, out_channels: 4, kernel_size: 1}
  - {type: concat, from: [b1.c1, b1]}
outputs: [concat1, b1.c1, b1]
"""


def test_qualified_names_reach_into_blocks_in_from_and_outputs_alike():
    model = archspec.compile(archspec.loads(SCOPED))
    x = torch.randn(2, 3, 8, 8)
    cat, c1, b1 = model(x)
    sd = model.state_dict()
    c1_expected = F.relu(F.conv2d(x, sd["b1.c1.weight"], sd["b1.c1.bias"]))
    assert torch.allclose(c1, c1_expected, atol=1e-6)  # b1.c1 is c1's activated output
    assert torch.allclose(b1, F.conv2d(c1_expected, sd["b1.c2.weight"], sd["b1.c2.bias"]),
                          atol=1e-6)
    assert torch.equal(cat, torch.cat([c1, b1], 1))


def test_qualified_names_reach_through_repeats_and_user_blocks():
    spec = """
name: deep
input: [3, 8, 8]
blocks:
  unit:
    layers:
      - {type: conv, name: squeeze, out_channels: 2, kernel_size: 1}
      - {type: conv, name: expand, out_channels: 3, kernel_size: 1}
layers:
  - {type: repeat, name: stage, times: 2, layers: [{type: unit}]}
  - {type: add, from: [stage.0.expand, stage.1.squeeze]}
"""
    d = only_error(spec)  # 3 and 2 channels: the names reached the right layers
    assert "add needs inputs of one shape, got 3x8x8, 2x8x8" in d.message
    analysis = archspec.analyze(archspec.loads(spec.replace("stage.1.squeeze", "stage")))
    assert analysis.layers["add1"].inputs == ["stage.0.expand", "stage.1.expand"]


@pytest.mark.parametrize("ref, message, hint", [
    ("b1.c9", "block 'b1' has no layer named 'c9'", "its layers: c1, relu1, c2"),
    ("b1.c1.w", "'b1.c1' is a layer, not a block: it has no layer 'w'", "write 'b1.c1'"),
    ("c1", "'c1' is inside block 'b1' and not visible here", "qualified name 'b1.c1'"),
    ("nothing.c1", "no layer named 'nothing.c1' is visible here", "visible names"),
])
def test_a_wrong_name_says_the_same_in_from_and_in_outputs(ref, message, hint):
    base = SCOPED.replace("outputs: [concat1, b1.c1, b1]\n", "")
    in_from = only_error(base.replace("from: [b1.c1, b1]", f"from: [{ref}, b1]"))
    in_outputs = only_error(base + f"outputs: [{ref}]\n")
    for d in (in_from, in_outputs):
        assert message in d.message and hint in d.hint, (d.message, d.hint)
    assert in_outputs.line == 11 and in_outputs.column == 11


@pytest.mark.parametrize("kind", ["sequential", "residual", "repeat"])
def test_a_layer_reading_its_own_enclosing_block_is_refused(kind):
    extra = ", times: 2" if kind == "repeat" else ""
    d = only_error(f"""name: t
input: [3, 8, 8]
layers:
  - relu
  - {{type: {kind}, name: blk{extra}, layers: [relu, {{type: relu, from: blk}}]}}
""")
    assert d.message == ("'blk' is the block this layer is in: a layer cannot read the output "
                         "of its own enclosing block")
    assert d.line == 5 and "leave out 'from'" in d.hint


def test_a_layer_reading_its_own_user_block_instance_is_refused():
    d = only_error("""name: t
input: [3, 8, 8]
blocks:
  unit:
    layers: [relu, {type: relu, from: u}]
layers:
  - {type: unit, name: u}
""")
    assert "'u' is the block this layer is in" in d.message
    assert (d.line, d.column) == (5, 39) and any("used at line 7" in n for n in d.notes)


def test_a_layer_reading_itself_says_so():
    d = only_error("""name: t
input: [3, 8, 8]
layers:
  - {type: relu, name: a, from: a}
""")
    assert d.message == "'a' reads itself: a layer cannot take its own output as input"
    assert (d.line, d.column) == (4, 33)


def test_a_name_inside_a_block_may_read_an_outer_layer_of_the_same_name():
    analysis = archspec.analyze(archspec.loads("""name: t
input: [3, 8, 8]
layers:
  - {type: conv, name: a, out_channels: 2, kernel_size: 1}
  - {type: sequential, name: s, layers: [{type: relu, name: a, from: a}]}
"""))
    assert analysis.layers["s.a"].inputs == ["a"]


def test_empty_outputs_are_refused():
    d = only_error("name: t\ninput: [3, 8, 8]\nlayers: [relu]\noutputs: []\n")
    assert d.message == "outputs must be a non-empty list of strings (got [])"
    assert (d.line, d.column) == (4, 10) and "leave out 'outputs'" in d.hint


@pytest.mark.parametrize("name", ["s1.", "a.b", "my block", "1st", "-x", ""])
def test_block_names_that_could_collide_after_qualification_are_refused(name):
    d = only_error(f"""name: t
input: [3, 8, 8]
blocks:
  "{name}":
    layers: [{{type: conv, out_channels: 3, kernel_size: 1}}]
layers:
  - {{type: repeat, name: s1, times: 2, layers: [relu, relu]}}
  - {{type: "{name}"}}
""")
    assert d.message == f"block name {name!r} is not a valid name"
    assert (d.line, d.column) == (4, 3) and "no dots" in d.hint


def test_the_dotted_block_name_of_the_report_no_longer_loses_layers():
    """'s1.' beside a repeat s1 named its instances s1.1, s1.2: copies of s1 were overwritten."""
    spec = """name: t
input: [3, 8, 8]
blocks:
  s1_:
    layers: [{type: conv, out_channels: 3, kernel_size: 1}]
layers:
  - {type: repeat, name: s1, times: 2, layers: [{type: conv, out_channels: 3, kernel_size: 1}, relu]}
  - {type: s1_}
  - {type: s1_}
"""
    analysis = archspec.analyze(archspec.loads(spec))
    assert len(analysis.layers) == 6
    assert len(list(archspec.compile(analysis.network).children())) == 3  # s1, s1_1, s1_2


def chain(n: int, tmp_path):
    """Block b_i's body is one use of b_(i+1): each level is inlined into its user's scope."""
    lines = ["name: t", "input: [3, 8, 8]", "blocks:"]
    for i in range(n):
        body = f"[{{type: b{i + 1}}}]" if i < n - 1 else "[relu]"
        lines += [f"  b{i}:", f"    layers: {body}"]
    path = tmp_path / f"chain{n}.yaml"
    path.write_text("\n".join(lines + ["layers:", "  - b0"]) + "\n")
    return path


@pytest.mark.parametrize("n", [150, 500, 3_000])
def test_a_chain_of_inlined_blocks_counts_every_level(n, tmp_path):
    path = chain(n, tmp_path)
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        archspec.load(path)
    assert time.perf_counter() - start < 5
    [d] = info.value.diagnostics
    assert "blocks are nested more than 100 levels deep" in d.message
    assert (d.line, d.column) == (5 + 2 * 99, 21)  # the use of b100, in b99's body
    result = subprocess.run([sys.executable, "-m", "archspec", "check", str(path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{path}:203:21: error: blocks are nested more than 100 levels deep" in result.stderr


def test_a_chain_within_the_limit_still_compiles(tmp_path):
    analysis = archspec.analyze(archspec.load(chain(99, tmp_path)))
    assert [info.type for info in analysis.layers.values()] == ["relu"]


@pytest.mark.parametrize("kind, hint_has", [
    ("LSTMCell", "conv, "), ("rnn", "dense"), ("Transformer", "flatten"),
    ("transformer", "residual"), ("RMSNorm", "batch_norm"),
    ("selu", "relu"),
])
def test_layers_of_other_frameworks_are_not_misread_as_a_typo(kind, hint_has):
    d = only_error(f"name: t\ninput: [3, 8, 8]\nlayers:\n  - {{type: {kind}}}\n")
    assert d.message == f"'{kind}' is not a layer type of archspec"
    assert "did you mean" not in d.hint and hint_has in d.hint
    assert (d.line, d.column) == (4, 12)


@pytest.mark.parametrize("typo, meant", [("convv", "conv"), ("batchnorm", "batch_norm"),
                                         ("MaxPool2D", "max_pool"), ("relu7", "relu"),
                                         ("Linear", "dense")])
def test_real_typos_keep_their_did_you_mean(typo, meant):
    d = only_error(f"name: t\ninput: [3, 8, 8]\nlayers:\n  - {{type: {typo}}}\n")
    assert d.message == f"unknown layer type '{typo}'" and d.hint == f"did you mean '{meant}'?"
