"""The composite protocol: how a composite kind (archspec/layers/blocks.py) drives expansion.

A composite is a class registered with ``register_composite``: a ``name``, a ``stem`` (its
automatic names: res1, res2), a pydantic ``Config`` and ``expand(host, cfg, use)``, which turns
one validated use into nodes and returns the node giving the block's output (None after a
reported error). It reaches the expander only through ``Host`` below; the expander owns names,
numbering, scopes, limits and diagnostics, so the naming rules live in one place
(``Expander.claim``/``next_name``).

A typical composite::

    def expand(self, host, cfg, use):
        start, inner = host.begin(use, cfg)        # its input, and its own scope
        if inner is None:
            return None
        out = host.expand(cfg.layers, use.path + ("layers",), inner, start)
        return host.close(use.scope, inner, out)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..ir import Path
    from .expand import Scope


@dataclass
class Use:
    """One use of a block: the item as written, where, and what an enclosing composite decided
    for it (a repeat copy that is a single block is named by its index and sees the index)."""
    item: dict
    path: Path
    scope: Scope               # the enclosing scope
    current: str | None        # the output of the layer above: the default input
    name: str | None = None    # given by the enclosing composite, else the item's `name:`
    fixed: bool = False        # `name` is the compiler's choice (a copy's index): numbering wins
    stem: str | None = None    # automatic names when unnamed (a user block's name), else the kind's
    values: dict[str, Any] = field(default_factory=dict)  # variables its scope binds
    inline: bool = False       # no scope of its own (an inline user block's single composite)
    frozen: bool = False       # trainable: false on an enclosing instance
    title: str | None = None   # the user block it instantiates, for the diagram


class Host(Protocol):
    """What a composite may ask of the expander; nothing else of it is theirs to touch."""

    def begin(self, use: Use, cfg) -> tuple[str | None, Scope | None]:
        """The block's input (its `from:`, else the layer above) and its own scope, named by
        `use.name`/`name:` or the next automatic name (a number in a numbered scope), numbered
        if cfg.numbered, a view of the enclosing scope if cfg.inline. None after an error."""

    def open(self, outer: Scope, path: Path, kind: str, stem: str, *, name: Any = None,
             fixed: bool = False, name_path: Path | None = None, name_at_key: bool = False,
             numbered: bool = False, values: dict | None = None, input: str | None,
             frozen: bool = False, inline: bool = False) -> Scope | None:
        """A scope inside the block (a branch, a repeat copy, a named shortcut): `name` chosen
        by the user (reported at `name_path`, or at its key if `name_at_key`, when it clashes)
        or, `fixed`, by the compiler; `values` are the variables it binds; `input` is what
        `input` names inside it; `inline` gives a view of `outer` instead (no name)."""

    def close(self, outer: Scope, inner: Scope, output: str | None) -> str | None:
        """End `inner`: its name in `outer` now means `output`. Returns `output`."""

    def expand(self, items: Any, path: Path, scope: Scope, current: str | None) -> str | None:
        """Expand a list of layers in `scope`, the first reading `current`; the last output."""

    def expand_item(self, item: Any, path: Path, scope: Scope, current: str | None, *,
                    name: str | None = None, values: dict | None = None) -> str | None:
        """Expand one item; a block item gets the given name and variables."""

    def insert(self, scope: Scope, kind_name: str, fields: dict, inputs: list[str | None],
               path: Path, *, name: str | None = None, skip: tuple[int, ...] = ()) -> str | None:
        """Add a node the compiler inserts (a merge, a projection, a separable conv's parts)
        under a fixed name; `skip` marks the inputs that are skip connections."""

    def activate(self, scope: Scope, activation: str, source: str | None, path: Path
                 ) -> str | None:
        """Add the node an `activation:` field asks for after `source`."""

    def error(self, path: Path, message: str, *, hint=None, scope: Scope | None = None
              ) -> Any:
        """Report a located problem (once, however many copies meet it)."""

    def validate(self, model, data: dict, path: Path, scope: Scope) -> Any:
        """`data` (a nested mapping, e.g. a shortcut's) as `model`, or None after reporting each
        problem at its place (unknown fields with did-you-mean)."""

    def render_name(self, template: str, scope: Scope, values: dict, path: Path) -> str | None:
        """The name a template gives ('denselayer${$i + 1}') over the variables of `scope` and
        `values`; None after a reported error."""

    def size(self) -> int:
        """Nodes so far."""

    def room_for(self, copies: int, per_copy: int, path: Path, scope: Scope) -> bool:
        """After a repeat's first copy: False (reported) if all copies would pass the limit."""

    @property
    def stopped(self) -> bool:
        """Expansion stopped (the spec is too big): a composite should return at once."""


HOST_MEMBERS = frozenset(name for name in vars(Host) if not name.startswith("_"))
