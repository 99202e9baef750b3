"""A layer computed and then dropped (nothing reads it, it is not an output) is a located
warning; warnings are shown by check and carried by the API, and never change the exit status."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import archspec

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.yaml"))

DROPPED = """name: dropped
input: [3, 8, 8]
layers:
  - {type: conv, name: a, out_channels: 4, kernel_size: 3, padding: 1}
  - {type: conv, name: b, out_channels: 4, kernel_size: 3, padding: 1, from: input}
  - {type: add, from: [a, b]}
  - {type: conv, name: c, out_channels: 4, kernel_size: 1, from: a}
"""


def test_a_dropped_layer_is_a_located_warning_in_the_api():
    analysis = archspec.analyze(archspec.loads(DROPPED))
    [w] = analysis.warnings
    assert w.severity == "warning" and w.layer == "add1"
    assert w.message == "the output of 'add1' is never used"
    assert (w.line, w.column) == (6, 5)
    assert "outputs: [c, add1]" in w.hint
    assert analysis.errors == []
    assert analysis.to_json()["warnings"] == [w.to_json()]


def test_listing_it_in_outputs_or_reading_it_silences_the_warning():
    assert archspec.analyze(archspec.loads(DROPPED + "outputs: [c, add1]\n")).warnings == []
    read = DROPPED.replace("from: a}", "from: add1}")
    assert archspec.analyze(archspec.loads(read)).warnings == []


def test_copies_of_a_repeat_are_one_warning_with_a_count():
    analysis = archspec.analyze(archspec.loads("""name: t
input: [3, 8, 8]
layers:
  - {type: conv, name: c, out_channels: 4, kernel_size: 1}
  - {type: repeat, times: 3, layers: [{type: relu, name: r, from: c}]}
  - {type: relu, from: c}
"""))
    [w] = analysis.warnings
    assert w.layer == "repeat1.0.r" and (w.line, w.column) == (5, 39)
    assert any("2 more copies" in n and "repeat1.2.r" in n for n in w.notes)


def test_a_layer_inside_a_user_block_points_at_the_definition_and_the_use():
    analysis = archspec.analyze(archspec.loads("""name: t
input: [3, 8, 8]
blocks:
  unit:
    layers:
      - {type: conv, name: side, out_channels: 4, kernel_size: 1}
      - {type: conv, name: main, out_channels: 4, kernel_size: 1, from: input}
layers:
  - {type: unit, name: u}
"""))
    [w] = analysis.warnings
    assert w.layer == "u.side" and (w.line, w.column) == (6, 9)
    assert any("used at line 9" in n for n in w.notes)


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_the_zoo_drops_nothing(path):
    assert archspec.analyze(path).warnings == []


def test_check_shows_warnings_and_exits_0(tmp_path):
    spec = tmp_path / "dropped.yaml"
    spec.write_text(DROPPED)
    result = subprocess.run([sys.executable, "-m", "archspec", "check", str(spec)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert f"{spec}:6:5: warning: the output of 'add1' is never used (layer 'add1')" in \
        result.stderr
    assert "hint: list it in 'outputs:'" in result.stderr and "1 warning" in result.stderr
    assert "add1" in result.stdout  # the table still shows the layer
    result = subprocess.run([sys.executable, "-m", "archspec", "check", "--json", str(spec)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["valid"] is True and doc["errors"] == []
    [w] = doc["warnings"]
    assert (w["line"], w["column"], w["layer"], w["severity"]) == (6, 5, "add1", "warning")
