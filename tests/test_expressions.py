"""Block parameter expressions: every operator on every value type either computes a bounded
number or is an ExpressionError, which the expander turns into a located diagnostic."""
from __future__ import annotations

import re

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
    # + also joins two strings or two lists: the result is still bounded
    assert type(result) in (int, float, str, list), (text, params, result)
    assert len(result) <= 10_000 if isinstance(result, (str, list)) else \
        abs(result) <= MAX_RESULT


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


# ---- the grown grammar against Python's own evaluation -----------------------------------
# Random well-typed expressions are written twice, in archspec's syntax and in Python's; Python
# evaluating its text is the independent truth. Each tree is (archspec text, Python text).

VARS = {"n": 7, "m": -3, "f": 1.5, "g": -0.25, "yes": True, "no": False, "s": "ab", "t": "b",
        "nums": [4, -2, 9], "table": {"18": [2, 2, 2, 2], "50": [3, 4, 6, 3]}}
PY_HELPERS = {"min": min, "max": max, "len": len}


def both(text: str) -> tuple[str, str]:
    return text, text


def var(name: str) -> tuple[str, str]:
    return f"${name}", name


def binary(a, op, b, py_op=None):
    return f"({a[0]} {op} {b[0]})", f"({a[1]} {py_op or op} {b[1]})"


number_leaves = st.one_of(
    st.integers(-60, 60).map(lambda v: both(str(v)) if v >= 0 else both(f"({v})")),
    st.sampled_from([0.5, 2.0, 1.25, 3.5]).map(lambda v: both(repr(v))),
    st.sampled_from(["n", "m", "f", "g"]).map(var),
    st.integers(-3, 2).map(lambda i: (f"$nums[{i}]", f"nums[{i}]")),
    st.sampled_from(["18", "50"]).map(lambda k: (f"$table[{k}][1]", f"table['{k}'][1]")),
)
bool_leaves = st.one_of(st.sampled_from([("true", "True"), ("false", "False")]),
                        st.sampled_from(["yes", "no"]).map(var))
string_leaves = st.one_of(st.sampled_from(["x", "yz", ""]).map(lambda v: both(f"'{v}'")),
                          st.sampled_from(["s", "t"]).map(var))


def grow(numbers, bools, strings):
    number = st.one_of(
        st.tuples(numbers, st.sampled_from(["+", "-", "*", "//", "%", "/"]), numbers)
        .map(lambda t: binary(*t)),
        numbers.map(lambda a: (f"-{a[0]}", f"-{a[1]}")),
        st.tuples(numbers, bools, numbers).map(
            lambda t: (f"({t[0][0]} if {t[1][0]} else {t[2][0]})",
                       f"({t[0][1]} if {t[1][1]} else {t[2][1]})")),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(numbers, min_size=1, max_size=3))
        .map(lambda t: (f"{t[0]}({', '.join(a[0] for a in t[1])})",
                        f"{t[0]}({', '.join(a[1] for a in t[1])}{',' if len(t[1]) == 1 else ''})"
                        if len(t[1]) > 1 else f"{t[0]}([{t[1][0][1]}])")),
        strings.map(lambda a: (f"len({a[0]})", f"len({a[1]})")))
    boolean = st.one_of(
        st.tuples(numbers, st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), numbers)
        .map(lambda t: binary(*t)),
        st.tuples(numbers, numbers, numbers).map(   # chained, as Python chains them
            lambda t: (f"({t[0][0]} < {t[1][0]} <= {t[2][0]})",
                       f"({t[0][1]} < {t[1][1]} <= {t[2][1]})")),
        st.tuples(strings, st.sampled_from(["==", "!=", "<"]), strings).map(lambda t: binary(*t)),
        st.tuples(bools, st.sampled_from(["and", "or", "==", "!="]), bools)
        .map(lambda t: binary(*t)),
        bools.map(lambda a: (f"(not {a[0]})", f"(not {a[1]})")))
    string = st.one_of(
        st.tuples(strings, strings).map(lambda t: binary(t[0], "+", t[1])),
        st.tuples(strings, bools, strings).map(
            lambda t: (f"({t[0][0]} if {t[1][0]} else {t[2][0]})",
                       f"({t[0][1]} if {t[1][1]} else {t[2][1]})")))
    return number, boolean, string


def typed_expressions(depth: int):
    numbers, bools, strings = number_leaves, bool_leaves, string_leaves
    for _ in range(depth):
        n, b, s = grow(numbers, bools, strings)
        numbers, bools, strings = (st.one_of(number_leaves, n), st.one_of(bool_leaves, b),
                                   st.one_of(string_leaves, s))
    return st.one_of(numbers, bools, strings)


def python_value(text: str):
    return eval(text, {"__builtins__": {}}, {**PY_HELPERS, **VARS})  # the test's oracle only


def some_part_is_too_large(python_text: str) -> bool:
    """Whether Python, evaluating the expression, passes MAX_RESULT somewhere on the way."""
    import ast
    tree = ast.parse(python_text, mode="eval")
    return any(isinstance(value, (int, float)) and not isinstance(value, bool) and
               abs(value) > MAX_RESULT
               for value in map(python_part, filter(lambda n: isinstance(n, ast.expr),
                                                    ast.walk(tree))))


def python_part(node):
    import ast
    try:
        return python_value(ast.unparse(node))
    except ZeroDivisionError:  # a branch Python never evaluates
        return None


@settings(max_examples=600, deadline=None)
@given(typed_expressions(3))
def test_well_typed_expressions_evaluate_as_python_does(pair):
    ours, python = pair
    try:
        expected = python_value(python)
    except ZeroDivisionError:
        with pytest.raises(ExpressionError, match="division by zero"):
            evaluate(ours, VARS)
        return
    try:
        got = evaluate(ours, VARS)
    except ExpressionError as exc:
        assert "too large" in str(exc) and some_part_is_too_large(python), (ours, str(exc))
        return
    assert type(got) is type(expected) and got == expected, (ours, python, got, expected)


@pytest.mark.parametrize("text, expected", [
    ("2 if $i == 0 else 1", 2), ("1 + 2 * 3 % 4", 1 + 2 * 3 % 4), ("-7 // 2", -4),
    ("-7 % 3", 2), ("7.5 // 2", 3.0), ("$w * 1.4", 64 * 1.4), ("not 1 < 2 and true", False),
    ("1 < 2 < 3 < 2", False), ("$stages[$depth][2]", 6), ("$stages[50]", [3, 4, 6, 3]),
    ("len($stages[$depth])", 4), ("max($stages[$depth])", 6), ("min(3, 1.5, 2)", 1.5),
    ("'bottleneck' if $depth >= 50 else 'basic'", "bottleneck"), ("\"a\" + 'b'", "ab"),
    ("$stages[$depth][-1]", 3), ("+$w", 64), ("(1 if false else 2) * 3", 6),
    ("1 if true else 2 if true else 3", 1), ("true or 1 // 0 == 0", True),
])
def test_grammar_examples(text, expected):
    values = {"i": 0, "w": 64, "depth": 50, "stages": {"18": [2, 2, 2, 2], "50": [3, 4, 6, 3]}}
    got = evaluate(text, values)
    assert type(got) is type(expected) and got == expected


def torchvision_make_divisible(v, divisor, min_value=None):
    """torchvision.models._utils._make_divisible, written out from its documented rule."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@pytest.mark.parametrize("width", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
@pytest.mark.parametrize("channels", [16, 24, 32, 64, 96, 160, 320, 1280])
def test_make_divisible_is_mobilenets_rule(channels, width):
    got = evaluate("make_divisible($c * $width, 8)", {"c": channels, "width": width})
    assert got == torchvision_make_divisible(channels * width, 8) and type(got) is int


@pytest.mark.parametrize("value", [7, 8, 9, 12, 3.9, 100.2, 0])
def test_make_divisible_keeps_within_ten_percent(value):
    assert evaluate(f"make_divisible({value}, 8)", {}) == torchvision_make_divisible(value, 8)


@pytest.mark.parametrize("text, message", [
    ("$x.__class__", "attribute access ('.__class__') is not part of expressions"),
    ("$x . real", "attribute access"),
    ("__import__('os')", "unknown function '__import__'"),
    ("eval('1')", "unknown function 'eval'"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("mim(1, 2)", "unknown function 'mim'"),
    ("$x(1)", "unexpected '('"),
    ("min", "unexpected 'min'"),
    ("x", "unexpected 'x'"),
    ("True", "unexpected 'True'"),
    ("9 ** 9 ** 9", "'**' (power) is not part of expressions"),
    ("99999999 * 99999999 * 99999999", "too large"),
    ("'ab' * 1000000", "'*' needs numbers"),
    ("$s + $s", "longer than"),
    ("1e400", "too large"),
    ("(" * 40 + "1" + ")" * 40, "nests too deeply"),
    ("-" * 40 + "1", "nests too deeply"),
    ("1 + " * 60 + "1", "longer than 200 characters"),
    ("[1, 2]", "unexpected '['"),
    ("lambda: 1", "cannot read expression 'lambda: 1' at ': 1'"),
    ("$x if $x", "expected 'else'"),
    ("'abc", "unterminated string"),
    ("1 = 1", "compare with == or !="),
])
def test_refused_in_bounded_time(text, message):
    import time
    start = time.process_time()
    with pytest.raises(ExpressionError) as caught:
        evaluate(text, {"x": 3, "s": "a" * 600})
    assert message in str(caught.value) and caught.value.hint
    assert time.process_time() - start < 0.1


@pytest.mark.parametrize("text, message", [
    ("$a + $b", "'+' needs numbers (two strings or two lists join), got an integer + a string"),
    ("$a and true", "'and' needs true or false, got an integer"),
    ("$b - 1", "'-' needs numbers, got a string - an integer"),
    ("$t + 1", "'+' needs numbers (two strings or two lists join), got a boolean + an integer"),
    ("$a == $b", "'==' compares an integer with a string"),
    ("$l < $l", "'<' orders numbers or strings, got a list"),
    ("1 if $a else 2", "'if' needs true or false, got an integer"),
    ("not $a", "'not' needs true or false, got an integer"),
    ("$a // 0", "division by zero"), ("$a % 0", "division by zero"), ("1 / 0.0", "division by zero"),
    ("$l[$b]", "'$l' is a list, indexed by an integer, not by a string"),
    ("$l[3]", "index 3 is out of range: '$l' has 2 items"),
    ("$m[$a]", "'$m' has no key 1"), ("$m[$l]", "'$m' is a mapping, indexed by a key"),
    ("$a[0]", "only lists and mappings can be indexed; '$a' is an integer"),
    ("min($b, 1)", "min() takes numbers, got a string"), ("max($e)", "max() needs at least one"),
    ("len($a)", "len() takes one list, mapping or string, got an integer"),
    ("make_divisible($a)", "make_divisible() takes 2 arguments"),
    ("make_divisible(10, 2.5)", "make_divisible() takes a non-negative number and a positive"),
])
def test_every_operator_on_a_wrong_type_is_an_expression_error(text, message):
    values = {"a": 1, "b": "x", "t": True, "l": [1, 2], "m": {"k": 1}, "e": []}
    with pytest.raises(ExpressionError) as caught:
        evaluate(text, values)
    assert message in str(caught.value) and caught.value.hint


@pytest.mark.parametrize("text, expected", [
    ("denselayer${$i + 1}", "denselayer3"), ("${$i}", "2"), ("a${$i * 2}b${'c'}", "a4bc"),
    ("flag_${$i > 1}", "flag_true"), ("w${$i / 4}", "w0.5"), ("no dollar", "no dollar"),
])
def test_templates_join_text_and_values(text, expected):
    from archspec.frontend.expressions import evaluate_string
    assert (evaluate_string(text, {"i": 2}) if "$" in text else text) == expected


@pytest.mark.parametrize("text, message", [
    ("layer${$i", "missing '}'"), ("a$i${$i}", "'$' outside '${...}'"),
    ("x${$l}", "a template joins text and numbers"), ("${}", "unexpected end of expression"),
])
def test_bad_templates_are_expression_errors(text, message):
    from archspec.frontend.expressions import evaluate_string
    with pytest.raises(ExpressionError, match=re.escape(message)):
        evaluate_string(text, {"i": 2, "l": [1]})
