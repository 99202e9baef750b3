"""Parameters of user-defined blocks: '$name' and small integer arithmetic ('$width * 4').

A hand-written parser over a fixed grammar, never eval: a spec is data and cannot run code.
    expr := term (('+' | '-') term)*      term := factor (('*' | '//') factor)*
    factor := INT | '$'NAME | '(' expr ')' | '-' factor
"""
from __future__ import annotations

import difflib
import re
from typing import Any

TOKEN = re.compile(r"\s*(?:(\d+)|\$([A-Za-z_][A-Za-z0-9_]*)|(//|[-+*()]))")
MAX_EXPRESSION_CHARS = 200
MAX_RESULT = 10 ** 15  # computed values beyond this are typos, and keep every later product sane


class ExpressionError(Exception):
    def __init__(self, message: str, path: tuple = (), hint: str | None = None):
        super().__init__(message)
        self.path, self.hint = path, hint


def tokenize(text: str) -> list[tuple[str, Any]]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match:
            raise ExpressionError(f"cannot read expression '{text}' at '{text[pos:].strip()}'",
                                  hint="use $name, integers, + - * // and parentheses")
        number, name, op = match.groups()
        tokens.append(("int", int(number)) if number else ("name", name) if name else ("op", op))
        pos = match.end()
    return tokens


def evaluate(text: str, values: dict[str, Any]) -> Any:
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    tokens = tokenize(text)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else ("end", None)

    def take():
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def factor(depth=0):
        if depth > 50:
            raise ExpressionError("expression nests too deeply")
        kind, value = take() if pos < len(tokens) else ("end", None)
        if kind == "int":
            return bounded(value)
        if kind == "name":
            if value not in values:
                close = difflib.get_close_matches(value, list(values), n=1)
                raise ExpressionError(f"unknown parameter '${value}'",
                                      hint=f"did you mean '${close[0]}'?" if close else
                                      f"parameters: {', '.join(values) or 'none'}")
            return values[value]
        if (kind, value) == ("op", "-"):
            return negate(factor(depth + 1))
        if (kind, value) == ("op", "("):
            result = expr(depth + 1)
            if take() != ("op", ")") if pos < len(tokens) else True:
                raise ExpressionError(f"missing ')' in '{text}'")
            return result
        raise ExpressionError(f"unexpected end of expression '{text}'" if kind == "end" else
                              f"unexpected '{value}' in '{text}'")

    def term(depth=0):
        result = factor(depth)
        while peek() in (("op", "*"), ("op", "//")):
            op = take()[1]
            right = factor(depth)
            if op == "//" and right == 0:
                raise ExpressionError(f"division by zero in '{text}'")
            result = arith(result, op, right)
        return result

    def expr(depth=0):
        result = term(depth)
        while peek() in (("op", "+"), ("op", "-")):
            op = take()[1]
            result = arith(result, op, term(depth))
        return result

    def negate(value):
        if not is_number(value):
            raise ExpressionError(f"'-' needs a number in '{text}', got {kind_of(value)}",
                                  hint="negate integer or float parameters only")
        return bounded(-value)

    def arith(a, op, b):
        if not (is_int(a) and is_int(b)):
            raise ExpressionError(f"arithmetic needs integers in '{text}', got "
                                  f"{kind_of(a)} {op} {kind_of(b)}",
                                  hint="+, -, * and // take integer parameters and numbers")
        return bounded({"+": a + b, "-": a - b, "*": a * b}.get(op) if op != "//" else a // b)

    def bounded(result):
        if abs(result) > MAX_RESULT:
            raise ExpressionError(f"'{text}' is too large (more than {MAX_RESULT:.0e})")
        return result

    result = expr()
    if pos != len(tokens):
        raise ExpressionError(f"unexpected '{tokens[pos][1]}' in '{text}'")
    return result


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return is_int(value) or isinstance(value, float)


def kind_of(value: Any) -> str:
    """How a message names a value's type, in YAML's words."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def substitute(data: Any, values: dict[str, Any], path: tuple = ()) -> Any:
    """Replace every string containing '$' by its value; other data is returned unchanged."""
    if isinstance(data, str) and "$" in data:
        try:
            return evaluate(data, values)
        except ExpressionError as exc:
            exc.path = path
            raise
    if isinstance(data, list):
        return [substitute(v, values, path + (i,)) for i, v in enumerate(data)]
    if isinstance(data, dict):
        return {k: substitute(v, values, path + (k,)) for k, v in data.items()}
    return data
