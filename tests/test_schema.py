"""The JSON Schema of the spec language (archspec.frontend.schema, `archspec schema`)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_naming_rules import BASIC_BLOCKS, DENSE_BLOCK, INCEPTION, VGG_LIKE

import archspec
from archspec.cli import main
from archspec.frontend.schema import spec_json_schema
from archspec.frontend.yaml_loader import load_yaml, load_yaml_file
from archspec.layers import COMPOSITES, REGISTRY

jsonschema = pytest.importorskip("jsonschema")
SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.yaml"))


@pytest.fixture(scope="module")
def schema():
    return spec_json_schema()


@pytest.fixture(scope="module")
def validator(schema):
    return jsonschema.Draft202012Validator(schema)


def errors(validator, text: str) -> list:
    data, _ = load_yaml(text)
    return list(validator.iter_errors(data))


def test_is_valid_draft_2020_12(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    json.dumps(schema)  # plain JSON data


def test_layer_union_covers_every_kind(schema):
    union = schema["$defs"]["layer"]["oneOf"]
    consts = set()
    for member in union:
        if "$ref" in member:
            target = schema["$defs"][member["$ref"].rsplit("/", 1)[-1]]
            consts.add(target["properties"]["type"]["const"])
    assert consts == set(REGISTRY) | set(COMPOSITES)
    kinds = {m.get("type") for m in union if "$ref" not in m}
    assert kinds == {"object", "string"}  # user block instance, short form


def test_nested_layer_lists_point_back_to_the_union(schema):
    text = json.dumps(schema)
    assert "archspec_nested" not in text
    defs = schema["$defs"]
    assert schema["properties"]["layers"]["items"] == {"$ref": "#/$defs/layer"}
    seq = defs["SequentialConfig"]["properties"]["layers"]
    assert seq["items"] == {"$ref": "#/$defs/layer"}
    branches = defs["BranchesConfig"]["properties"]["branches"]["anyOf"]
    as_list, as_mapping = branches                       # a list or a mapping of paths
    path = as_list["items"]
    assert as_mapping["additionalProperties"] == path
    plain, named = path["anyOf"]                          # a list of layers, or {name, ...}
    assert plain["items"] == named["properties"]["layers"]["items"] == {"$ref": "#/$defs/layer"}
    keyword_or_path, expression = defs["ResidualConfig"]["properties"]["shortcut"]["anyOf"]
    assert keyword_or_path["anyOf"] == [{"enum": ["identity", "projection", "none"]}, path]
    assert expression == {"$ref": "#/$defs/param_expression"}
    assert defs["BlockDefinition"]["properties"]["layers"]["items"] == {"$ref": "#/$defs/block_layer"}


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_zoo_spec_validates(validator, path):
    data, _ = load_yaml_file(path)
    problems = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(data)]
    assert not problems


def test_a_user_block_with_params_validates(validator):
    assert not errors(validator, """
name: t
input: [3, 32, 32]
blocks:
  unit:
    params: {c: ~, s: 1}
    layers:
      - {type: conv, out_channels: $c, kernel_size: 3, stride: $s, padding: 1}
      - {type: residual, layers: [{type: conv, out_channels: "$c * 2", kernel_size: 1}]}
layers:
  - {type: unit, c: 8}
  - unit2_short_form_is_any_string
  - {type: repeat, times: 2, layers: [{type: unit, c: 4, s: 2}]}
""")


def test_params_expressions_and_when_validate(validator):
    assert not errors(validator, """
name: t
input: [3, $size, $size]
params: {size: 32, depth: 18, stages: {18: [2, 2]}, bn: true}
layers:
  - {type: conv, out_channels: "64 if $depth < 50 else 256", kernel_size: 3, bias: "not $bn"}
  - {type: batch_norm, when: $bn}
  - {type: repeat, times: "$stages[$depth][0]", layers: [{type: "'relu' if $i == 0 else 'gelu'"}]}
  - {type: conv, out_channels: "$in_channels // 2", kernel_size: 1, when: true}
""")


@pytest.mark.parametrize("text", [VGG_LIKE, BASIC_BLOCKS, INCEPTION, DENSE_BLOCK])
def test_the_naming_fields_validate(validator, text):
    assert not errors(validator, text)


@pytest.mark.parametrize("layer", [
    "{type: residual, layers: [relu], shortcut: {name: downsample, numberd: true, layers: [relu]}}",
    "{type: residual, layers: [relu], shortcut: identiy}",
    "{type: branches, branches: {a-b: [relu]}}",
    "{type: branches, branches: {a: {name: b}}}",
    "{type: sequential, numbered: yes please, layers: [relu]}",
])
def test_misspelt_naming_fields_fail(validator, layer):
    assert errors(validator, f"name: t\ninput: [1, 8, 8]\nlayers:\n  - {layer}\n")


@pytest.mark.parametrize("text", [
    # an unknown field on a built-in layer
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: conv, out_channels: 4, kernal_size: 3}\n",
    # an unknown field at the top level
    "name: t\ninput: [1, 8, 8]\nlayer: [relu]\n",
    "name: t\ninput: [1, 8, 8]\nlayers: [relu]\ncolour: red\n",
    # a wrong type, a missing field, a bad nested layer, a when: that is no condition
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: conv, out_channels: three, kernel_size: 3}\n",
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: conv, out_channels: 4}\n",
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: residual, layers: [{type: relu, slope: 1}]}\n",
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: relu, when: maybe}\n",
    "name: t\ninput: [1, 8, 8]\nblocks:\n  b: {parms: {}, layers: [relu]}\nlayers: [b]\n",
    "name: t\ninput: []\nlayers: [relu]\n",
])
def test_bad_specs_fail(validator, text):
    assert errors(validator, text)


def test_layer_types_are_the_built_in_ones(schema):
    """Editors complete `type:` from an enumeration of the real types."""
    only = schema["$defs"]["builtin_types_only"]["anyOf"]
    assert set(only[0]["enum"]) == set(REGISTRY) | set(COMPOSITES)
    assert set(only[1]["properties"]["type"]["anyOf"][0]["enum"]) == set(REGISTRY) | set(COMPOSITES)


CONV2D = "{type: conv2d, out_channels: 8, kernel_size: 3}"
BLOCKS = "blocks:\n  unit:\n    layers: [relu]\n"


@pytest.mark.parametrize("layers", [
    f"[{CONV2D}]",
    "[conv2d]",
    "[MaxPool2d]",
    "[{type: Batch_Norm}]",
    f"[{{type: residual, layers: [{CONV2D}]}}]",
    f"[{{type: inception, branches: [[relu], [{CONV2D}]]}}]",
    f"[{{type: repeat, times: 2, layers: [{{type: sequential, layers: [{CONV2D}]}}]}}]",
])
@pytest.mark.parametrize("blocks", ["", BLOCKS], ids=["without_blocks", "with_blocks"])
def test_a_spelling_of_a_built_in_type_is_rejected(validator, layers, blocks):
    text = f"name: t\ninput: [1, 8, 8]\n{blocks}layers: {layers}\n"
    assert errors(validator, text)
    assert not errors(validator, text.replace("conv2d, out_channels", "conv, out_channels")
                      .replace("MaxPool2d", "max_pool").replace("Batch_Norm", "batch_norm")
                      .replace("[conv2d]", "[flatten]"))


@pytest.mark.parametrize("layers", ["[unit]", "[{type: unit}]", "[{type: residual, layers: [unit]}]"])
def test_user_block_types_need_blocks(validator, layers):
    """Without `blocks:` an unknown type is an error; with them it may be one of the blocks."""
    assert errors(validator, f"name: t\ninput: [1, 8, 8]\nlayers: {layers}\n")
    assert not errors(validator, f"name: t\ninput: [1, 8, 8]\n{BLOCKS}layers: {layers}\n")


@pytest.mark.parametrize("name", [
    "conv2d", "Conv2d", "CONV3D", "MaxPool2d", "max_pool_2d", "Batch_Norm", "BatchNorm1d",
    "ReLU", "relu6", "LogSoftmax", "conv_transpose2d", "basic", "basic1d", "bottleneck",
    "double_conv", "inception_module", "linear", "my_conv", "conv_block", "relu62d",
])
def test_the_spelling_pattern_agrees_with_check(schema, name):
    pattern = re.compile(schema["$defs"]["builtin_spelling"]["pattern"])
    spec = f"name: t\ninput: [1, 8, 8]\nblocks:\n  '{name}':\n    layers: [relu]\nlayers: [relu]\n"
    try:
        archspec.loads(spec)
        refused = False
    except archspec.SpecError as exc:
        [d] = exc.diagnostics
        assert (d.line, d.column) == (4, 3) and "built-in layer type" in d.message, d.message
        refused = True
    assert bool(pattern.search(name)) == refused


def test_cli_prints_the_schema():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(json.dumps(spec_json_schema()))


def test_committed_schema_file_is_current():
    """archspec.schema.json (for editors: '# yaml-language-server: $schema=...') must be
    regenerated with 'archspec schema > archspec.schema.json' when the language changes."""
    committed = json.loads((Path(__file__).resolve().parent.parent / "archspec.schema.json")
                           .read_text())
    assert committed == spec_json_schema()
