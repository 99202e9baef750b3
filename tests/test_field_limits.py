"""What `check` accepts, PyTorch can build and run: every numeric field of every layer kind,
set to boundary values, is either refused with a located error or verifies on the meta device."""
from __future__ import annotations

import typing
from functools import cache

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import archspec
from archspec.cli import main
from archspec.errors import SpecError
from archspec.layers import COMPOSITES, REGISTRY

pytest.importorskip("torch")
from archspec.backends.verify import mismatches

INPUT_SHAPES = ([2, 8, 8], [4], [2, 8], [2, 4, 4, 4], {"shape": [4, 8], "layout": "tokens"},
                {"shape": [8], "layout": "ids"}, [4, 8, 8])  # [4, 8, 8]: pixel_shuffle by 2
COMMON = {"name", "from_", "trainable", "type"}
NOT_REQUIRED_YET_NEEDED = {"upsample": {"scale_factor": 2}}  # one of scale_factor and size
REQUIRED_LISTS = {"permute": {"dims": [0, 2, 1]}, "transpose": {"dims": [1, 2]},
                  "reshape": {"shape": [-1]}}


def scalar_types(annotation) -> set[type]:
    """The scalar types a field accepts (int, float, bool, str), through unions, lists and
    Annotated."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return scalar_types(args[0])
    if origin is typing.Literal:
        return {type(a) for a in args}
    if args:
        return set().union(*(scalar_types(a) for a in args))
    return {annotation} if isinstance(annotation, type) else set()


def takes_list(annotation) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    return origin is list or any(takes_list(a) for a in args)


def numeric_fields(config) -> list[tuple[str, str, bool]]:
    """(field name as written, 'int' or 'float', accepts a list) for every numeric field."""
    found = []
    for name, info in config.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if name in COMMON or extra.get("archspec_nested") or name in ("weight",):
            continue
        kinds = scalar_types(info.annotation)
        number = "int" if int in kinds else "float" if float in kinds else None
        if number:
            found.append((info.alias or name, number, takes_list(info.annotation)))
    return found


def required_value(info):
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    nested = extra.get("archspec_nested")
    if nested == "layers":
        return ["relu"]
    if nested == "paths":  # a list of branches
        return [["relu"], ["relu"]]
    kinds = scalar_types(info.annotation)
    return 2 if int in kinds else 0.5 if float in kinds else "relu"


def baseline_layer(kind_name: str) -> dict:
    kind = REGISTRY.get(kind_name) or COMPOSITES[kind_name]
    layer = {"type": kind_name}
    for name, info in kind.Config.model_fields.items():
        if info.is_required() and name not in COMMON:
            layer[info.alias or name] = required_value(info)
    layer.update(NOT_REQUIRED_YET_NEEDED.get(kind_name, {}), **REQUIRED_LISTS.get(kind_name, {}))
    if getattr(kind, "min_inputs", 1) > 1:
        layer["from"] = ["input"] * kind.min_inputs
    return layer


def spec_text(shape: list[int] | dict, layer: dict) -> str:
    return yaml.safe_dump({"name": "t", "input": shape, "layers": [layer]}, sort_keys=False)


@cache
def baseline_input(kind_name: str) -> int:
    """Which of INPUT_SHAPES the kind's baseline layer checks on."""
    for index, shape in enumerate(INPUT_SHAPES):
        try:
            archspec.analyze(archspec.loads(spec_text(shape, baseline_layer(kind_name))))
            return index
        except SpecError:
            continue
    raise AssertionError(f"no baseline input fits '{kind_name}'")


CASES = [(kind_name, field, number, listed)
         for kind_name, kind in sorted({**REGISTRY, **COMPOSITES}.items())
         for field, number, listed in numeric_fields(kind.Config)]

INT_BOUNDARIES = [0, 1, 3, -1, -2**63, 2**31, 2**63 - 1, 2**63, 2**64, 10**9, 10**9 + 1]
FLOAT_BOUNDARIES = [0.0, 5e-324, 0.5, -1.0, 1e38, -1e38, 3.5e38, 1e308, -1e308]


def assert_refused_or_runs(kind_name: str, field: str, value) -> None:
    shape = INPUT_SHAPES[baseline_input(kind_name)]
    layer = dict(baseline_layer(kind_name), **{field: value})
    text = spec_text(shape, layer)
    try:
        analysis = archspec.analyze(archspec.loads(text))
    except SpecError as exc:
        for d in exc.diagnostics:
            assert d.line is not None and d.column is not None, (text, d.format())
        return
    problems = mismatches(analysis, device="meta", batch_size=2)
    assert problems == [], (text, problems)


def test_every_numeric_field_of_every_kind_is_covered():
    fields = {(k, f) for k, f, _, _ in CASES}
    for expected in [("conv", "stride"), ("max_pool", "stride"), ("local_response_norm", "size"),
                     ("leaky_relu", "negative_slope"), ("batch_norm", "eps"),
                     ("upsample", "scale_factor"), ("repeat", "times")]:
        assert expected in fields


@st.composite
def boundary_cases(draw):
    kind_name, field, number, listed = draw(st.sampled_from(CASES))
    if number == "int":
        value = draw(st.sampled_from(INT_BOUNDARIES) | st.integers(-2**70, 2**70))
    else:
        value = draw(st.sampled_from(FLOAT_BOUNDARIES) |
                     st.floats(allow_nan=False, allow_infinity=False))
    given = INPUT_SHAPES[baseline_input(kind_name)]
    ndim = len(given["shape"] if isinstance(given, dict) else given) - 1
    if listed and ndim and draw(st.booleans()):
        value = [value] + [draw(st.sampled_from([1, 2])) if number == "int" else 1.0] * (ndim - 1)
    return kind_name, field, value


@settings(max_examples=100, deadline=None)
@given(boundary_cases())
def test_check_refuses_with_a_location_or_pytorch_runs_it_on_meta(case):
    assert_refused_or_runs(*case)


@pytest.mark.parametrize("kind_name, field, number, listed", CASES)
def test_each_numeric_field_at_the_int64_and_float_limits(kind_name, field, number, listed):
    for value in (INT_BOUNDARIES if number == "int" else FLOAT_BOUNDARIES):
        assert_refused_or_runs(kind_name, field, value)


LAYER_AT_LINE_4 = "name: t\ninput: [3, 8, 8]\nlayers:\n  - {layer}\n"


@pytest.mark.parametrize("layer, column, message", [
    ("{type: conv, out_channels: 4, kernel_size: 3, stride: 9223372036854775808}", 59,
     "stride is too large: 9223372036854775808 is more than 1,000,000,000"),
    ("{type: conv, out_channels: 4, kernel_size: 3, stride: 18446744073709551616}", 59,
     "stride is too large: 18446744073709551616 is more than 1,000,000,000"),
    ("{type: max_pool, kernel_size: 2, stride: 9223372036854775808}", 46,
     "stride is too large: 9223372036854775808 is more than 1,000,000,000"),
    ("{type: local_response_norm, size: 9223372036854775808}", 39,
     "size is too large: 9223372036854775808 is more than 1,000,000,000"),
    ("{type: leaky_relu, negative_slope: 1e308}", 40,
     "negative_slope is too large: 1e+308 is beyond ±1e+38"),
    ("{type: upsample, scale_factor: 2, mode: nearest, align_corners: false}", 69,
     "align_corners applies only to the interpolating modes (linear, bilinear, trilinear), "
     "not to 'nearest'"),
])
def test_values_pytorch_cannot_hold_are_refused_by_check(tmp_path, layer, column, message):
    path = tmp_path / "spec.yaml"
    path.write_text(LAYER_AT_LINE_4.format(layer=layer))
    result = CliRunner().invoke(main, ["check", "--json", str(path)])
    assert result.exit_code == 1
    import json
    (error,) = json.loads(result.output)["errors"]
    assert error["message"] == message
    assert (error["line"], error["column"]) == (4, column)
    assert error["hint"]
