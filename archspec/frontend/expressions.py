"""Expressions in spec values: '$width * 2', "2 if $i == 0 else 1", "$stages[$depth][0]".

A hand-written parser over a fixed grammar, never eval: a spec is data and cannot run code.
Python's precedence and semantics, with stricter types (no bool arithmetic, conditions must be
true/false, no comparison across kinds) and bounded size, depth and values:
    expr    := or ['if' or 'else' expr]          or := and ('or' and)*
    and     := not ('and' not)*                   not := 'not' not | cmp
    cmp     := sum (('=='|'!='|'<'|'<='|'>'|'>=') sum)*     (chained as in Python)
    sum     := term (('+'|'-') term)*             term := unary (('*'|'/'|'//'|'%') unary)*
    unary   := '-' unary | postfix                postfix := atom ('[' expr ']')*
    atom    := INT | FLOAT | 'string' | true | false | '$'NAME | '(' expr ')'
             | HELPER '(' expr (',' expr)* ')'    HELPER: min, max, make_divisible, len
A string holding '${' is a template: each '${expr}' is evaluated and the text joined.
"""
from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable
from typing import Any

from .messages import suggest

MAX_EXPRESSION_CHARS = 200
MAX_TEMPLATE_CHARS = 1000
MAX_RESULT = 10 ** 15  # computed numbers beyond this are typos, and keep every later product sane
MAX_STRING = 1000      # characters of a computed string
MAX_ITEMS = 10_000     # items of a computed list
MAX_DEPTH = 30         # nested parentheses, brackets, calls and prefixes

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
TOKEN = re.compile(r"""\s*(?:
    (?P<float>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)
  | (?P<int>\d+)
  | \$(?P<var>""" + NAME + r""")
  | (?P<word>""" + NAME + r""")
  | '(?P<str1>[^']*)' | "(?P<str2>[^"]*)"
  | (?P<op>//|==|!=|<=|>=|[-+*/%<>()\[\],])
)""", re.VERBOSE)
INCOMING = ("in_channels", "in_shape")  # the incoming tensor's, given by the expander
KEYWORDS = {"if", "else", "and", "or", "not", "true", "false"}
COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}
# binary operators by precedence level (Python's); comparisons (level 4) chain
LEVELS = {"or": 1, "and": 2, **{op: 4 for op in COMPARISONS}, "+": 5, "-": 5,
          "*": 6, "/": 6, "//": 6, "%": 6}
OPERATORS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
             ">": operator.gt, ">=": operator.ge, "+": operator.add, "-": operator.sub,
             "*": operator.mul, "/": operator.truediv, "//": operator.floordiv,
             "%": operator.mod}
GRAMMAR_HINT = ("expressions take $name, numbers, 'text', true/false, + - * / // %, "
                "comparisons, and/or/not, 'A if COND else B', $table[key] and "
                "min/max/make_divisible/len")


class ExpressionError(Exception):
    def __init__(self, message: str, path: tuple = (), hint: str | None = None):
        super().__init__(message)
        self.path, self.hint = path, hint


# ---- value kinds ---------------------------------------------------------------------------

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


def family(value: Any) -> str:
    """Values of one family compare with each other (an integer with a float)."""
    return "number" if is_number(value) else kind_of(value)


def has_expression(value: Any) -> bool:
    return isinstance(value, str) and "$" in value


# ---- parsing -------------------------------------------------------------------------------

def tokenize(text: str) -> list[tuple[str, Any]]:
    tokens, pos, end = [], 0, len(text.rstrip())
    while pos < end:
        match = TOKEN.match(text, pos)
        if not match:
            raise ExpressionError(_unreadable(text, text[pos:].strip()), hint=GRAMMAR_HINT)
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "op" and text.startswith("**", match.start(kind)):
            raise ExpressionError(f"'**' (power) is not part of expressions, in '{text}'",
                                  hint="multiply, or compute the value in params")
        if kind == "int":
            tokens.append(("num", int(value)))
        elif kind == "float":
            tokens.append(("num", float(value)))
        elif kind in ("str1", "str2"):
            tokens.append(("str", value))
        else:
            tokens.append((kind, value))
        pos = match.end()
    return tokens


def _unreadable(text: str, rest: str) -> str:
    if rest.startswith(".") and re.match(r"\.\s*[A-Za-z_]", rest):
        return f"attribute access ('{rest.split()[0]}') is not part of expressions, in '{text}'"
    if rest.startswith("**"):
        return f"'**' (power) is not part of expressions, in '{text}'"
    if rest[:1] in "'\"":
        return f"unterminated string {rest[:1]}...{rest[:1]} in '{text}'"
    if rest.startswith(("=", "!")):
        return f"cannot read '{rest[:2]}' in '{text}': compare with == or !=, negate with not"
    if rest.startswith("$"):
        return f"'$' must be followed by a name in '{text}'"
    return f"cannot read expression '{text}' at '{rest}'"


@functools.lru_cache(maxsize=4096)
def parse(text: str) -> tuple:
    """The syntax tree of an expression (tuples), or ExpressionError. Cached: a repeat's copies
    evaluate the same few texts many times."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression longer than {MAX_EXPRESSION_CHARS} characters",
                              hint="split it: compute parts in params")
    parser = _Parser(text, tokenize(text))
    tree = parser.expression()
    if parser.pos != len(parser.tokens):
        raise ExpressionError(f"unexpected {parser.shown(parser.tokens[parser.pos])} in '{text}'",
                              hint=GRAMMAR_HINT)
    return tree


class _Parser:
    """Precedence climbing: few Python frames per nesting level (blocks nest deep already)."""

    def __init__(self, text: str, tokens: list):
        self.text, self.tokens, self.pos, self.depth = text, tokens, 0, 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else ("end", None)

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        self.pos += 1
        return token

    def shown(self, token) -> str:
        kind, value = token
        return "end of expression" if kind == "end" else f"'{value}'" if kind != "str" \
            else f"'{value}' (a string)"

    def expect(self, kind: str, value: Any) -> None:
        token = self.take()
        if token != (kind, value):
            where = "unexpected end of expression" if token[0] == "end" else \
                f"unexpected {self.shown(token)}"
            raise ExpressionError(f"{where} in '{self.text}' (expected '{value}')",
                                  hint=GRAMMAR_HINT)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests too deeply (more than {MAX_DEPTH} levels)",
                                  hint="simplify it")

    def expression(self) -> tuple:
        self.nest()
        value = self.binary(1)
        if self.peek() == ("word", "if"):
            self.take()
            condition = self.binary(1)
            self.expect("word", "else")
            value = ("if", condition, value, self.expression())
        self.depth -= 1
        return value

    def binary(self, lowest: int) -> tuple:
        left = self.unary(lowest)
        while True:
            kind, op = self.peek()
            level = LEVELS.get(op) if kind in ("op", "word") else None
            if level is None or level < lowest:
                return left
            self.take()
            if level == 4:  # a == b < c: chained, as in Python
                chain = [(op, self.binary(5))]
                while self.peek()[0] == "op" and self.peek()[1] in COMPARISONS:
                    chain.append((self.take()[1], self.binary(5)))
                left = ("cmp", left, tuple(chain))
            else:
                left = ("op", op, left, self.binary(level + 1))

    def unary(self, lowest: int) -> tuple:
        token = self.peek()
        if token == ("word", "not") and lowest <= 3:
            self.take()
            self.nest()
            value = ("not", self.binary(3))
            self.depth -= 1
            return value
        if token in (("op", "-"), ("op", "+")):
            self.take()
            self.nest()
            value = ("neg" if token[1] == "-" else "pos", self.unary(7))
            self.depth -= 1
            return value
        return self.postfix()

    def postfix(self) -> tuple:
        value = self.atom()
        while self.peek() == ("op", "["):
            self.take()
            value = ("index", value, self.expression())
            self.expect("op", "]")
        return value

    def atom(self) -> tuple:
        kind, value = token = self.take()
        if kind in ("num", "str"):
            return ("const", value)
        if kind == "var":
            return ("var", value)
        if token == ("op", "("):
            inner = self.expression()
            if self.peek() != ("op", ")"):
                raise ExpressionError(f"missing ')' in '{self.text}'", hint=GRAMMAR_HINT)
            self.take()
            return inner
        if kind == "word":
            return self.word(value)
        if kind == "end":
            raise ExpressionError(f"unexpected end of expression '{self.text}'",
                                  hint="write '$name', numbers, operators and parentheses")
        raise ExpressionError(f"unexpected {self.shown(token)} in '{self.text}'",
                              hint=GRAMMAR_HINT)

    def word(self, word: str) -> tuple:
        if word in ("true", "false"):
            return ("const", word == "true")
        if word in HELPERS and self.peek() == ("op", "("):
            self.take()
            args = []
            if self.peek() != ("op", ")"):
                args.append(self.expression())
                while self.peek() == ("op", ","):
                    self.take()
                    args.append(self.expression())
            self.expect("op", ")")
            return ("call", word, tuple(args))
        if self.peek() == ("op", "("):
            close = suggest(word, list(HELPERS))
            raise ExpressionError(f"unknown function '{word}' in '{self.text}'",
                                  hint=f"did you mean '{close}'?" if close else
                                  f"the functions are {', '.join(HELPERS)}")
        if word in ("True", "False"):
            hint = f"write {word.lower()}"
        elif word in KEYWORDS:
            hint = GRAMMAR_HINT
        else:
            hint = f"write '${word}' for a parameter, or '{word}' in quotes for text"
        raise ExpressionError(f"unexpected '{word}' in '{self.text}'", hint=hint)


def source_of(node: tuple) -> str:
    """A short text of a syntax tree, for messages."""
    tag = node[0]
    if tag == "var":
        return f"${node[1]}"
    if tag == "const":
        return repr(node[1]) if isinstance(node[1], str) else str(node[1]).lower() \
            if isinstance(node[1], bool) else str(node[1])
    if tag == "index":
        return f"{source_of(node[1])}[{source_of(node[2])}]"
    if tag == "call":
        return f"{node[1]}(...)"
    return "(...)"


# ---- evaluation ----------------------------------------------------------------------------

def evaluate(text: str, values: dict[str, Any]) -> Any:
    """The value of an expression over the variables `values` (ExpressionError if it has none)."""
    return _Evaluator(text, values).value(parse(text))


def evaluate_string(text: str, values: dict[str, Any]) -> Any:
    """A spec string holding '$': a template if it holds '${', else one expression."""
    if "${" in text:
        return render_template(text, values)
    return evaluate(text, values)


def render_template(text: str, values: dict[str, Any]) -> str:
    if len(text) > MAX_TEMPLATE_CHARS:
        raise ExpressionError(f"template longer than {MAX_TEMPLATE_CHARS} characters",
                              hint="shorten the text")
    out, pos = [], 0
    while pos < len(text):
        start = text.find("$", pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        if not text.startswith("${", start):
            raise ExpressionError(f"'$' outside '${{...}}' in template '{text}'",
                                  hint="in a text with '${...}', write every expression inside "
                                       "one, e.g. 'conv${$i + 1}'")
        end = _closing_brace(text, start + 2)
        if end < 0:
            raise ExpressionError(f"missing '}}' in template '{text}'",
                                  hint="write '${expression}'")
        value = evaluate(text[start + 2:end], values)
        out.append(_as_text(value, text))
        pos = end + 1
    result = "".join(out)
    if len(result) > MAX_STRING:
        raise ExpressionError(f"template '{text[:40]}...' gives more than {MAX_STRING} characters",
                              hint="check the expressions inside '${...}'")
    return result


def _closing_brace(text: str, pos: int) -> int:
    quote = None
    for i in range(pos, len(text)):
        c = text[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "}":
            return i
    return -1


def _as_text(value: Any, text: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if is_number(value) or isinstance(value, str):
        return str(value)
    raise ExpressionError(f"a template joins text and numbers; an expression in '{text}' gives "
                          f"{kind_of(value)}", hint="index the list or mapping: ${$list[0]}")


class _Evaluator:
    def __init__(self, text: str, values: dict[str, Any]):
        self.text, self.values = text, values

    def fail(self, message: str, hint: str | None = None):
        raise ExpressionError(f"{message} in '{self.text}'", hint=hint or
                              "check the expression and the values of its parameters")

    def value(self, node: tuple) -> Any:
        tag = node[0]
        if tag == "const":
            return self.bounded(node[1])
        if tag == "var":
            return self.variable(node[1])
        if tag == "op":
            return self.binary(node[1], node[2], node[3])
        if tag == "cmp":
            return self.compare(node[1], node[2])
        if tag == "not":
            return not self.condition(node[1], "not")
        if tag in ("neg", "pos"):
            operand = self.value(node[1])
            sign = "-" if tag == "neg" else "+"
            if not is_number(operand):
                raise ExpressionError(f"'{sign}' needs a number in '{self.text}', got "
                                      f"{kind_of(operand)}",
                                      hint="negate integer or float parameters only")
            return self.bounded(-operand if tag == "neg" else operand)
        if tag == "if":
            return self.value(node[2] if self.condition(node[1], "if") else node[3])
        if tag == "index":
            return self.index(self.value(node[1]), self.value(node[2]), node[1])
        if tag == "call":
            return self.bounded(HELPERS[node[1]](self, [self.value(a) for a in node[2]]))
        raise AssertionError(tag)

    def variable(self, name: str) -> Any:
        if name not in self.values:
            known = list(self.values)
            close = suggest(name, known)
            declare = "declare it under 'params:' at the top of the spec, or in a block's params"
            if close and close not in INCOMING:
                hint = f"did you mean '${close}'?"
            elif close:
                hint = f"did you mean '${close}'? Else {declare}"
            else:
                params = [k for k in known if k not in INCOMING]
                hint = f"parameters here: {', '.join(params)}" if params else \
                    f"no parameters are declared here: {declare}"
            raise ExpressionError(f"unknown parameter '${name}'", hint=hint)
        return self.values[name]

    def condition(self, node: tuple, where: str) -> bool:
        value = self.value(node)
        if not isinstance(value, bool):
            self.fail(f"'{where}' needs true or false, got {kind_of(value)}",
                      hint="compare it, e.g. '$i == 0' or '$n > 1'")
        return value

    def binary(self, op: str, left: tuple, right: tuple) -> Any:
        if op in ("and", "or"):
            first = self.condition(left, op)
            if first == (op == "or"):  # short-circuit, as Python
                return first
            return self.condition(right, op)
        a, b = self.value(left), self.value(right)
        if op == "+" and family(a) == family(b) and isinstance(a, (str, list)):
            return self.bounded(a + b)
        if not (is_number(a) and is_number(b)):
            joins = " (two strings or two lists join)" if op == "+" else ""
            self.fail(f"'{op}' needs numbers{joins}, got {kind_of(a)} {op} {kind_of(b)}",
                      hint="arithmetic takes integer and float values; true/false, text, lists "
                           "and mappings are not numbers")
        if op in ("/", "//", "%") and b == 0:
            self.fail("division by zero", hint="check the divisor's parameters")
        return self.bounded(OPERATORS[op](a, b))

    def compare(self, first: tuple, chain: tuple) -> bool:
        a = self.value(first)
        for op, node in chain:
            b = self.value(node)
            if family(a) != family(b):
                self.fail(f"'{op}' compares {kind_of(a)} with {kind_of(b)}",
                          hint="compare values of one kind (numbers with numbers, text with text)")
            if op not in ("==", "!=") and family(a) not in ("number", "a string"):
                self.fail(f"'{op}' orders numbers or strings, got {kind_of(a)}",
                          hint="compare their items instead")
            if not OPERATORS[op](a, b):
                return False
            a = b
        return True

    def index(self, container: Any, key: Any, node: tuple) -> Any:
        what = f"'{source_of(node)}'"
        if isinstance(container, list):
            if not is_int(key):
                self.fail(f"{what} is a list, indexed by an integer, not by {kind_of(key)}",
                          hint="a list's items are numbered from 0: $list[0]")
            if not -len(container) <= key < len(container):
                self.fail(f"index {key} is out of range: {what} has {len(container)} "
                          f"item{'s' if len(container) != 1 else ''}",
                          hint=f"indexes run from 0 to {len(container) - 1}" if container else
                          "the list is empty")
            return container[key]
        if isinstance(container, dict):
            if not (is_int(key) or isinstance(key, str)):
                self.fail(f"{what} is a mapping, indexed by a key (text or an integer), not "
                          f"by {kind_of(key)}", hint="index with one of its keys: $table[50]")
            text = str(key)  # YAML keys are text: 50 finds the key written 50
            if text not in container:
                keys = [str(k) for k in container]
                close = suggest(text, keys)
                self.fail(f"{what} has no key {text}",
                          hint=f"did you mean {close!r}?" if close else
                          f"its keys: {', '.join(keys[:12]) or 'none'}")
            return container[text]
        self.fail(f"only lists and mappings can be indexed; {what} is {kind_of(container)}",
                  hint="leave out the [...]")

    def bounded(self, result: Any) -> Any:
        if is_number(result) and not abs(result) <= MAX_RESULT:  # also NaN and infinities
            raise ExpressionError(f"'{self.text}' is too large (more than {MAX_RESULT:.0e})",
                                  hint="check the expression and its parameters")
        if isinstance(result, (str, list)) and len(result) > (
                MAX_STRING if isinstance(result, str) else MAX_ITEMS):
            raise ExpressionError(f"'{self.text}' gives {kind_of(result)} longer than "
                                  f"{MAX_STRING if isinstance(result, str) else MAX_ITEMS:,}",
                                  hint="check the expression and its parameters")
        return result

    # -- the fixed helpers --

    def numbers(self, name: str, args: list) -> list:
        items = args[0] if len(args) == 1 and isinstance(args[0], list) else args
        if not items:
            self.fail(f"{name}() needs at least one number")
        for item in items:
            if not is_number(item):
                self.fail(f"{name}() takes numbers, got {kind_of(item)}")
        return items


def _min(ev: _Evaluator, args: list) -> Any:
    return min(ev.numbers("min", args))


def _max(ev: _Evaluator, args: list) -> Any:
    return max(ev.numbers("max", args))


def _make_divisible(ev: _Evaluator, args: list) -> int:
    """MobileNet's rounding of a channel count to a multiple of divisor, never more than 10%
    below the value."""
    if len(args) != 2:
        ev.fail(f"make_divisible() takes 2 arguments (value, divisor), got {len(args)}")
    value, divisor = args
    if not is_number(value) or not is_int(divisor) or divisor < 1 or value < 0:
        ev.fail(f"make_divisible() takes a non-negative number and a positive integer, got "
                f"{kind_of(value)} and {kind_of(divisor)}")
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _len(ev: _Evaluator, args: list) -> int:
    if len(args) != 1 or not isinstance(args[0], (list, dict, str)):
        ev.fail("len() takes one list, mapping or string" +
                (f", got {kind_of(args[0])}" if len(args) == 1 else ""))
    return len(args[0])


HELPERS: dict[str, Callable[[_Evaluator, list], Any]] = {
    "min": _min, "max": _max, "make_divisible": _make_divisible, "len": _len}
