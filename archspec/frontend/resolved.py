"""The resolved spec as YAML text: one self-contained document (imports inlined), which is what
a checkpoint stores so that it reloads alone. The text is read back by our own loader, so
every string it would read as something else is quoted (and the round trip is checked)."""
from __future__ import annotations

from typing import Any

import yaml

from ..errors import InternalError, SpecError
from .yaml_loader import _LEADING_ZERO, SCIENTIFIC_FLOAT, Limits, load_yaml


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, resolving plain scalars as our loader does."""


_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", SCIENTIFIC_FLOAT,
                              list("-+0123456789."))


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # A plain 08 is text to YAML 1.1 and refused by our loader as ambiguous: quote it.
    style = "'" if _LEADING_ZERO.fullmatch(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def dump_resolved(data: Any, files: list[str] = ()) -> str:
    """YAML text that our loader reads back as exactly `data`."""
    head = "".join(f"# {line}\n" for line in (
        "resolved by archspec: one document, imports inlined", *(f"from {f}" for f in files)))
    text = head + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                            default_flow_style=None, width=100)
    try:
        again, _ = load_yaml(text, "<resolved spec>", Limits(max_bytes=2 * len(text) + 1,
                                                             max_depth=10 ** 6, max_nodes=10 ** 9))
    except SpecError as exc:
        raise InternalError(f"the resolved spec does not read back: {exc.message}") from None
    if again != data:
        raise InternalError("the resolved spec reads back differently")
    return text
