"""Many errors cost linear time: a repeated error is reported once with a count, the printed
list is capped, --json keeps a bounded list plus the total, and the source is read once."""
from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

import archspec
import archspec.cli
from archspec.cli import main
from archspec.errors import MAX_KEPT, MAX_SHOWN, SpecError


def bad_from_in_repeat(times: int) -> str:
    return (f"name: t\ninput: [3, 8, 8]\nlayers:\n  - type: repeat\n    times: {times}\n"
            "    layers:\n      - {type: relu, from: nowhere}\n")


def independent_bad_froms(count: int, comment_chars: int = 0) -> str:
    lines = ["name: t", "input: [3, 8, 8]", "layers:"]
    for i in range(count):
        if comment_chars:
            lines.append("# " + "x" * comment_chars)
        lines.append(f"  - {{type: relu, from: nowhere{i}}}")
    return "\n".join(lines) + "\n"


def load_errors(text: str) -> SpecError:
    try:
        archspec.loads(text)
    except SpecError as exc:
        return exc
    raise AssertionError("the spec was accepted")


def test_a_bad_from_in_a_repeat_is_one_error_with_the_number_of_copies(tmp_path):
    path = tmp_path / "repeat.yaml"
    path.write_text(bad_from_in_repeat(2000))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert result.output.count("no layer named 'nowhere' is visible here") == 1
    assert "and in 1,999 more copies of this layer" in result.output
    assert result.output.rstrip().endswith("1 error")
    doc = json.loads(CliRunner().invoke(main, ["check", "--json", str(path)]).output)
    assert len(doc["errors"]) == 1 and doc["errors"][0]["repeats"] == 1999
    assert (doc["errors"][0]["line"], doc["errors"][0]["column"]) == (7, 28)


def best_time(func, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def test_errors_in_repeat_copies_cost_linear_time():
    """Quadratic would be 16x from 1,000 to 4,000 copies (0.75 s at 500 copies before)."""
    small, large = bad_from_in_repeat(1000), bad_from_in_repeat(4000)
    ratio = best_time(lambda: load_errors(large)) / best_time(lambda: load_errors(small))
    assert ratio < 8, ratio
    assert best_time(lambda: load_errors(large), 1) < 10


def test_distinct_errors_cost_linear_time():
    small, large = independent_bad_froms(200), independent_bad_froms(800)
    ratio = best_time(lambda: load_errors(large), 2) / best_time(lambda: load_errors(small), 2)
    assert ratio < 8, ratio


def test_the_printed_errors_stop_at_the_cap_and_say_how_many_more(tmp_path, monkeypatch):
    path = tmp_path / "many.yaml"
    path.write_text(independent_bad_froms(1000, comment_chars=2000))
    reads = []
    real = archspec.cli.read_lines
    monkeypatch.setattr(archspec.cli, "read_lines", lambda f: reads.append(f) or real(f))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 1
    assert result.output.count(": error: ") == MAX_SHOWN
    assert "nowhere99'" in result.output and "nowhere100'" not in result.output
    assert result.output.rstrip().endswith(f"1,000 errors ({1000 - MAX_SHOWN} more not shown)")
    assert reads == []  # the lines of the text that was loaded: the file is not read again


def test_json_keeps_a_bounded_list_of_errors_and_their_total(tmp_path):
    path = tmp_path / "many.yaml"
    count = MAX_KEPT + 500
    path.write_text(independent_bad_froms(count))
    doc = json.loads(CliRunner().invoke(main, ["check", "--json", str(path)]).output)
    assert len(doc["errors"]) == MAX_KEPT
    assert doc["error_count"] == count
    assert doc["errors"][-1]["message"] == f"no layer named 'nowhere{MAX_KEPT - 1}' is visible here"


def test_invalid_layers_past_the_cap_are_counted(tmp_path):
    """Schema errors past the cap are counted without being worded."""
    text = "name: t\ninput: [3, 8, 8]\nlayers:\n" + "  - {type: conv}\n" * (MAX_KEPT + 10)
    exc = load_errors(text)
    assert len(exc.diagnostics) == MAX_KEPT and exc.count == MAX_KEPT + 10
    assert exc.diagnostics[0].line == 4


# Errors past the kept cap are only counted: each costs about what a valid layer costs, never a
# did-you-mean search (300,000 misspelt types took 75 s when every one was searched).
PAST_THE_CAP = {  # the error, and a valid line of about the same work
    "unknown type": ("  - typo{i}\n", "  - {{type: relu}}\n"),
    "unknown activation": (
        "  - {{type: conv, out_channels: 2, kernel_size: 1, activation: relux{i}}}\n",
        "  - {{type: conv, out_channels: 2, kernel_size: 1, activation: relu}}\n"),
    "unknown field": ("  - {{type: relu, fo{i}: 1}}\n", "  - {{type: relu}}\n"),
    "unknown block parameter": ("  - {{type: blk, widht{i}: 1}}\n", "  - {{type: blk, width: 1}}\n"),
    "bad qualified name": ("  - {{type: relu, from: b.nope{i}}}\n", "  - {{type: relu, from: b}}\n"),
}
HEADER = ("name: t\ninput: [2, 4, 4]\nblocks:\n  blk:\n    params: {width: 2}\n    layers: [relu]\n"
          "layers:\n  - {type: sequential, name: b, layers: [relu]}\n")


def cpu_to_load(line: str, count: int, errors: int) -> float:
    text = HEADER + "".join(line.format(i=i) for i in range(count))
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        try:
            archspec.loads(text)
        except SpecError as exc:
            assert exc.count == errors, (line, exc.count)
        else:
            assert errors == 0, line
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("kind", PAST_THE_CAP)
def test_errors_past_the_cap_cost_about_as_much_as_valid_layers(kind):
    """The first MAX_KEPT errors are worded (with their did-you-mean); the ones after only add a
    count, so 3,000 more of them cost about what 3,000 valid layers cost."""
    bad, valid = PAST_THE_CAP[kind]
    extra = 3000
    past_the_cap = cpu_to_load(bad, MAX_KEPT + extra, MAX_KEPT + extra) - \
        cpu_to_load(bad, MAX_KEPT, MAX_KEPT)
    ratio = past_the_cap / cpu_to_load(valid, extra, 0)
    # about 1 on a quiet machine, up to ~2.3 beside another busy test process; a search per
    # error past the cap cost 20x
    assert ratio < 3, (kind, ratio)
