"""Big specs within the documented limits (100,000 layers) check in seconds, with a cost per
layer that does not grow with the network; a drawing too large for dot is refused before dot."""
from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import archspec
from archspec.backends.report import report_lines
from archspec.errors import ArchspecError

ROOT = Path(__file__).resolve().parents[1]


def repeat_spec(copies: int) -> str:
    """Three lines of YAML: `copies` x ten ReLUs (9,999 copies: 99,990 layers)."""
    return (f"name: big\ninput: [4, 8, 8]\nlayers:\n"
            f"  - {{type: repeat, times: {copies}, layers: [{', '.join(['relu'] * 10)}]}}\n")


def run_check(path: Path, *args: str) -> tuple[float, str]:
    """(CPU seconds, stdout) of one `archspec check` process."""
    cpu, out, _ = run_archspec("check", str(path), *args)
    return cpu, out


# the `archspec` program (archspec.cli.run), reporting its own peak resident memory from an
# atexit handler: wait4's ru_maxrss is no measure, as a forked child starts with its parent's
# peak (a test worker's, gigabytes late in the suite)
PEAK_PROBE = """
import atexit, sys
from archspec.cli import run

def report_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    sys.stderr.write(f"PEAK-KB {peak}\\n")

atexit.register(report_peak)
sys.argv = ["archspec", *sys.argv[1:]]
run()
"""


def run_archspec(*args: str) -> tuple[float, str, int | None]:
    """(CPU seconds, stdout, peak resident bytes, None where /proc cannot tell) of one
    `archspec` process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    probe = os.path.exists("/proc/self/status")
    command = ["-c", PEAK_PROBE] if probe else ["-m", "archspec"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, *command, *args],
                                stdout=subprocess.PIPE, stderr=err, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        errors = err.read().decode()
        assert proc.returncode == 0, errors
    peaks = [int(line.split()[1]) * 1024 for line in errors.splitlines()
             if line.startswith("PEAK-KB ")]
    return usage.ru_utime + usage.ru_stime, out.decode(), peaks[-1] if peaks else None


def test_a_99990_layer_spec_checks_in_seconds_not_minutes(tmp_path):
    """79 s for the table and 10 s for --json before; the CPU time is asserted (the wall time of
    a shared test machine says little), with a generous bound."""
    path = tmp_path / "big.yaml"
    path.write_text(repeat_spec(9_999))
    cpu, text = run_check(path)
    assert cpu < 30, cpu
    assert "repeat1.9998.relu10" in text
    cpu, out = run_check(path, "--json")
    assert cpu < 30, cpu
    doc = json.loads(out)
    assert len(doc["layers"]) == 99_990 and doc["valid"] is True


def test_a_99990_layer_spec_builds_and_verifies_in_seconds(tmp_path):
    """25 s and 1.5 GB for build before (35 s with one generated forward), now about 6 s and
    0.7 GB on a 2-core machine: CPU time and peak memory asserted with generous bounds."""
    pytest.importorskip("torch")
    path, checkpoint = tmp_path / "big.yaml", tmp_path / "big.pt"
    path.write_text(repeat_spec(9_999))
    cpu, _, peak = run_archspec("build", str(path), "-o", str(checkpoint))
    assert cpu < 40 and (peak is None or peak < 2 * 2**30), (cpu, peak)
    assert checkpoint.stat().st_size > 0
    cpu, out, peak = run_archspec("verify", str(path))
    assert cpu < 40 and (peak is None or peak < 2 * 2**30), (cpu, peak)
    assert "the analysis equals PyTorch on 99990 layers" in out


def per_layer_cpu(copies: int) -> float:
    text = repeat_spec(copies)
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        analysis = archspec.analyze(archspec.loads(text))
        report_lines(analysis, 160)
        json.dumps(analysis.to_json())
        best = min(best, time.process_time() - start)
    return best / (copies * 10)


def test_the_cost_per_layer_stays_flat_from_2000_to_20000_layers():
    """Quadratic growth would make it 10x; the issue's target is 1.5x from 1k to 100k (see
    tools/bench/bench_scale.py); asserted generously here."""
    per_layer_cpu(50)  # warm up
    ratio = per_layer_cpu(2_000) / per_layer_cpu(200)
    assert ratio < 2, ratio


def conv_chain(copies: int) -> str:
    """`copies` x ten 1x1 convolutions: every output requires grad and is saved for backward."""
    return (f"name: convs\ninput: [3, 4, 4]\nlayers:\n  - {{type: repeat, times: {copies}, "
            "layers: [{type: repeat, times: 10, layers: [{type: conv, out_channels: 3, "
            "kernel_size: 1}]}]}\n")


def memory_cpu_per_layer(copies: int) -> float:
    """Best of three (a busy neighbour process inflates single runs: 6x once in CI)."""
    best = math.inf
    for _ in range(3):
        analysis = archspec.analyze(archspec.loads(conv_chain(copies)))  # fresh: figures cache
        start = time.process_time()
        analysis.training.backward_peak_bytes, analysis.inference_peak_bytes, analysis.saved_bytes
        best = min(best, time.process_time() - start)
    return best / (copies * 10)


def test_the_memory_passes_stay_linear_when_every_layer_saves_its_input():
    """The backward peak summed every saved storage at every step: 10,000 convolutions took 22 s
    (quadratic); running sums make it linear."""
    memory_cpu_per_layer(20)  # warm up
    ratio = memory_cpu_per_layer(500) / memory_cpu_per_layer(50)
    assert ratio < 3, ratio


def test_the_scale_benchmark_runs_in_quick_mode():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "bench" / "bench_scale.py"),
                             "--quick"], capture_output=True, text=True, timeout=600,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    assert "per-layer ratio" in result.stdout and "peak memory per layer" in result.stdout
    assert "each command's in-process work" in result.stdout and "check --json" in result.stdout


def test_a_drawing_too_large_for_dot_is_refused_before_running_dot(tmp_path):
    analysis = archspec.analyze(archspec.loads(repeat_spec(300)))  # 3,000 boxes at full depth
    missing_dot = tmp_path / "no-dot-here"
    try:
        archspec.render(analysis, tmp_path / "big.svg", dot=missing_dot)
    except ArchspecError as exc:
        assert "more than dot can lay out" in exc.message and "--depth" in exc.hint
    else:
        raise AssertionError("a 3,000-box drawing was handed to dot")
    assert not (tmp_path / "big.svg").exists()
    # the DOT source is still available: it needs no layout
    assert archspec.render(analysis, format="dot").startswith("digraph")


def test_a_full_depth_diagram_of_99990_layers_is_refused_before_the_expansion_ends(tmp_path):
    """It took 10 s of expansion and analysis to find the 99,991 boxes; the repeat's total is
    known after its first copy."""
    path = tmp_path / "big.yaml"
    path.write_text(repeat_spec(9_999))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "archspec", "diagram", str(path), "-o",
                           str(tmp_path / "big.svg")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr
    assert "at least 99,990 layers" in proc.stderr and "--depth" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "big.svg").exists()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    assert cpu < 5, cpu  # about a start-up (0.7 s), against 10 s before
