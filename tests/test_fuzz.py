"""Fuzzing load + analyze: whatever the input, the only outcomes are a valid analysis or a
SpecError whose diagnostics all carry a message and a location. Any other exception, our own
InternalError included, is a bug.

Inputs: random YAML-ish text, random bytes, spec-shaped random data built from the real layer
vocabulary, and the zoo specs (specs/*.yaml) mutated at random (values replaced, keys renamed,
entries deleted or duplicated, types swapped, garbage inserted, text spliced).

Through PyTorch: mutated zoo specs that pass the analysis must compile and run on the meta
device with the analysis's figures, and damaged checkpoints (bytes flipped, truncated, keys
dropped, spec text spliced, tensors replaced) must load or raise an archspec error.

FUZZ_EXAMPLES=5000 python -m pytest tests/test_fuzz.py  runs a longer campaign.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archspec
from archspec.errors import ArchspecError, SpecError
from archspec.frontend import build_network, load_yaml
from archspec.frontend.yaml_loader import _LINE_BREAK, load_yaml_file
from archspec.layers import COMPOSITES, REGISTRY

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))
ZOO = {p.stem: load_yaml_file(p)[0] for p in SPECS}
ZOO_TEXT = {p.stem: p.read_text(encoding="utf-8") for p in SPECS}

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))


def budget(n: int, deadline: int | None = 5000):
    """hypothesis settings: n examples (or FUZZ_EXAMPLES), a per-example deadline (none for
    examples through torch, whose first compile warms up for seconds on a busy machine)."""
    return settings(max_examples=EXAMPLES or n, deadline=deadline, derandomize=not EXAMPLES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def outcome(source: str | bytes) -> None:
    """Load and analyze; only a clean result or a well-formed SpecError may come out.

    Text goes through the same steps as archspec.loads(text) (parse, then expand)."""
    text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
    try:
        data, smap = load_yaml(source)
        network = build_network(data, smap)
    except SpecError as exc:
        check_diagnostics(exc, text)
        return
    try:
        analysis = archspec.analyze(network)
    except SpecError as exc:
        check_diagnostics(exc, text)
        assert exc.partial is not None
        return
    analysis.to_json()


def check_diagnostics(exc: SpecError, text: str) -> None:
    assert exc.diagnostics, "a SpecError without diagnostics"
    n_lines = len(_LINE_BREAK.split(text)) + 1  # YAML's line breaks, as the loader counts
    for d in exc.diagnostics:
        assert isinstance(d.message, str) and d.message.strip(), d
        assert d.line is not None and d.column is not None, f"unlocated: {d}"
        assert 1 <= d.line <= n_lines and d.column >= 1, f"bad location: {d}"
        assert d.hint is None or isinstance(d.hint, str)
        d.format(text.splitlines())
        d.to_json()


# --------------------------------------------------------------------------- raw input

YAML_CHARS = st.sampled_from(list("abcxyz019 -:,[]{}#&*!|>'\"%@`?~\n\t.$_=<") +
                             ["type", "conv", "layers", "name", "input", "relu", "\n  ", "\n- ",
                              "!!python/name:os.system", "&a", "*a", "<<", "---", "...", "\x00",
                              "\u2028", "\ufeff", "é", "1e5", ".inf", ".nan", "0x1F", "0o17"])


@budget(300)
@given(st.lists(YAML_CHARS, max_size=80).map("".join))
def test_random_yaml_text(text):
    outcome(text)


@budget(300)
@given(st.text(max_size=200))
def test_random_unicode_text(text):
    outcome(text)


@budget(300)
@given(st.binary(max_size=300))
def test_random_bytes(data):
    outcome(data)


# --------------------------------------------------------------------------- spec-shaped data

FIELDS = sorted({f.alias or n for kind in {**REGISTRY, **COMPOSITES}.values()
                 for n, f in kind.Config.model_fields.items()} - {"type"})
TYPES = sorted(REGISTRY) + sorted(COMPOSITES)

SCALARS = st.one_of(
    st.sampled_from([0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 224, -1, -3, 10 ** 6, 2 ** 31, 10 ** 29,
                     0.0, 0.5, 1.5, -0.5, 3.0, 1e-5, True, False, None, "", "same", "valid",
                     "relu", "conv", "input", "x", "$c", "$c * 2", "concat", "add", "identity",
                     "projection", "zeros", "reflect", "nearest", "bilinear", "a.b", "conv1",
                     "pool1", "0"]),
    st.integers(-5, 300),
    st.text(max_size=6),
)


def values(layers):
    return st.one_of(SCALARS, st.lists(SCALARS, max_size=4),
                     st.lists(st.lists(SCALARS, max_size=3), max_size=3), layers)


@st.composite
def layer(draw, depth=0, blocks=("unit",)):
    kind = draw(st.sampled_from(TYPES + list(blocks) + ["Conv2d", "", "max_pool "]))
    if depth < 2 and draw(st.booleans()):
        nested = st.lists(layer(depth + 1, blocks), min_size=0, max_size=3)
    else:
        nested = st.just([])
    item = {"type": kind} if draw(st.integers(0, 9)) else {}
    for name in draw(st.lists(st.sampled_from(FIELDS + ["kernal_size", "units"]), max_size=5)):
        if name in ("layers", "shortcut"):
            item[name] = draw(nested)
        elif name == "branches":
            item[name] = draw(st.lists(nested, max_size=3))
        else:
            item[name] = draw(values(st.nothing()))
    if draw(st.integers(0, 5)) == 0:
        return kind  # the short form
    return item


@st.composite
def spec_data(draw):
    rank = draw(st.integers(1, 4))
    doc = {
        "name": draw(st.sampled_from(["net"] * 6 + ["x y", 5, None])),
        "input": draw(st.lists(st.integers(1, 40), min_size=rank, max_size=rank)
                      if draw(st.integers(0, 5)) else values(st.nothing())),
        "layers": draw(st.lists(layer(), max_size=8)),
    }
    if draw(st.booleans()):  # user blocks, possibly using each other (or themselves)
        names = draw(st.lists(st.sampled_from(["unit", "b1", "b2", "conv", "b 3"]), min_size=1,
                              max_size=4, unique=True))
        doc["blocks"], declared = {}, {}
        for name in names:
            params = draw(st.dictionaries(st.sampled_from(["c", "s", "k"]), SCALARS, max_size=2))
            body = draw(st.lists(layer(1, names), max_size=3))
            if params and body and isinstance(body[0], dict):
                body[0][draw(st.sampled_from(FIELDS))] = "$" + draw(st.sampled_from(
                    sorted(params) + ["nope"])) + draw(st.sampled_from(["", " * 2", " // 0", " +"]))
            doc["blocks"][name] = {"params": params, "layers": body}
            declared[name] = params
        for name in draw(st.lists(st.sampled_from(names), max_size=3)):
            use = {"type": name}
            for key in declared[name]:
                if draw(st.integers(0, 4)):
                    use[key] = draw(SCALARS)
            doc["layers"].append(use)
    if draw(st.integers(0, 4)) == 0:
        doc["outputs"] = draw(st.lists(st.sampled_from(["conv1", "relu1", "x", "input"]),
                                       max_size=2))
    for key in draw(st.lists(st.sampled_from(["name", "input", "layers"]), max_size=1)):
        doc.pop(key, None)
    return doc


def dump(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


@budget(400)
@given(spec_data())
def test_spec_shaped_random_data(doc):
    outcome(dump(doc))


# --------------------------------------------------------------------------- well-typed layers

# Values of the right type (mostly) for every field, so that expansion succeeds and each kind's
# shape rule, counts, receptive field and label run on odd but legal combinations.
ACTIVATIONS = sorted(k for k, v in REGISTRY.items() if v.family == "activation")


def _for_annotation(annotation, bounds) -> st.SearchStrategy:
    import types
    import typing
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        meta = list(bounds) + list(annotation.__metadata__)
        return _for_annotation(args[0], meta)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_for_annotation(a, bounds) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is list:
        item = _for_annotation(args[0], ()) if args and args[0] is not typing.Any else SCALARS
        return st.lists(item, min_size=1, max_size=4)
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        low = 0
        for m in bounds or ():
            low = max(low, getattr(m, "ge", None) or 0, (getattr(m, "gt", None) or -1) + 1)
        return st.integers(low, low + 6) | st.integers(-2, 40)
    if annotation is float:
        return st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0])
    return SCALARS


def typed_layer(depth: int = 0) -> st.SearchStrategy:
    @st.composite
    def build(draw):
        kind_name = draw(st.sampled_from(TYPES))
        kind = {**REGISTRY, **COMPOSITES}[kind_name]
        item = {"type": kind_name}
        for name, info in kind.Config.model_fields.items():
            key = info.alias or name
            if key in ("type", "name", "from", "trainable", "weight"):
                continue
            if not info.is_required() and draw(st.integers(0, 2)):
                continue
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            if extra.get("archspec_nested") == "layers" or key == "shortcut" and depth < 2 \
                    and draw(st.booleans()):
                item[key] = draw(st.lists(typed_layer(depth + 1), min_size=1, max_size=3)) \
                    if depth < 2 else ["relu"]
            elif extra.get("archspec_nested") == "branches":
                item[key] = draw(st.lists(st.lists(typed_layer(depth + 1) if depth < 2 else
                                                   st.just("relu"), min_size=1, max_size=2),
                                          min_size=1, max_size=3))
            elif key == "activation":
                item[key] = draw(st.sampled_from(ACTIVATIONS))
            elif key == "times":
                item[key] = draw(st.integers(1, 3))
            else:
                item[key] = draw(_for_annotation(info.annotation, info.metadata))
        if kind.Config.model_fields.get("from_") is not None and kind_name in (
                "concat", "add", "multiply", "projection"):
            item["from"] = ["input", "input"]
        return item
    return build()


@st.composite
def typed_spec(draw):
    rank = draw(st.integers(1, 4))
    shape = [draw(st.integers(1, 8))] + [draw(st.integers(1, 24)) for _ in range(rank - 1)]
    return {"name": "typed", "input": shape,
            "layers": draw(st.lists(typed_layer(), min_size=1, max_size=6))}


@budget(500)
@given(typed_spec())
def test_well_typed_random_layers(doc):
    outcome(dump(doc))


# --------------------------------------------------------------------------- mutated zoo specs


def paths(data, prefix=()):
    """Every (path, value) in nested data, containers included."""
    out = [(prefix, data)]
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths(v, prefix + (i,))
    return out


def get(data, path):
    for part in path:
        data = data[part]
    return data


GARBAGE = st.one_of(SCALARS, st.builds(lambda: {"type": "conv"}), st.builds(lambda: [1, [2, [3]]]),
                    st.builds(lambda: {"<<": 1}), st.just("!!python/name:os.system"),
                    st.dictionaries(st.sampled_from(FIELDS), SCALARS, max_size=3))


@st.composite
def mutate(draw, data):
    import copy
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(1, 4))):
        entries = [(p, v) for p, v in paths(data) if p]
        if not entries:
            break
        path, value = draw(st.sampled_from(entries))
        parent, key = get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["replace", "rename", "delete", "swap", "insert", "dup"]))
        if op == "replace":
            parent[key] = draw(GARBAGE)
        elif op == "swap":  # the same value in another type
            parent[key] = (str(value) if not isinstance(value, str) else
                           [value] if draw(st.booleans()) else {"type": value})
        elif op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.sampled_from(FIELDS + ["type", "kernal_size", str(key).upper(),
                                                 str(key) + "s", "in_channels", "from"]))
            parent[new] = parent.pop(key)
        elif op == "insert":
            if isinstance(parent, list):
                parent.insert(key, draw(GARBAGE))
            else:
                parent[draw(st.sampled_from(FIELDS + ["junk"]))] = draw(GARBAGE)
        elif op == "dup" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(value))
    return data


@pytest.mark.skipif(not ZOO, reason="no zoo specs")
@budget(400)
@given(st.data())
def test_mutated_zoo_specs(data):
    name = data.draw(st.sampled_from(sorted(ZOO)))
    outcome(dump(data.draw(mutate(ZOO[name]))))


@pytest.mark.skipif(not ZOO, reason="no zoo specs")
@budget(300)
@given(st.data())
def test_spliced_zoo_text(data):
    """Text-level damage: characters inserted, deleted or replaced at random places."""
    text = ZOO_TEXT[data.draw(st.sampled_from(sorted(ZOO_TEXT)))]
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 12))
        insert = data.draw(st.lists(YAML_CHARS, max_size=4).map("".join))
        text = text[:at] + insert + text[at + cut:]
    outcome(text)


def test_every_zoo_spec_is_valid():
    for path in SPECS:  # by path: imports are relative to the importing file
        archspec.analyze(archspec.load(path))


# --------------------------------------------------------------------------- through PyTorch

def verify_outcome(text: str) -> None:
    """A spec that passes check compiles and runs on the meta device with the analysis's shapes
    and counts; one that fails gives a located SpecError. Nothing else may come out."""
    from archspec.backends.verify import mismatches
    try:
        analysis = archspec.analyze(archspec.loads(text))
    except SpecError as exc:
        check_diagnostics(exc, text)
        return
    try:
        problems = mismatches(analysis, device="meta", batch_size=2)
    except ArchspecError as exc:
        assert exc.message.strip(), exc
        return
    assert problems == [], problems


@pytest.mark.skipif(not ZOO, reason="no zoo specs")
@budget(60, deadline=None)
@given(st.data())
def test_mutated_zoo_specs_verify_on_meta(data):
    name = data.draw(st.sampled_from(sorted(ZOO)))
    verify_outcome(dump(data.draw(mutate(ZOO[name]))))


CHECKPOINT_SPEC = """name: fuzzed
input: [3, 8, 8]
layers:
  - {type: conv, out_channels: 4, kernel_size: 3, padding: 1, bias: false}
  - batch_norm
  - relu
  - {type: max_pool, kernel_size: 2}
  - flatten
  - {type: dense, out_features: 3}
"""


def checkpoint_parts() -> dict:
    model = archspec.compile(archspec.loads(CHECKPOINT_SPEC))
    return {"format": "archspec-checkpoint/1", "spec": CHECKPOINT_SPEC,
            "state_dict": model.state_dict()}


def saved(data) -> bytes:
    import io

    import torch
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return buffer.getvalue()


@st.composite
def damaged_checkpoint(draw) -> bytes:
    import torch
    parts = checkpoint_parts()
    op = draw(st.sampled_from(["flip", "truncate", "drop", "spec", "tensor"]))
    if op in ("flip", "truncate"):
        data = bytearray(saved(parts))
        if op == "truncate":
            return bytes(data[:draw(st.integers(0, len(data) - 1))])
        for _ in range(draw(st.integers(1, 8))):
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
        return bytes(data)
    if op == "drop":
        where = draw(st.sampled_from(["top", "state"]))
        table = parts if where == "top" else parts["state_dict"]
        del table[draw(st.sampled_from(sorted(table)))]
    elif op == "spec":
        text = parts["spec"]
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(text)))
            cut = draw(st.integers(0, 8))
            text = text[:at] + draw(st.lists(YAML_CHARS, max_size=4).map("".join)) + \
                text[at + cut:]
        parts["spec"] = text
    else:
        key = draw(st.sampled_from(sorted(parts["state_dict"])))
        shape = draw(st.lists(st.integers(0, 5), max_size=4))
        dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool,
                                      torch.complex64, torch.float16]))
        parts["state_dict"][key] = torch.zeros(shape, dtype=dtype)
    return saved(parts)


@budget(200, deadline=None)
@given(damaged_checkpoint())
def test_damaged_checkpoints_give_only_archspec_errors(content):
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.pt"
        path.write_bytes(content)
        try:
            model = archspec.load_checkpoint(path)
        except ArchspecError as exc:
            assert exc.message.strip() and "weights_only=False" not in exc.message
            return
        assert set(model.state_dict()) == set(checkpoint_parts()["state_dict"])
