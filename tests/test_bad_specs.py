"""Compiler-grade diagnostics: a corpus of bad specs, each with what a user should be told.

Every file in tests/bad_specs/ ends with one '# expect: {...}' line per diagnostic it must
produce (no more, no fewer), written as JSON:
    line, column   1-based position the diagnostic points at
    message        a substring of the message
    hint           a substring of the hint, or true: some hint (every diagnostic needs one)
    layer          (optional) the exact layer name, or null
    note           (optional) a substring of one of the notes
The corpus is checked through the API (archspec.analyze(archspec.load(path))) and through the
command line (archspec check FILE). Hostile inputs too large to commit are generated here.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import archspec
from archspec.cli import main
from archspec.errors import Diagnostic, SpecError

HERE = Path(__file__).resolve().parent
CORPUS = sorted((HERE / "bad_specs").glob("*.yaml"))
EXPECT = "# expect: "


def expectations(path: Path) -> list[dict]:
    text = path.read_bytes().decode("utf-8", "replace")
    return [json.loads(line[len(EXPECT):]) for line in text.splitlines()
            if line.startswith(EXPECT)]


def diagnostics_of(source, **kwargs) -> list[Diagnostic]:
    with pytest.raises(SpecError) as info:
        network = archspec.load(source, **kwargs) if isinstance(source, Path) else \
            archspec.loads(source, **kwargs)
        archspec.analyze(network)
    return info.value.diagnostics


def describe(d: Diagnostic) -> str:
    return f"{d.line}:{d.column} {d.message} | hint={d.hint!r} | layer={d.layer!r} | {d.notes}"


def match(expected: list[dict], got: list[Diagnostic]) -> list[str]:
    """Problems (empty when each expectation matches its own diagnostic and none is left over)."""
    problems, left = [], list(got)
    for exp in expected:
        same = [d for d in left if (d.line, d.column) == (exp["line"], exp["column"])
                and exp["message"] in d.message]
        if not same:
            problems.append(f"no diagnostic at {exp['line']}:{exp['column']} "
                            f"with message {exp['message']!r}")
            continue
        d = same[0]
        left.remove(d)
        hint = exp.get("hint", True)
        if hint is True and not d.hint or isinstance(hint, str) and hint not in (d.hint or ""):
            problems.append(f"hint {d.hint!r} lacks {hint!r}")
        if "layer" in exp and d.layer != exp["layer"]:
            problems.append(f"layer {d.layer!r} != {exp['layer']!r}")
        if "note" in exp and not any(exp["note"] in n for n in d.notes):
            problems.append(f"notes {d.notes} lack {exp['note']!r}")
    problems += [f"unexpected diagnostic {describe(d)}" for d in left]
    return problems


def test_the_corpus_is_large_and_every_file_has_expectations():
    assert len(CORPUS) >= 60
    for path in CORPUS:
        assert expectations(path), f"{path.name} has no '# expect:' line"


# --------------------------------------------------------------------------- the corpus


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_api_reports_what_the_user_should_see(path):
    got = diagnostics_of(path)
    problems = match(expectations(path), got)
    assert not problems, "\n".join(problems + ["got:"] + [describe(d) for d in got])
    for d in got:
        assert d.file == str(path)
        assert d.message and d.hint, describe(d)
        assert d.severity == "error"


def run_check(*args):
    result = CliRunner().invoke(main, ["check", *map(str, args)])
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"check crashed: {result.exception!r}"
    return result


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_cli_prints_compiler_style_errors(path):
    result = run_check(path)
    assert result.exit_code == 1
    err = result.stderr
    assert "Traceback" not in result.output
    lines = err.splitlines()
    for exp in expectations(path):
        head = f"{path}:{exp['line']}:{exp['column']}: error: "
        at = [i for i, line in enumerate(lines) if line.startswith(head)]
        assert at, f"no line starting {head!r} in:\n{err}"
        # the source line, then a caret under the column
        i = at[0] + 1
        while i < len(lines) and not lines[i].startswith("  ") and not lines[i].startswith(" "):
            i += 1  # a long message may wrap onto the next line
        caret = next((line for line in lines[i:i + 3] if re.fullmatch(r"\s*\^", line)), None)
        assert caret is not None, f"no caret line after {head!r} in:\n{err}"
        assert "hint: " in err
    n = len(expectations(path))
    assert f"{n} error{'s' if n != 1 else ''}" in err


def test_cli_json_reports_error_objects():
    path = HERE / "bad_specs" / "three_bad_layers.yaml"
    result = run_check("--json", path)
    assert result.exit_code == 1
    [doc] = [json.loads(line) for line in result.stdout.splitlines()]
    assert doc["valid"] is False and doc["file"] == str(path)
    assert len(doc["errors"]) == 3
    for error, exp in zip(doc["errors"], expectations(path)):
        assert {"file", "line", "column", "layer", "message", "hint"} <= set(error)
        assert error["file"] == str(path)
        assert (error["line"], error["column"]) == (exp["line"], exp["column"])
        assert exp["message"] in error["message"] and error["hint"]
        assert exp["hint"] is True or exp["hint"] in error["hint"]


def test_cli_json_shape_error_names_the_layer():
    path = HERE / "bad_specs" / "shape_dense_without_flatten_convnet1.yaml"
    result = run_check("--json", path)
    [doc] = [json.loads(line) for line in result.stdout.splitlines()]
    [error] = doc["errors"]
    assert error["layer"] == "dense1" and error["line"] == 10 and "flatten" in error["hint"]
    # the analysis up to the failing layer comes along
    assert [layer["name"] for layer in doc["layers"]][-1] == "pool3"


def test_real_command_line(tmp_path):
    """The installed entry point, in a subprocess: exit status 1, located errors, no traceback."""
    paths = [HERE / "bad_specs" / name for name in
             ("unknown_type_maxpool2d.yaml", "hostile_python_object_apply.yaml",
              "shape_three_independent_errors.yaml")]
    result = subprocess.run([sys.executable, "-m", "archspec", "check", *map(str, paths)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert f"{paths[0]}:5:12: error: unknown layer type 'MaxPool2D'" in result.stderr
    assert f"{paths[1]}:4:5: error: tag '!!python/object/apply:os.system'" in result.stderr
    assert result.stderr.count(f"{paths[2]}:") == 3
    assert not (tmp_path / "archspec-pwned").exists()


# --------------------------------------------------------------------------- several errors at once


def test_independent_errors_are_all_reported_in_one_run():
    got = diagnostics_of(HERE / "bad_specs" / "three_bad_layers.yaml")
    assert [d.line for d in got] == [4, 5, 6]
    got = diagnostics_of(HERE / "bad_specs" / "shape_three_independent_errors.yaml")
    assert [d.layer for d in got] == ["a", "b", "c"]


def test_errors_in_both_expansion_and_shapes_of_independent_layers():
    spec = """
name: t
input: [3, 16, 16]
layers:
  - {type: conv, name: stem, out_channels: 8, kernel_size: 3}
  - {type: conv, name: a, out_channels: 8, kernel_size: 3, strid: 2}
  - {type: conv, name: b, out_channels: 8, kernel_size: 3, padding: sane}
  - {type: conv, name: c, out_channels: 8, kernal_size: 3}
"""
    got = diagnostics_of(spec)
    assert [(d.line, d.hint) for d in got] == [
        (6, "did you mean 'stride'?"), (7, "did you mean 'same'?"),
        (8, "did you mean 'kernel_size'?")]


def test_a_shape_problem_inside_a_block_points_at_the_definition_and_the_use():
    spec = """
name: t
input: [3, 16, 16]
blocks:
  unit:
    params: {c: ~}
    layers: [{type: conv, out_channels: $c, kernel_size: 3, in_channels: 3}]
layers:
  - {type: unit, c: 5, name: u1}
  - {type: unit, c: 5, name: u2}
"""
    [d] = diagnostics_of(spec)  # u1 gets the 3 channels it declares, u2 gets 5
    assert d.layer == "u2.conv1" and (d.line, d.column) == (7, 74)
    assert "in_channels is 3 but the incoming tensor has 5 channels" in d.message
    assert any("used at line 10" in n for n in d.notes)


def test_check_shows_the_table_up_to_the_failing_layer_before_the_errors():
    path = HERE / "bad_specs" / "shape_dense_without_flatten_convnet1.yaml"
    result = run_check(path)
    assert result.exit_code == 1
    out = result.stdout
    assert "analysis up to the first error" in out
    for row in ("conv1", "pool1", "conv2", "pool2", "conv3", "pool3", "40x1x1"):
        assert row in out
    assert "dense1" not in out
    assert f"{path}:10:5: error:" in result.stderr
    combined = result.output  # both streams, in the order they were written
    assert combined.index("pool3") < combined.index(": error:")


# --------------------------------------------------------------------------- valid edge cases


def test_scientific_notation_reads_as_numbers():
    analysis = archspec.analyze(archspec.loads("""
name: t
input: [3, 8, 8]
layers:
  - {type: conv, out_channels: 4, kernel_size: 3}
  - {type: batch_norm, eps: 1e-5, momentum: 1E-1}
  - {type: dropout, p: 2.5e-1}
"""))
    cfgs = [n.cfg for n in analysis.network.nodes.values()]
    assert cfgs[1].eps == 1e-5 and cfgs[1].momentum == 0.1 and cfgs[2].p == 0.25


# --------------------------------------------------------------------------- hostile inputs, generated


def spec_with(layers_text: str) -> str:
    return f"name: t\ninput: [1, 28, 28]\nlayers:\n{layers_text}"


def assert_located(diags: list[Diagnostic], message: str, path: Path, line: int | None = 1):
    assert len(diags) == 1, [describe(d) for d in diags]
    [d] = diags
    assert message in d.message and d.hint
    assert d.file == str(path)
    if line is not None:
        assert d.line == line and d.column is not None


def assert_cli_refuses(path: Path, message: str, *extra) -> None:
    result = run_check(*extra, path)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert re.search(rf"^{re.escape(str(path))}:\d+:\d+: error: .*{re.escape(message)}",
                     result.stderr, re.MULTILINE), result.stderr


def test_a_100_mb_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    chunk = ("  - {type: conv, out_channels: 8, kernel_size: 3, padding: 1}\n" * 16_384).encode()
    with open(path, "wb") as f:
        f.write(spec_with("").encode())
        while f.tell() < 100 * 2 ** 20:
            f.write(chunk)
    start = time.process_time()
    diags = diagnostics_of(path)
    assert time.process_time() - start < 2
    assert_located(diags, "more than the limit of 10,000,000 bytes", path)
    assert "--max-bytes" in diags[0].hint
    assert_cli_refuses(path, "more than the limit of 10,000,000 bytes")


def test_deep_nesting_through_the_pipeline(tmp_path):
    path = tmp_path / "deep.yaml"
    depth = 100_000
    path.write_text(spec_with("  - {type: conv, out_channels: 8, kernel_size: " + "[" * depth +
                              "3" + "]" * depth + "}\n"))
    assert_located(diagnostics_of(path), "nested more than 100 levels deep", path, line=4)
    assert_cli_refuses(path, "nested more than 100 levels deep")
    # block-style nesting as well
    path.write_text("name: t\ninput: [1, 8]\nlayers:\n" +
                    "".join("  " * i + "- \n" for i in range(300)) + "  " * 300 + "- relu\n")
    assert_located(diagnostics_of(path), "nested more than 100 levels deep", path, line=None)


def test_billion_laughs_through_the_pipeline(tmp_path):
    path = tmp_path / "laughs.yaml"
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 30)]
    path.write_text("\n".join(lines) + "\n" + spec_with("  - relu\n"))
    start = time.perf_counter()
    assert_located(diagnostics_of(path), "more than 1,000,000 nodes", path, line=None)
    assert time.perf_counter() - start < 10
    assert_cli_refuses(path, "more than 1,000,000 nodes")


@pytest.mark.parametrize("value, message", [
    ("9" * 5_000, "integer has 5,000 digits"),
    ("-" + "1" * 31, "integer has 31 digits"),
    ("0x" + "f" * 4_000, "integer has"),
    ("1" + "0" * 400 + ".0", "NaN or infinite"),
    ("-.inf", "NaN or infinite"),
    (".NaN", "NaN or infinite"),
    ("1e308000", "NaN or infinite"),
])
def test_huge_and_non_finite_numbers(tmp_path, value, message):
    path = tmp_path / "num.yaml"
    path.write_text(spec_with(f"  - {{type: conv, out_channels: {value}, kernel_size: 3}}\n"))
    start = time.process_time()
    diags = diagnostics_of(path)
    assert time.process_time() - start < 2
    assert_located(diags, message, path, line=4)
    assert_cli_refuses(path, message)


def test_big_but_allowed_integers_are_a_clean_error_not_a_crash(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(spec_with("  - {type: conv, out_channels: " + "9" * 29 + ", kernel_size: 3}\n"
                              "  - {type: upsample, scale_factor: " + "9" * 29 + "}\n"
                              "  - {type: upsample, scale_factor: " + "9" * 29 + "}\n"
                              "  - flatten\n  - {type: dense, out_features: " + "9" * 29 + "}\n"))
    try:
        analysis = archspec.analyze(archspec.load(path))
    except SpecError as exc:
        assert all(d.message and d.line for d in exc.diagnostics)
    else:
        json.dumps(analysis.to_json())
    result = run_check(path)
    assert result.exit_code in (0, 1) and "Traceback" not in result.output


def test_non_utf8_and_binary_files(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(spec_with("  - {type: conv, name: caf\xe9, out_channels: 8, kernel_size: 3}\n")
                     .encode("latin-1"))
    assert_located(diagnostics_of(path), "not valid UTF-8 (byte 0xe9", path, line=4)
    assert_cli_refuses(path, "not valid UTF-8")
    path = tmp_path / "binary.yaml"
    path.write_bytes(bytes(range(256)) * 64)
    diags = diagnostics_of(path)
    assert len(diags) == 1 and diags[0].line is not None and diags[0].hint
    assert_cli_refuses(path, "")
    path = tmp_path / "utf16.yaml"
    path.write_bytes(spec_with("  - relu\n").encode("utf-16"))
    diags = diagnostics_of(path)
    assert len(diags) == 1 and diags[0].line is not None and diags[0].hint


def test_long_lines_and_huge_scalars(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text(spec_with("  - {type: conv, name: " + "n" * 200_000 + ", out_channels: 8}\n"))
    assert_located(diagnostics_of(path), "characters long", path, line=4)
    assert_cli_refuses(path, "characters long")
    # a long but allowed line: the caret still points at the column, in an excerpt
    path.write_text("name: t\ninput: [1, 28, 28]\nlayers: [" + "relu, " * 2_000 +
                    "{type: conv, out_channels: x, kernel_size: 3}]\n")
    result = run_check(path)
    err = result.stderr.splitlines()
    [i] = [i for i, line in enumerate(err) if ": error: " in line]
    shown, caret = err[i + 1], err[i + 2]
    assert len(shown) < 200 and caret.strip() == "^"
    assert shown[caret.index("^")] == "x"


def test_many_layers_hit_the_node_limit_quickly(tmp_path):
    path = tmp_path / "wide.yaml"
    path.write_text(spec_with("  - relu\n" * 1_100_000))  # ~10 MB
    start = time.perf_counter()
    diags = diagnostics_of(path, limits=archspec.Limits(max_bytes=20_000_000))
    assert time.perf_counter() - start < 20
    assert len(diags) == 1 and "more than" in diags[0].message and diags[0].line


def test_long_chains_of_blocks_are_refused_not_a_stack_overflow(tmp_path):
    """Each block level recurses once in the expander; no YAML nesting limit bounds a chain."""
    n = 1_000
    lines = ["name: t", "input: [3, 8, 8]", "blocks:"]
    for i in range(n):
        body = f"[{{type: sequential, layers: [{{type: b{i + 1}}}]}}, relu]" if i < n - 1 \
            else "[relu]"
        lines += [f"  b{i}:", f"    layers: {body}"]
    path = tmp_path / "chain.yaml"
    path.write_text("\n".join(lines + ["layers:", "  - b0"]) + "\n")
    [d] = diagnostics_of(path)
    assert "nested more than 100 levels deep" in d.message and d.hint and d.line > 4
    assert len(d.notes) <= 2  # not one note per level
    assert_cli_refuses(path, "nested more than 100 levels deep")


# --------------------------------------------------------------------------- no code, ever

SENTINEL_PAYLOADS = [
    # YAML tags that an unsafe loader would turn into calls
    "  - !!python/object/apply:os.system ['touch {sentinel}']\n",
    "  - !!python/object/apply:subprocess.check_call [[touch, '{sentinel}']]\n",
    "  - !!python/object/new:os.system ['touch {sentinel}']\n",
    "  - {{type: !!python/name:os.system , kernel_size: 3}}\n",
    "  - !!python/module:os\n",
    "  - {{? !!python/object/apply:os.system ['touch {sentinel}'] : 1}}\n",
    "  - {{!!python/object/apply:os.system ['touch {sentinel}'] : 1}}\n",
    "  - !<tag:yaml.org,2002:python/object/apply:os.system> ['touch {sentinel}']\n",
    "  - !!binary aGVsbG8=\n",
    "  - !!set {{a: null}}\n",
    "  - !!omap [a: 1]\n",
]


@pytest.fixture
def tripwire(monkeypatch, tmp_path):
    """A sentinel path the payloads would create, and spies on the usual ways to run things."""
    calls = []
    import subprocess as sp
    for module, name in ((os, "system"), (os, "popen"), (sp, "Popen"), (sp, "run"),
                         (sp, "check_call"), (sp, "call")):
        monkeypatch.setattr(module, name, lambda *a, _n=name, **k: calls.append((_n, a)))
    sentinel = tmp_path / "pwned"
    yield sentinel, calls
    assert not sentinel.exists(), "a spec ran a command"
    assert not calls, f"a spec called {calls}"


@pytest.mark.parametrize("payload", SENTINEL_PAYLOADS)
def test_python_tags_are_refused(tmp_path, tripwire, payload):
    sentinel, _ = tripwire
    path = tmp_path / "evil.yaml"
    path.write_text(spec_with(payload.format(sentinel=sentinel)))
    diags = diagnostics_of(path)
    assert len(diags) == 1
    assert "tag" in diags[0].message and "not allowed" in diags[0].message
    assert diags[0].line == 4 and diags[0].hint
    result = run_check(path)
    assert result.exit_code == 1 and "not allowed" in result.stderr


EXPRESSIONS = [
    "$__import__",
    "$__import__('os').system('touch {sentinel}')",
    "$(1).__class__",
    "$c.__class__.__mro__",
    "$c.real",
    "$c()",
    "$c(1)",
    "${{os.system('touch {sentinel}')}}",
    "$(os.system('touch {sentinel}'))",
    "$c; import os",
    "$c if True else 0",
    "$c ** 99999999",
    "$c * 10 ** 20",
    "$[c]",
    "$c[0]",
    "$c.__globals__",
    "$lambda: 0",
    "$eval",
    "$exec",
    "$open",
    "$__builtins__",
    "`touch {sentinel}`",
    "$(touch {sentinel})",
    "$c + 'x'",
    "$c and 1",
    "$" + "(" * 500 + "1" + ")" * 500,
    "$c" + " * $c" * 100,
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_param_expressions_cannot_run_code(tmp_path, tripwire, expression):
    sentinel, _ = tripwire
    text = expression.format(sentinel=sentinel).replace("'", "''")
    path = tmp_path / "expr.yaml"
    path.write_text(f"""name: t
input: [3, 16, 16]
blocks:
  unit:
    params: {{c: 4}}
    layers:
      - {{type: conv, out_channels: '{text}', kernel_size: 1}}
layers:
  - unit
""")
    diags = diagnostics_of(path)
    assert diags and all(d.message and d.line for d in diags)
    assert diags[0].line == 7, describe(diags[0])
    result = run_check(path)
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_param_values_are_data_not_expressions(tmp_path, tripwire):
    """A parameter's value is inserted as it is, never evaluated again: here the use's
    expression computes a text holding '$', which the block body receives as plain text."""
    sentinel, _ = tripwire
    path = tmp_path / "value.yaml"
    path.write_text(f"""name: t
input: [3, 16, 16]
blocks:
  unit:
    params: {{c: ~}}
    layers:
      - {{type: conv, out_channels: $c, kernel_size: 1}}
layers:
  - {{type: unit, c: "'$' + \\"__import__('os').system('touch {sentinel}')\\""}}
""")
    [d] = diagnostics_of(path)
    assert d.line == 7 and 'out_channels must be a positive integer (got "$__import__' \
        in d.message


def test_values_set_from_outside_are_data_not_expressions(tmp_path, tripwire):
    sentinel, _ = tripwire
    text = ("name: t\ninput: [3, 16, 16]\nparams: {c: x}\n"
            "layers:\n  - {type: conv, out_channels: $c, kernel_size: 1}\n")
    with pytest.raises(SpecError) as caught:
        archspec.loads(text, params={"c": f"$__import__('os').system('touch {sentinel}')"})
    [d] = caught.value.diagnostics
    assert (d.line, d.column) == (5, 32)
    assert d.message.startswith('out_channels must be a positive integer (got "$__import__')


def test_keys_are_never_substituted(tmp_path, tripwire):
    path = tmp_path / "key.yaml"
    path.write_text("""name: t
input: [3, 16, 16]
blocks:
  unit:
    params: {c: out_channels}
    layers:
      - {type: conv, $c: 4, kernel_size: 1}
layers:
  - unit
""")
    diags = diagnostics_of(path)
    assert [d.message for d in diags if d.line == 7] == [
        "conv is missing required field 'out_channels'", "unknown field '$c' for conv"]
