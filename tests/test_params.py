"""Spec parameters: `params:` defaults bound once before expansion, set from outside with
`--set name=value` on every command that reads a spec, or `load(path, params={...})`."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import archspec
from archspec.cli import main
from archspec.errors import SpecError

# A conv of k channels, 3x3, from 3 channels: 3*3*3*k weights and k biases (PyTorch's Conv2d).
FAMILY = """\
name: family
input: [3, $size, $size]
params:
  size: 16
  depth: 18
  stages: {18: [2, 2], 34: [3, 4]}
  wide: "$depth >= 34"
  channels: "64 if $wide else 32"
  width: 1.0
layers:
  - {type: conv, out_channels: "make_divisible($channels * $width, 8)", kernel_size: 3}
  - {type: repeat, times: "$stages[$depth][0]", layers: [relu]}
"""


def conv_params(out_channels: int) -> int:
    return 3 * 3 * 3 * out_channels + out_channels


def write(tmp_path, text=FAMILY, name="family.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def diagnostic(text: str = FAMILY, **params):
    with pytest.raises(SpecError) as caught:
        archspec.loads(text, params=params)
    (d,) = caught.value.diagnostics
    return d


def test_defaults_apply_and_later_defaults_see_earlier_ones():
    net = archspec.loads(FAMILY)
    assert net.params == {"size": 16, "depth": 18, "stages": {"18": [2, 2], "34": [3, 4]},
                          "wide": False, "channels": 32, "width": 1.0}
    analysis = archspec.analyze(net)
    assert analysis.params == conv_params(32)
    assert analysis.output_shape == (32, 14, 14)
    assert sum("relu" in n for n in net.nodes) == 2  # stages[18][0]


def test_a_value_from_outside_overrides_the_default_and_the_defaults_below_see_it():
    net = archspec.loads(FAMILY, params={"depth": 34, "size": 32, "width": 1.4})
    assert net.params["wide"] is True and net.params["channels"] == 64
    analysis = archspec.analyze(net)
    # make_divisible(64 * 1.4, 8): int(89.6 + 4) // 8 * 8 = 88, not below 0.9 * 89.6
    assert analysis.params == conv_params(88)
    assert analysis.output_shape == (88, 30, 30)
    assert sum("relu" in n for n in net.nodes) == 3  # stages[34][0]


def test_load_takes_params_like_loads(tmp_path):
    net = archspec.load(write(tmp_path), params={"depth": 34})
    assert archspec.analyze(net).params == conv_params(64)


def test_an_integer_is_accepted_where_the_default_is_a_float():
    assert archspec.loads(FAMILY, params={"width": 2}).params["width"] == 2.0


def test_unknown_parameter_has_did_you_mean_and_points_at_params():
    d = diagnostic(dpeth=50)
    assert d.message == "unknown parameter 'dpeth' (from params=)"
    assert (d.line, d.column) == (3, 1) and d.hint == "did you mean 'depth'?"


def test_unknown_parameter_of_a_spec_without_params():
    with pytest.raises(SpecError) as caught:
        archspec.loads("name: t\ninput: [3, 8, 8]\nlayers: [relu]\n", params={"depth": 50})
    (d,) = caught.value.diagnostics
    assert d.message == "unknown parameter 'depth' (from params=)"
    assert "declares no parameters" in d.hint


@pytest.mark.parametrize("name, value, message, line", [
    ("depth", "50", ("parameter 'depth' must be an integer, like its default 18 (got '50' "
                     "from params=); it is declared at <string>:5:3"), 5),
    ("depth", 5.0, "parameter 'depth' must be an integer, like its default 18 (got 5.0", 5),
    ("depth", True, "parameter 'depth' must be an integer, like its default 18 (got true", 5),
    ("width", "wide", "parameter 'width' must be a number, like its default 1.0 (got 'wide'", 9),
    ("stages", [1, 2], "parameter 'stages' must be a mapping, like its default (got [1, 2]", 6),
    ("size", 10 ** 16, "parameter 'size' is too large: more than 1e+15", 4),
    ("size", float("nan"), "parameter 'size' is too large: more than 1e+15 or not finite", 4),
    ("depth", object(), "parameter 'depth' is not YAML data (got a Python object", 5),
    ("stages", {"18": "x" * 2000}, "parameter 'stages' is longer than 1000 characters", 6),
])
def test_a_value_of_the_wrong_type_names_the_parameter_and_its_declaration(name, value, message,
                                                                            line):
    d = diagnostic(**{name: value})
    assert d.message.startswith(message), d.message
    assert (d.line, d.column) == (line, 3) and d.hint


def test_a_default_can_use_only_the_parameters_above_it():
    d = diagnostic("name: t\ninput: [3, 8, 8]\nparams:\n  a: $b\n  b: 2\nlayers: [relu]\n")
    assert d.message == "unknown parameter '$b'" and (d.line, d.column) == (4, 6)
    assert d.hint == "'b' is declared below: a default can use only the parameters declared above it"


@pytest.mark.parametrize("name, message", [
    ("in_channels", "parameter name 'in_channels' is reserved for the incoming tensor's channel"),
    ("2x", "parameter name '2x' is not a valid name"),
])
def test_parameter_names_are_names(name, message):
    d = diagnostic(f"name: t\ninput: [3, 8, 8]\nparams:\n  '{name}': 1\nlayers: [relu]\n")
    assert d.message.startswith(message) and (d.line, d.column) == (4, 3)


def test_a_block_parameter_cannot_hide_the_incoming_shape():
    d = diagnostic("name: t\ninput: [3, 8, 8]\nblocks:\n  b:\n    params: {in_shape: 1}\n"
                   "    layers: [relu]\nlayers: [b]\n")
    assert d.message == "parameter name 'in_shape' is reserved for the incoming tensor's shape"
    assert (d.line, d.column) == (5, 14) and d.hint == "choose another name"


def test_block_parameters_shadow_spec_parameters_and_defaults_see_spec_parameters():
    text = """\
name: t
input: [3, 8, 8]
params: {c: 4, k: 8}
blocks:
  unit:
    params: {c: 2, d: "$k * 2"}
    layers: [{type: conv, out_channels: "$c + $d", kernel_size: 1}]
layers:
  - unit
  - {type: unit, c: "$c * 10"}
"""
    net = archspec.loads(text, params={"k": 1})
    assert [n.cfg.out_channels for n in net.nodes.values()] == [2 + 2, 40 + 2]


def test_a_table_keyed_by_numbers_keeps_its_keys_as_text():
    net = archspec.loads(FAMILY)
    assert list(net.params["stages"]) == ["18", "34"]
    d = diagnostic(depth=50)
    assert d.message == "'$stages' has no key 50 in '$stages[$depth][0]'"
    assert (d.line, d.column) == (12, 27) and d.hint == "its keys: 18, 34"


def run(*args):
    return CliRunner().invoke(main, [*map(str, args)])


def test_check_set_on_the_command_line(tmp_path):
    result = run("check", "--json", write(tmp_path), "--set", "depth=34", "--set", "width=1.4")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["params"] == conv_params(88) and doc["output_shape"] == [88, 14, 14]


@pytest.mark.parametrize("value, expected", [
    ("stages={18: [1, 1], 34: [5, 5]}", 1), ("stages={'18': [4]}", 4)])
def test_set_takes_yaml_flow_values(tmp_path, value, expected):
    result = run("check", "--json", write(tmp_path), "--set", value)
    assert result.exit_code == 0, result.output
    assert sum(layer["type"] == "relu" for layer in json.loads(result.output)["layers"]) == expected


def test_set_unknown_name_is_located_with_did_you_mean(tmp_path):
    path = write(tmp_path)
    result = run("check", path, "--set", "dpeth=34")
    assert result.exit_code == 1
    assert f"{path}:3:1: error: unknown parameter 'dpeth' (from --set)" in result.output
    assert "hint: did you mean 'depth'?" in result.output


def test_set_wrong_type_names_the_parameter_and_where_it_is_declared(tmp_path):
    path = write(tmp_path)
    result = run("check", path, "--set", "depth=fifty")
    assert result.exit_code == 1
    assert (f"{path}:5:3: error: parameter 'depth' must be an integer, like its default 18 "
            f"(got 'fifty' from --set); it is declared at {path}:5:3") in result.output
    assert "hint: e.g. --set depth=18" in result.output


@pytest.mark.parametrize("arg, message", [
    ("depth", "'depth' is not name=value"), ("=3", "'=3' is not name=value"),
    ("depth=[1,", "the value of 'depth' is not a YAML value"),
])
def test_malformed_set_is_a_usage_error(tmp_path, arg, message):
    result = run("check", write(tmp_path), "--set", arg)
    assert result.exit_code == 2 and message in result.output


@pytest.mark.parametrize("command", ["check", "build", "diagram", "verify", "export"])
def test_every_command_that_reads_a_spec_takes_set(command):
    result = run(command, "--help")
    assert "--set NAME=VALUE" in result.output


def test_diagram_and_build_read_set(tmp_path):
    path = write(tmp_path)
    out = tmp_path / "d.dot"
    result = run("diagram", path, "-o", out, "--set", "depth=34")
    assert result.exit_code == 0, result.output
    assert out.read_text().count("relu") >= 3
    result = run("build", path, "-o", tmp_path / "x.pt", "--device", "meta", "--set",
                 "depth=34")
    assert result.exit_code == 0, result.output
    assert f"{conv_params(64):,} parameters" in result.output


def test_input_shape_may_use_params():
    net = archspec.loads(FAMILY, params={"size": 299})
    assert net.input_shape == (3, 299, 299)
