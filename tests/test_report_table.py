"""The terminal table keeps every figure whatever the width, --json keeps its keys whatever the
spec, and the Python API carries and prints what the CLI does."""
from __future__ import annotations

import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import archspec
from archspec.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def check(*args: str, columns: int | None = None):
    env = {"COLUMNS": str(columns)} if columns else {}
    return CliRunner().invoke(main, ["check", *args], env=env)


def rf_figure(field: dict | None) -> str:
    """The receptive field as the table writes it: '7 /2', or per dim '7x3 /2x1'."""
    if field is None:
        return "-"
    size, stride = field["size"], field["stride"]
    same = len(set(size)) == 1 and len(set(stride)) == 1
    return (f"{size[0]} /{stride[0]}" if same else
            f"{'x'.join(map(str, size))} /{'x'.join(map(str, stride))}")


def expected_figures(doc: dict) -> list[tuple[str, list[str]]]:
    """Per layer of the --json document: its name, then its output shape, params, MACs, RF."""
    rows = []
    for layer in doc["layers"]:
        figures = ["x".join(map(str, layer["output_shape"]))]
        figures += [f"{layer[k]:,}" for k in ("params", "macs") if layer[k]]
        figures.append(rf_figure(layer["receptive_field"]))
        rows.append((layer["name"], figures))
    return rows


def assert_every_figure_whole(text: str, doc: dict) -> None:
    """Each layer's figures appear whole and in order (names may wrap after a dot)."""
    cursor = 0
    for name, figures in expected_figures(doc):
        for token in figures:
            found = re.compile(rf"(?<!\S){re.escape(token)}(?!\S)").search(text, cursor)
            assert found, f"'{token}' of layer '{name}' is missing or cut after offset {cursor}"
            cursor = found.end()


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("spec", ["resnet50", "googlenet"])
def test_a_narrow_terminal_shows_every_figure_in_full(spec, columns):
    doc = json.loads(check("--json", str(SPECS / f"{spec}.yaml")).output)
    result = check(str(SPECS / f"{spec}.yaml"), columns=columns)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    long = [line for line in result.output.splitlines() if len(line) > columns]
    assert not long, long[:3]
    assert_every_figure_whole(result.output, doc)
    assert f"params: {doc['params']:,}" in result.output


@pytest.mark.parametrize("columns", [200, 120, 100, 40])
def test_every_width_keeps_the_figures_of_resnet50(columns):
    doc = json.loads(check("--json", str(SPECS / "resnet50.yaml")).output)
    output = check(str(SPECS / "resnet50.yaml"), columns=columns).output
    assert_every_figure_whole(output, doc)


def test_a_real_80_column_terminal_gets_a_table_that_fits():
    """Through a pseudo-terminal, without $COLUMNS: the width rich finds is the terminal's."""
    import fcntl
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 80, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "archspec", "check",
                             str(SPECS / "resnet18.yaml")], stdout=slave, stderr=slave,
                            stdin=slave, env=env, cwd=ROOT)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")
    assert not [line for line in text.splitlines() if len(line) > 80]
    doc = json.loads(check("--json", str(SPECS / "resnet18.yaml")).output)
    assert_every_figure_whole(text, doc)


INVALID_SPECS = {
    "yaml_syntax": "name: broken\ninput: [3, 8, 8\nlayers: []\n",
    "validation": "name: misspelt\ninput: [3, 8, 8]\nlayers:\n  - {type: conv, out_chanels: 4, "
                  "kernel_size: 3}\n",
    "shape": "name: too_small\ninput: [3, 8, 8]\nlayers:\n  - {type: conv, out_channels: 4, "
             "kernel_size: 3}\n  - {type: conv, out_channels: 4, kernel_size: 9}\n",
    "missing_name": "input: [3, 8, 8]\nlayers:\n  - {type: relu}\n",
}


@pytest.mark.parametrize("case", sorted(INVALID_SPECS))
def test_json_has_the_same_keys_for_a_valid_and_an_invalid_spec(case, tmp_path):
    valid = json.loads(check("--json", str(SPECS / "lenet5.yaml")).output)
    path = tmp_path / f"{case}.yaml"
    path.write_text(INVALID_SPECS[case])
    result = check("--json", str(path))
    assert result.exit_code == 1
    doc = json.loads(result.output)
    assert set(doc) == set(valid)
    assert doc["valid"] is False and doc["errors"] and isinstance(doc["layers"], list)
    expected_name = {"validation": "misspelt", "shape": "too_small"}.get(case)
    assert doc["name"] == expected_name
    if case == "shape":  # the layers before the failure
        assert [layer["name"] for layer in doc["layers"]] == ["conv1"]
        assert set(doc["layers"][0]) == set(valid["layers"][0])


def plain(value):
    """JSON's view of a value: tuples as lists, objects as their to_json()."""
    if hasattr(value, "to_json"):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def test_the_analysis_object_carries_everything_json_carries():
    """Each --json key is an attribute of the analysis (the training-step figures of
    analysis.training, the saved-for-backward total as total_saved_bytes), and each per-layer
    key an attribute of its LayerInfo (saved bytes per layer in analysis.saved_bytes)."""
    analysis = archspec.analyze(SPECS / "resnet18.yaml")
    doc = analysis.to_json()
    training = analysis.training.to_json()
    for key, value in doc.items():
        if key == "layers":
            continue
        if key in training:
            assert training[key] == value, key
            continue
        attribute = {"saved_bytes": "total_saved_bytes"}.get(key, key)
        assert plain(getattr(analysis, attribute)) == value, key
    assert analysis.output_shape == (1000,) and analysis.flops == 2 * analysis.macs
    for layer in doc["layers"]:
        info = analysis.layers[layer["name"]]
        for key, value in layer.items():
            got = analysis.saved_bytes[info.name] if key == "saved_bytes" else getattr(info, key)
            assert plain(got) == value, (layer["name"], key)


def test_printing_the_analysis_gives_the_cli_table(monkeypatch):
    monkeypatch.setenv("COLUMNS", "90")
    cli_text = check(str(SPECS / "googlenet.yaml"), columns=90).output
    analysis = archspec.analyze(SPECS / "googlenet.yaml")
    assert str(analysis) + "\n" == cli_text
    from rich.console import Console
    buffer = io.StringIO()
    Console(file=buffer, width=90).print(analysis)
    assert buffer.getvalue() == cli_text
