"""What an item's expressions see when the item is expanded, and the evaluation of its own fields.

An item is evaluated lazily, when it is expanded, in its own scope: the spec's params, the
enclosing blocks' params, repeat indexes (innermost first), and the incoming tensor's
`$in_channels` and `$in_shape`. Nested layer lists are left for their own items. An item with
no '$' in its own fields is returned as it is (the same dict), so a repeat's copies share it.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..ir import INPUT
from .expressions import INCOMING, ExpressionError, has_expression
from .params import substitute

NESTED_FIELDS = ("layers", "branches", "copy_names")  # expanded (or rendered) by the composite
LEFT_OUT = object()  # an item whose `when:` is false


class UnknownShape(ExpressionError):
    """The incoming shape is unknown: an error upstream already says why."""


class ItemVariables(Mapping):
    """The variables of a scope, plus the incoming tensor's, computed only when asked for."""

    def __init__(self, base: Mapping, incoming: Callable[[], tuple | None],
                 shape_read: Callable[[], None] = lambda: None):
        self.base, self.incoming, self.shape_read = base, incoming, shape_read

    def __getitem__(self, key: str) -> Any:
        if key in INCOMING:
            shape = self.incoming()
            if shape is None:
                raise UnknownShape(f"the incoming shape of '${key}' is unknown")
            if key == "in_channels":
                return shape[0]
            self.shape_read()
            return list(shape)
        return self.base[key]

    def __contains__(self, key: object) -> bool:
        return key in INCOMING or key in self.base

    def __iter__(self) -> Iterator[str]:
        yield from self.base
        yield from INCOMING

    def __len__(self) -> int:
        return len(self.base) + 2


class Shapes:
    """Each node's output shape, computed (on demand, in definition order) by the rules the
    analysis applies; best effort: a node whose rule fails has no shape here, and the analysis
    reports it."""

    def __init__(self, input_shape: tuple, nodes: dict):
        self.nodes, self.order, self.done = nodes, [], 0
        self.known: dict[str, tuple] = {INPUT: tuple(input_shape)}
        self.rules: dict[tuple, tuple] = {}
        self.spatial_read = False  # an item read $in_shape: the layers depend on the sizes

    def read_shape(self) -> None:
        self.spatial_read = True

    def added(self, name: str) -> None:
        self.order.append(name)

    def of(self, name: str | None) -> tuple | None:
        from ..analysis import apply_rules
        from ..layers.base import ShapeProblem
        while self.done < len(self.order):
            node = self.nodes[self.order[self.done]]
            self.done += 1
            if node.broken or any(i not in self.known for i in node.inputs):
                continue
            try:
                out = apply_rules(node, [self.known[i] for i in node.inputs], self.rules)[0]
            except ShapeProblem:
                continue
            if min(out, default=1) >= 1:
                self.known[node.name] = out
        return self.known.get(name) if name is not None else None


def has_own_expressions(item: dict) -> bool:
    """Whether the item's own fields (not its nested layer lists) hold a '$'."""
    for key, value in item.items():
        if key == "shortcut" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "layers"}
        elif _nested(key, value):
            continue
        if _mentions(value):
            return True
    return False


def evaluate_fields(item: dict, variables: Mapping, path: tuple, user_block: bool) -> dict:
    """The item with its own fields evaluated (ExpressionError with the value's path). A user
    block's fields are all its parameters: every one is evaluated."""
    out = {}
    for key, value in item.items():
        if not user_block and _nested(key, value):
            if key == "shortcut" and isinstance(value, dict):  # {name, numbered, layers}
                value = {k: v if k == "layers" else substitute(v, variables, path + (key, k))
                         for k, v in value.items()}
            out[key] = value
        else:
            out[key] = substitute(value, variables, path + (key,))
    return out


def _nested(key: str, value: Any) -> bool:
    return key in NESTED_FIELDS or key == "shortcut" and isinstance(value, (list, dict))


def _mentions(value: Any) -> bool:
    if isinstance(value, str):
        return "$" in value
    if isinstance(value, list):
        return any(_mentions(v) for v in value)
    if isinstance(value, dict):
        return any(_mentions(v) for v in value.values())
    return False


__all__ = ["LEFT_OUT", "ItemVariables", "Shapes", "UnknownShape", "evaluate_fields",
           "has_expression", "has_own_expressions"]
