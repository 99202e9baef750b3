"""Tests for the safe YAML front end (archspec.frontend.yaml_loader)."""
from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest
import yaml

import archspec.frontend.yaml_loader as yl
from archspec.errors import Diagnostic, SpecError
from archspec.frontend.yaml_loader import Limits, SourceMap, load_yaml, load_yaml_file

HAVE_LIBYAML = hasattr(yaml, "CSafeLoader")


@pytest.fixture(params=["libyaml", "python"])
def any_loader(request, monkeypatch):
    """Run a test with the libyaml event source and with the pure-Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(yl, "_SpecLoader", yl._PySpecLoader)
        monkeypatch.setattr(yl, "_CParser", None)
    elif not HAVE_LIBYAML:
        pytest.skip("PyYAML built without libyaml")
    return request.param


def error_of(source, **kwargs) -> Diagnostic:
    with pytest.raises(SpecError) as info:
        load_yaml(source, **kwargs)
    [diag] = info.value.diagnostics
    assert diag.file == kwargs.get("filename", "<string>")
    assert diag.hint, "every loader error carries a hint"
    return diag


def where(diag: Diagnostic) -> tuple[int | None, int | None]:
    return diag.line, diag.column


# --------------------------------------------------------------------------- valid data + positions

SPEC = (
    "name: vgg\n"  # 1
    "layers:\n"  # 2
    "  - type: conv\n"  # 3
    "    kernel_size: 3\n"  # 4
    "  - {type: pool, size: [2, 2]}\n"  # 5
    "date: 2020-01-01\n"  # 6
    "rate: 0.5\n"  # 7
    "flags: [true, null, ~, -7, 0x1F]\n"  # 8
)


def test_valid_nested_data(any_loader):
    data, smap = load_yaml(SPEC, filename="specs/vgg.yaml")
    assert data == {
        "name": "vgg",
        "layers": [{"type": "conv", "kernel_size": 3}, {"type": "pool", "size": [2, 2]}],
        "date": "2020-01-01",  # an implicit timestamp stays a string
        "rate": 0.5,
        "flags": [True, None, None, -7, 31],
    }
    assert smap.file == "specs/vgg.yaml"
    assert smap.lines[4] == "  - {type: pool, size: [2, 2]}"


def test_value_positions(any_loader):
    _, smap = load_yaml(SPEC)
    assert smap.position(()) == (1, 1)
    assert smap.position(("name",)) == (1, 7)
    assert smap.position(("layers",)) == (3, 3)  # the first '-'
    assert smap.position(("layers", 0)) == (3, 5)  # a block mapping starts at its first key
    assert smap.position(("layers", 0, "type")) == (3, 11)
    assert smap.position(("layers", 0, "kernel_size")) == (4, 18)
    assert smap.position(("layers", 1)) == (5, 5)  # the '{'
    assert smap.position(("layers", 1, "size")) == (5, 24)
    assert smap.position(("layers", 1, "size", 1)) == (5, 28)
    assert smap.position(("date",)) == (6, 7)


def test_position_falls_back_to_nearest_ancestor():
    _, smap = load_yaml(SPEC)
    assert smap.position(("layers", 0, "missing")) == (3, 5)
    assert smap.position(("layers", 1, "size", 7, "x")) == (5, 24)
    assert smap.position(("nope", "deeper")) == (1, 1)
    assert SourceMap("<x>").position(("a",)) is None


def test_key_position_vs_position():
    _, smap = load_yaml(SPEC)
    assert smap.key_position(("layers", 0, "kernel_size")) == (4, 5)
    assert smap.position(("layers", 0, "kernel_size")) == (4, 18)
    assert smap.key_position(("layers", 1, "size")) == (5, 18)
    assert smap.key_position(("layers",)) == (2, 1)
    # A list item has no key: falls back to the value's position.
    assert smap.key_position(("layers", 1)) == (5, 5)


def test_diagnostic_helper():
    _, smap = load_yaml(SPEC, filename="net.yaml")
    diag = smap.diagnostic(("layers", 0, "kernel_size"), "bad kernel", hint="use 3", layer="conv", notes=["n"])
    assert (diag.file, diag.line, diag.column) == ("net.yaml", 4, 18)
    assert (diag.message, diag.hint, diag.layer, diag.notes) == ("bad kernel", "use 3", "conv", ["n"])
    assert where(smap.diagnostic(("layers", 0, "kernel_size"), "m", at_key=True)) == (4, 5)
    assert "    kernel_size: 3\n" + " " * 19 + "^" in diag.format(smap.lines)


def test_alias_fallback():
    _, smap = load_yaml(SPEC)
    # A later pass moves the pool layer's "size" to a new "window" entry.
    smap.alias(("layers", 1, "window"), ("layers", 1, "size"))
    assert smap.position(("layers", 1, "window")) == (5, 24)
    assert smap.position(("layers", 1, "window", 1)) == (5, 28)
    assert smap.position(("layers", 1, "window", 9)) == (5, 24)  # ancestor fallback through the alias
    assert smap.key_position(("layers", 1, "window")) == (5, 18)
    # An alias overrides what the document had at that path (data moved over it).
    smap.alias(("layers", 0), ("layers", 1))
    assert smap.position(("layers", 0, "type")) == (5, 12)
    # Swapping back and forth must not loop: each alias sees only earlier ones.
    smap.alias(("layers", 1), ("layers", 0))
    assert smap.position(("layers", 1, "type")) == (5, 12)


def test_yaml_aliases_positions_and_copies(any_loader):
    source = "base: &b {k: 3, v: [1]}\nuse: *b\nagain: *b\n"
    data, smap = load_yaml(source)
    assert data["use"] == data["again"] == data["base"] == {"k": 3, "v": [1]}
    data["use"]["v"].append(2)  # each use is an independent copy
    assert data["base"]["v"] == [1] and data["again"]["v"] == [1]
    assert smap.position(("base",)) == (1, 7)  # the node starts at its anchor
    assert smap.position(("use",)) == (2, 6)  # the alias keeps its own position
    assert smap.position(("use", "k")) == (1, 14)  # descendants: the anchored node's positions
    assert smap.key_position(("use", "k")) == (1, 11)
    assert smap.key_position(("use",)) == (2, 1)


def test_dates_and_explicit_core_tags_are_fine():
    data, _ = load_yaml("d: 2020-01-01\nt: 2001-12-14t21:59:43.10-05:00\nf: !!float 1\ns: !!str 12\ni: !!int '7'\n")
    assert data == {"d": "2020-01-01", "t": "2001-12-14t21:59:43.10-05:00", "f": 1.0, "s": "12", "i": 7}


def test_bom_is_accepted(any_loader):
    data, smap = load_yaml(b"\xef\xbb\xbfname: x\nk: 1\n")
    assert data == {"name": "x", "k": 1}
    assert smap.position(("name",)) == (1, 7)
    assert load_yaml("\ufeffa: 1")[0] == {"a": 1}


def test_five_thousand_line_spec_is_fast():
    layers = "".join(
        f"  - type: conv2d\n    name: conv_{i}\n    kernel_size: [3, 3]\n    stride: 1\n    activation: relu\n"
        for i in range(1000)
    )
    source = "name: big\nlayers:\n" + layers
    start = time.process_time()
    data, smap = load_yaml(source)
    assert time.process_time() - start < 0.5
    assert len(data["layers"]) == 1000
    assert smap.position(("layers", 999, "stride")) == (5001, 13)


# --------------------------------------------------------------------------- text-level errors


def test_syntax_error_position(any_loader):
    diag = error_of("name: x\nkey: a: b\n")
    assert diag.message.startswith("YAML syntax error: mapping values are not allowed")
    assert where(diag) == (2, 7)


def test_syntax_error_context_in_notes(any_loader):
    diag = error_of("a: [1, 2\nb: 3\n")
    assert where(diag) == (2, 2)
    assert diag.notes == ["while parsing a flow sequence (line 1, column 4)"]


def test_tab_indentation_hint(any_loader):
    diag = error_of("a:\n\t- b\n")
    assert where(diag) == (2, 1)
    assert "tabs" in diag.hint


def test_control_character(any_loader):
    diag = error_of("é: [\x01]\n")
    assert "U+0001" in diag.message
    assert where(diag) == (1, 5)


def test_non_utf8_bytes():
    diag = error_of(b"name: \xff\n")
    assert diag.message.startswith("file is not valid UTF-8")
    assert where(diag) == (1, 7)
    assert where(error_of(b"a: 1\nb: \xc3\xa9\xc3(\n")) == (2, 5)


def test_size_limit():
    diag = error_of("a: " + "x" * 200, limits=Limits(max_bytes=100))
    assert diag.message == "spec is 203 bytes, more than the limit of 100 bytes"
    assert where(diag) == (1, 1)
    assert "--max-bytes" in diag.hint and "Limits(max_bytes=" in diag.hint
    assert error_of(b"x" * 101, limits=Limits(max_bytes=100)).message.startswith("spec is 101 bytes")


def test_empty_file(any_loader):
    for source in ("", "   \n", "# only a comment\n", "---\n", b""):
        diag = error_of(source)
        assert diag.message == "spec is empty"
        assert where(diag) == (1, 1)


def test_two_documents(any_loader):
    diag = error_of("a: 1\n---\nb: 2\n")
    assert diag.message == "spec contains more than one YAML document"
    assert where(diag) == (2, 1)


# --------------------------------------------------------------------------- tags


def test_python_object_apply_is_refused_and_nothing_runs(any_loader, tmp_path):
    marker = tmp_path / "pwned"
    diag = error_of(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    assert diag.message == "tag '!!python/object/apply:os.system' is not allowed: a spec is data, never code"
    assert where(diag) == (1, 1)
    assert not marker.exists()
    diag = error_of(f'cmd: !!python/object/apply:os.system ["touch {marker}"]\n')
    assert where(diag) == (1, 6)
    assert not marker.exists()


@pytest.mark.parametrize(
    "source, tag, column",
    [
        ("a: !!python/name:os.system\n", "!!python/name:os.system", 4),
        ("a: !custom x\n", "!custom", 4),
        ("a: !custom {b: 1}\n", "!custom", 4),
        ("a: !!binary aGk=\n", "!!binary", 4),
        ("a: !!timestamp 2020-01-01\n", "!!timestamp", 4),
        ("a: !!set {x, y}\n", "!!set", 4),
        ("a: !!omap [b: 1]\n", "!!omap", 4),
        ("a: !<tag:example.com,2000:x> 1\n", "tag:example.com,2000:x", 4),
    ],
)
def test_other_tags_are_refused(any_loader, source, tag, column):
    diag = error_of(source)
    assert diag.message == f"tag '{tag}' is not allowed: a spec is data, never code"
    assert where(diag) == (1, column)


def test_explicit_core_tag_on_wrong_value():
    assert error_of("a: !!int abc\n").message == "value 'abc' is not a valid !!int"
    assert error_of("a: !!null x\n").message == "value 'x' is not a valid !!null"
    assert error_of("a: !!map [1]\n").message == "tag '!!map' cannot be applied to a list"


# --------------------------------------------------------------------------- numbers


def test_huge_integer_is_refused_before_conversion(any_loader):
    start = time.process_time()
    diag = error_of("n: 1" + "0" * 4000 + "\n")
    assert time.process_time() - start < 0.5
    assert diag.message.startswith("integer has 4,001 digits, more than the limit of 30")
    assert where(diag) == (1, 4)
    assert "max_int_digits" in diag.hint
    assert load_yaml("n: 1_000_000\nm: -" + "9" * 30)[0] == {"n": 1_000_000, "m": -int("9" * 30)}


@pytest.mark.parametrize("literal", [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1.0e+999"])
def test_nan_and_infinity_are_refused(any_loader, literal):
    diag = error_of(f"x: 1\nlr: {literal}\n")
    assert diag.message == "NaN or infinite number is not allowed"
    assert where(diag) == (2, 5)


def test_long_scalar_is_refused():
    diag = error_of("a: 1\nb: " + "x" * 50 + "\n", limits=Limits(max_scalar_chars=40))
    assert diag.message.startswith("value is 50 characters long, more than the limit of 40")
    assert where(diag) == (2, 4)


# --------------------------------------------------------------------------- keys


def test_duplicate_key(any_loader):
    diag = error_of("a: 1\nb:\n  c: 2\n  c: 3\n")
    assert diag.message == "duplicate key 'c'"
    assert where(diag) == (4, 3)
    assert diag.notes == ["first 'c' is at line 3, column 3"]


def test_merge_key(any_loader):
    diag = error_of("base: &b {k: 3}\nconv:\n  <<: *b\n  s: 1\n")
    assert diag.message == "merge keys ('<<') are not supported"
    assert where(diag) == (3, 3)
    assert "user-defined block" in diag.hint


@pytest.mark.parametrize(
    "source, shown",
    [
        ("1.5: x\n", "1.5 is not a string (YAML reads it as !!float)"),
        ("0x1F: x\n", "0x1F is not a string (YAML reads it as !!int)"),
        ("on: x\n", "on is not a string (YAML reads it as !!bool)"),
    ],
)
def test_non_string_key(any_loader, source, shown):
    diag = error_of("ok: 1\n" + source)
    assert diag.message == f"mapping key {shown}"
    assert where(diag) == (2, 1)
    assert "quote" in diag.hint


def test_quoted_keys_are_strings():
    assert load_yaml("'1': x\n\"on\": y\n'<<': z\n")[0] == {"1": "x", "on": "y", "<<": "z"}


def test_collection_and_alias_keys_are_refused():
    assert where(error_of("? [a, b]\n: 1\n")) == (1, 3)
    assert error_of("a: &k x\n*k : 1\n").message == "an alias cannot be used as a mapping key"


# --------------------------------------------------------------------------- hostile structure


def billion_laughs() -> str:
    lines = ["lol0: &a0 [lol]"]
    lines += [f"lol{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def test_billion_laughs_fails_fast(any_loader):
    start = time.perf_counter()
    diag = error_of(billion_laughs())
    assert time.perf_counter() - start < 2
    assert diag.message == "spec expands to more than 1,000,000 nodes (max_nodes limit, aliases included)"
    assert diag.line == 7  # 10**6 nodes are reached inside lol6
    assert "Limits(max_nodes=" in diag.hint


def test_node_limit_counts_alias_expansion():
    source = "a: &a [1, 2, 3, 4]\nb: [*a, *a]\n"
    assert load_yaml(source, limits=Limits(max_nodes=20))[0]["b"] == [[1, 2, 3, 4]] * 2
    with pytest.raises(SpecError):
        load_yaml(source, limits=Limits(max_nodes=15))


@pytest.mark.parametrize("source", ["a: &a [*a]\n", "a: &a {b: [1, *a]}\n"])
def test_recursive_alias(any_loader, source):
    diag = error_of(source)
    assert "recursive alias" in diag.message


def test_undefined_alias_and_duplicate_anchor():
    assert error_of("a: *nope\n").message == "alias '*nope' refers to an undefined anchor"
    diag = error_of("a: &x 1\nb: &x 2\n")
    assert diag.message == "anchor '&x' is defined twice"
    assert where(diag) == (2, 4)


@pytest.mark.parametrize(
    "source, column",
    [("[" * 100_000, 101), ("- " * 100_000 + "x\n", 201)],
    ids=["flow", "block"],
)
def test_deep_nesting_fails_fast(source, column):
    start = time.process_time()  # CPU time: another test process may share the core
    diag = error_of(source)
    assert time.process_time() - start < 1
    assert diag.message == "spec is nested more than 100 levels deep (max_depth limit)"
    assert where(diag) == (1, column)


def events_or_error(loader_class, text: str) -> list:
    events = []
    try:
        loader = loader_class(text)
        while loader.check_event():
            e = loader.get_event()
            events.append((type(e).__name__, getattr(e, "value", None), e.start_mark.line,
                           e.start_mark.column, e.end_mark.column))
    except yaml.YAMLError as exc:
        events.append(str(exc))
    return events


ROOT = Path(__file__).resolve().parent.parent
YAML_FILES = sorted([*(ROOT / "specs").glob("*.yaml"), *(ROOT / "tests" / "bad_specs").glob("*.yaml")])
TRICKY = ["{a: [b, {c: d}], e: f}", "[a: 1, b]", "? a\n: b\n", "- {a\n  : b}\n", "[" * 2000,
          "{" * 1500 + "a: b", "a: [" + "x, " * 600 + "y]\n" + "b: " + "c" * 1100 + ": d\n",
          "a:\n  b: c\n d: e\n", "'" + "x" * 2000 + "': 1\n", "[a\n, b]"]


@pytest.mark.parametrize("text", [p.read_text("utf-8", "replace") for p in YAML_FILES] + TRICKY,
                         ids=[p.name for p in YAML_FILES] + [f"tricky{i}" for i in range(len(TRICKY))])
def test_our_faster_python_scanner_gives_pyyamls_events(text):
    """_PySpecLoader only finds pending simple keys faster; every event and error is PyYAML's."""
    assert events_or_error(yl._PySpecLoader, text) == events_or_error(yaml.SafeLoader, text)


def test_nesting_allowed_beyond_libyamls_own_limit(any_loader):
    """libyaml 0.2.6 (PyYAML 6.0.4) refuses more than 1000 levels by itself; our limit decides."""
    limits = Limits(max_depth=1500)
    data, _ = load_yaml("[" * 1200 + "]" * 1200, limits=limits)
    for _ in range(1199):
        [data] = data
    assert data == []
    diag = error_of("[" * 1600, limits=limits)
    assert diag.message == "spec is nested more than 1500 levels deep (max_depth limit)"
    assert where(diag) == (1, 1501)


@pytest.mark.skipif(not HAVE_LIBYAML, reason="PyYAML built without libyaml")
@pytest.mark.parametrize("context", ["while increasing flow level", "while increasing block level"])
def test_libyamls_nesting_error_becomes_our_located_diagnostic(monkeypatch, context):
    """Whatever limit the installed libyaml has, it fails as libyaml 0.2.6 does: in the scanner,
    ahead of the events, at a position past ours."""

    class EarlyLimitLoader(yl._SpecLoader):
        def get_event(self):
            event = super().get_event()
            if event.start_mark.column >= 50:
                raise yaml.scanner.ScannerError(context, event.start_mark,
                                                "exceeded maximum nesting depth", event.start_mark)
            return event

    monkeypatch.setattr(yl, "_SpecLoader", EarlyLimitLoader)
    diag = error_of("x: " + "[" * 1_000, limits=Limits(max_depth=20))
    assert diag.message == "spec is nested more than 20 levels deep (max_depth limit)"
    assert where(diag) == (1, 23)  # the mapping is level 1, the 20th "[" level 21
    assert load_yaml("x: " + "[" * 30 + "]" * 30, limits=Limits(max_depth=40))[0]["x"]


@pytest.mark.parametrize("source", ["[" * 100_000, "{a: " * 100_000, "[a, " * 100_000])
def test_deep_flow_nesting_fails_fast_without_libyaml(source):
    """The pure-Python parser is our fallback when libyaml stops at its own limit."""
    loader = yl._PySpecLoader
    gc.collect()  # a full collection of what earlier tests in this worker left is not the parser's
    gc.disable()
    try:
        start = time.process_time()
        with pytest.raises(SpecError, match="nested more than 100 levels"):
            yl._parse(loader, source, Limits(), SourceMap())
        elapsed = time.process_time() - start
    finally:
        gc.enable()
    assert elapsed < 0.15  # PyYAML's own scanner took 0.4 s


def test_deep_nesting_block_python_fallback(any_loader):
    assert "max_depth" in error_of("- " * 100_000 + "x\n").message


def test_depth_limit_edges():
    ok = "[" * 100 + "]" * 100
    assert load_yaml(ok)[0] is not None
    assert "max_depth" in error_of("[" * 101 + "]" * 101).message
    # Depth added by an alias counts where the alias is used.
    nested = "a: &a " + "[" * 3 + "]" * 3 + "\nb: [[*a]]\n"
    assert load_yaml(nested, limits=Limits(max_depth=6))[0]["b"] == [[[[[]]]]]
    assert "max_depth" in error_of(nested, limits=Limits(max_depth=5)).message


# --------------------------------------------------------------------------- files


def test_load_file(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_bytes(b"name: net\n")
    data, smap = load_yaml_file(path)
    assert data == {"name": "net"} and smap.file == str(path)
    assert load_yaml_file(path, display_name="specs/net.yaml")[1].file == "specs/net.yaml"


def test_file_size_checked_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"a: " + b"x" * 200)

    def no_open(*args, **kwargs):
        raise AssertionError("file was opened")

    monkeypatch.setattr(yl, "open", no_open, raising=False)
    with pytest.raises(SpecError) as info:
        load_yaml_file(path, limits=Limits(max_bytes=100), display_name="big.yaml")
    [diag] = info.value.diagnostics
    assert (diag.file, diag.line, diag.column) == ("big.yaml", 1, 1)
    assert diag.message == "spec is 203 bytes, more than the limit of 100 bytes"


def test_missing_file(tmp_path):
    with pytest.raises(SpecError) as info:
        load_yaml_file(tmp_path / "nope.yaml", display_name="nope.yaml")
    [diag] = info.value.diagnostics
    assert diag.file == "nope.yaml" and diag.message.startswith("cannot read spec file")
    assert diag.hint


# --------------------------------------------------------------------------- YAML 1.1 numerals


@pytest.mark.parametrize("text, message", [
    ("1:30", "1:30 is a base-60 number in YAML 1.1 (it reads as 90)"),
    ("-1:00:01", "-1:00:01 is a base-60 number in YAML 1.1 (it reads as -3601)"),
    ("1:30.5", "1:30.5 is a base-60 number in YAML 1.1 (it reads as 90.5)"),
    ("!!int 1:30", "1:30 is a base-60 number in YAML 1.1 (it reads as 90)"),
    ("017", "017 has a leading zero, which YAML 1.1 reads as octal (15)"),
    ("-0_17", "-0_17 has a leading zero, which YAML 1.1 reads as octal (-15)"),
    ("00", "00 has a leading zero, which YAML 1.1 reads as octal (0)"),
    ("08", "08 has a leading zero, which YAML 1.1 reads as text, not a number"),
    ("019", "019 has a leading zero, which YAML 1.1 reads as text, not a number"),
])
def test_surprising_yaml11_numerals_are_refused(any_loader, text, message):
    diag = error_of(f"a: [1, {text}]\n")
    assert diag.message == message
    assert where(diag) == (1, 8)
    assert "quote it" in diag.hint


@pytest.mark.parametrize("text, value", [
    ("0x1F", 31), ("0b101", 5), ("1_000", 1000), ("+5", 5), ("-0", 0), ("0", 0),
    ("01.5", 1.5), ("0.5", 0.5),
    # not YAML 1.1 numbers at all: text, which the schema refuses where a number is needed
    ("0o17", "0o17"), ("1:75", "1:75"),
    # quoted or tagged as text: text, as written
    ("'1:30'", "1:30"), ('"017"', "017"), ("'08'", "08"), ("!!str 017", "017"), ("! 08", "08"),
    # YAML 1.1 booleans: what a reader means where a flag is expected (the schema refuses them
    # where text is expected, with a hint to quote them)
    ("yes", True), ("off", False),
])
def test_unambiguous_yaml11_scalars_are_read(any_loader, text, value):
    data, _ = load_yaml(f"a: {text}\n")
    assert data["a"] == value and type(data["a"]) is type(value)
