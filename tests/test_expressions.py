"""Block parameter expressions: every operator on every value type either computes a bounded
number or is an ExpressionError, which the expander turns into a located diagnostic."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archspec
from archspec.errors import SpecError
from archspec.frontend.params import ExpressionError, evaluate

MAX_RESULT = 10 ** 15  # what the grammar promises: larger computed values are refused

NAMES = ("a", "b", "c")

values = st.one_of(
    st.integers(-10**30, 10**30), st.integers(-5, 5), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
    st.lists(st.integers(0, 9), max_size=3), st.dictionaries(st.text(max_size=2),
                                                             st.integers(0, 9), max_size=2))

leaves = st.one_of(st.integers(0, 10**20).map(str), st.sampled_from([f"${n}" for n in NAMES]),
                   st.just("$unknown"))
expressions = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "//"]), inner)
        .map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        inner.map(lambda e: f"({e})"), inner.map(lambda e: f"-{e}")),
    max_leaves=8)
junk = st.text(alphabet="$abc()+-*/ 0123456789_x.", min_size=1, max_size=40).filter(
    lambda t: "$" in t)


def check_one(text: str, params: dict) -> None:
    try:
        result = evaluate(text, params)
    except ExpressionError:
        return
    if text.replace("(", "").replace(")", "").strip() in {f"${n}" for n in params}:
        return  # a bare parameter stands for its value, whatever its type
    assert type(result) in (int, float), (text, params, result)
    assert abs(result) <= MAX_RESULT


@settings(max_examples=300, deadline=None)
@given(expressions, st.fixed_dictionaries({n: values for n in NAMES}))
def test_every_expression_computes_a_bounded_number_or_is_an_expression_error(text, params):
    check_one(text, params)


@settings(max_examples=200, deadline=None)
@given(junk, st.fixed_dictionaries({n: values for n in NAMES}))
def test_malformed_expressions_are_expression_errors(text, params):
    check_one(text, params)


@pytest.mark.parametrize("value, kind", [
    ("[1, 2]", "a list"), ("null", "null"), ("{k: 1}", "a mapping"), ("abc", "a string"),
    ("true", "a boolean"),
])
def test_negating_a_parameter_that_is_not_a_number_is_a_located_error(value, kind):
    text = ("name: t\ninput: [3, 8, 8]\nblocks:\n  shift:\n"
            "    params: {p: 1}\n"
            "    layers: [{type: conv, out_channels: 4, kernel_size: 3, padding: -$p}]\n"
            f"layers:\n  - {{type: shift, p: {value}}}\n")
    with pytest.raises(SpecError) as caught:
        archspec.loads(text)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.message == f"'-' needs a number in '-$p', got {kind}"
    assert (diagnostic.line, diagnostic.column) == (6, 69)  # at -$p
    assert diagnostic.notes == ["in block 'shift' used at line 8"]


def test_negating_an_integer_parameter_still_works():
    text = ("name: t\ninput: [3, 8, 8]\nblocks:\n  b:\n    params: {p: 3}\n"
            "    layers: [{type: conv, out_channels: 4, kernel_size: 3, padding: -$p + 4}]\n"
            "layers:\n  - b\n")
    assert archspec.analyze(archspec.loads(text)).output_shape == (4, 8, 8)
