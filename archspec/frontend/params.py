"""Parameters: the spec's `params:` bound once, before expansion, with the values given from
outside (`--set name=value`, `load(path, params={...})`); and substitution of expressions.

A default may be an expression over the parameters declared above it; a value from outside
replaces the default, and the defaults below it see the new value. Values from outside are
plain data (never expressions), checked against the default's type and bounded like
expression results.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import Diagnostic, SpecError
from .expressions import (
    MAX_ITEMS,
    MAX_RESULT,
    MAX_STRING,
    NAME,
    ExpressionError,
    evaluate,
    evaluate_string,
    has_expression,
    is_int,
    is_number,
    kind_of,
    render_template,
)
from .messages import did_you_mean, show_value

RESERVED = {"in_channels": "the incoming tensor's channel count",
            "in_shape": "the incoming tensor's shape"}
MAX_VALUE_DEPTH = 20


def substitute(data: Any, values: dict[str, Any], path: tuple = ()) -> Any:
    """Data with every string holding '$' replaced by its value. Parts without '$' are returned
    as they are (the same objects), so shared items stay shared."""
    if isinstance(data, str):
        if "$" not in data:
            return data
        try:
            return evaluate_string(data, values)
        except ExpressionError as exc:
            exc.path = path
            raise
    if isinstance(data, list):
        new = [substitute(v, values, path + (i,)) for i, v in enumerate(data)]
        return data if all(a is b for a, b in zip(new, data)) else new
    if isinstance(data, dict):  # copy_names: a template each repeat copy evaluates itself
        new_map = {k: v if k == "copy_names" else substitute(v, values, path + (k,))
                   for k, v in data.items()}
        return data if all(new_map[k] is v for k, v in data.items()) else new_map
    return data


def parse_assignment(text: str) -> tuple[str, Any]:
    """'depth=50' -> ('depth', 50): the value read as a YAML scalar or flow value (ValueError
    with the reason otherwise)."""
    from .yaml_loader import load_yaml
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not re.fullmatch(NAME, name):
        raise ValueError(f"'{text}' is not name=value (e.g. --set depth=50)")
    try:
        data, _ = load_yaml(value if value.strip() else "''", "<--set>")
    except SpecError as exc:
        raise ValueError(f"the value of '{name}' is not a YAML value: "
                         f"{exc.diagnostics[0].message}") from None
    return name, data


def bind(declared: Any, given: Mapping[str, Any] | None, smap, origin: str = "params=",
         values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The spec's parameter values, in declaration order; SpecError (every problem located at
    the declaration) for unknown names, wrong types and bad defaults."""
    declared = declared if isinstance(declared, dict) else {}
    given = dict(given or {})
    diagnostics: list[Diagnostic] = []
    for name in given:
        if name not in declared:
            diagnostics.append(smap.diagnostic(
                ("params",), f"unknown parameter '{name}' (from {origin})", at_key=True,
                hint=did_you_mean(name, list(declared)) or (
                    f"the spec's parameters: {', '.join(declared)}" if declared else
                    "this spec declares no parameters (under 'params:')")))
    bound: dict[str, Any] = dict(values or {})
    failed: set[str] = set()
    for name, default in declared.items():
        where = ("params", name)
        problem = bad_name(name)
        if problem:
            diagnostics.append(smap.diagnostic(where, problem[0], at_key=True, hint=problem[1]))
            continue
        try:
            value = substitute(default, bound, where)
        except ExpressionError as exc:
            missing = re.match(r"unknown parameter '\$(\w+)'", str(exc))
            if missing and missing[1] in failed:
                continue  # its own error is reported
            below = missing and missing[1] in declared
            diagnostics.append(smap.diagnostic(exc.path, str(exc), hint=exc.hint if not below
                                               else f"'{missing[1]}' is declared below: a default "
                                               "can use only the parameters declared above it"))
            failed.add(name)
            continue
        if name in given:
            try:
                value = _outside_value(given[name], value)
            except ValueError as exc:
                line, column = smap.key_position(where) or (None, None)
                at = f"{smap.file_of(where)}:{line}:{column}" if line else smap.file_of(where)
                diagnostics.append(smap.diagnostic(
                    where, f"parameter '{name}' {exc} from {origin}); it is declared at {at}",
                    at_key=True, hint=_type_hint(name, value, origin)))
        bound[name] = value  # after an error, the default: no second error below
    if diagnostics:
        raise SpecError(diagnostics)
    return bound


def bad_name(name: str) -> tuple[str, str] | None:
    if not re.fullmatch(NAME, name):
        return (f"parameter name {name!r} is not a valid name",
                ("start with a letter or '_', then letters, digits and '_' (it is written '$name' "
                "in expressions)"))
    if name in RESERVED:
        return (f"parameter name '{name}' is reserved for {RESERVED[name]}",
                "choose another name")
    return None


def _outside_value(value: Any, default: Any) -> Any:
    """The value given from outside, checked: ValueError('must be ... (got ...)')."""
    value = plain_data(value)
    if default is None:
        return value
    if isinstance(default, float) and is_number(value):
        return float(value)  # an integer where the default is a float
    if _kind(value) != _kind(default):
        like = f", like its default {show_value(default)}" if not isinstance(
            default, (list, dict)) else ", like its default"
        wanted = "a number" if isinstance(default, float) else kind_of(default)
        raise ValueError(f"must be {wanted}{like} (got {show_value(value)}")
    return value
    return value


def _kind(value: Any) -> str:
    return "integer" if is_int(value) else kind_of(value)


def _type_hint(name: str, default: Any, origin: str) -> str:
    example = show_value(default) if not isinstance(default, str) else default
    if origin == "--set":
        return f"e.g. --set {name}={example}"
    return f"e.g. params={{{name!r}: {default!r}}}"


def plain_data(value: Any, depth: int = 0) -> Any:
    """A value from outside as YAML data (tuples as lists, integer keys as text), bounded like
    expression results; ValueError otherwise."""
    if depth > MAX_VALUE_DEPTH:
        raise ValueError(f"nests deeper than {MAX_VALUE_DEPTH} levels (got a deeper value")
    if value is None or isinstance(value, (bool, str)):
        if isinstance(value, str) and len(value) > MAX_STRING:
            raise ValueError(f"is longer than {MAX_STRING} characters (got {len(value):,}")
        return value
    if is_number(value):
        if not abs(value) <= MAX_RESULT:
            raise ValueError(f"is too large: more than {MAX_RESULT:.0e} or not finite "
                             f"(got {show_value(value)}")
        return value
    if isinstance(value, (list, tuple, dict)):
        if len(value) > MAX_ITEMS:
            raise ValueError(f"has more than {MAX_ITEMS:,} items (got {len(value):,}")
        if isinstance(value, dict):
            if not all(isinstance(k, str) or is_int(k) for k in value):
                raise ValueError("has a mapping key that is neither text nor an integer (got "
                                 f"{show_value(next(k for k in value if not isinstance(k, (str, int))))}")
            return {str(k): plain_data(v, depth + 1) for k, v in value.items()}
        return [plain_data(v, depth + 1) for v in value]
    raise ValueError(f"is not YAML data (got a Python {type(value).__name__}")


__all__ = ["ExpressionError", "bind", "evaluate", "evaluate_string", "has_expression",
           "kind_of", "parse_assignment", "plain_data", "render_template", "substitute"]
