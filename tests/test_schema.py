"""The JSON Schema of the spec language (archspec.spec.schema, `archspec schema`)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from archspec.cli import main
from archspec.layers import COMPOSITES, REGISTRY
from archspec.spec.schema import spec_json_schema
from archspec.spec.yaml_loader import load_yaml, load_yaml_file

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
    branches = defs["BranchesConfig"]["properties"]["branches"]
    assert branches["items"]["items"] == {"$ref": "#/$defs/layer"}
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


@pytest.mark.parametrize("text", [
    # an unknown field on a built-in layer
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: conv, out_channels: 4, kernal_size: 3}\n",
    # an unknown field at the top level
    "name: t\ninput: [1, 8, 8]\nlayer: [relu]\n",
    "name: t\ninput: [1, 8, 8]\nlayers: [relu]\ncolour: red\n",
    # a wrong type, a missing field, a bad nested layer, a $param outside a block
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: conv, out_channels: three, kernel_size: 3}\n",
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: conv, out_channels: 4}\n",
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: residual, layers: [{type: relu, slope: 1}]}\n",
    "name: t\ninput: [1, 8, 8]\nlayers:\n  - {type: conv, out_channels: $c, kernel_size: 3}\n",
    "name: t\ninput: [1, 8, 8]\nblocks:\n  b: {parms: {}, layers: [relu]}\nlayers: [b]\n",
    "name: t\ninput: []\nlayers: [relu]\n",
])
def test_bad_specs_fail(validator, text):
    assert errors(validator, text)


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
