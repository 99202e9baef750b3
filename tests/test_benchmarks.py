"""The benchmarks in tools/bench/ run in their quick mode (small sizes, no timing asserted), so
they cannot rot; bench_scale.py's quick run is in test_scale.py."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "bench" / name), *args],
                            capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_check_benchmark_prints_both_sides_and_their_ratio():
    out = run_benchmark("bench_check.py", "--quick")
    assert "x floor" in out and "check --json" in out and "floor" in out


@pytest.mark.parametrize("steady", [False, True])
def test_the_compiled_model_benchmark_times_eval_and_a_train_step_on_both_sides(steady):
    out = run_benchmark("bench_compiled.py", "--quick", *["--steady-memory"] * steady)
    assert "archspec s" in out and "by hand s" in out
    assert "resnet18   eval" in out and "resnet18   train" in out
    # the flag re-runs the benchmark with glibc's tunables in its environment, and says so
    steady_line = "glibc malloc: MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_="
    assert (steady_line in out) == steady


def test_the_analysis_benchmark_runs_on_one_small_spec():
    out = run_benchmark("bench_analysis.py", str(ROOT / "specs" / "lenet5.yaml"))
    assert "lenet5" in out and "static" in out


@pytest.mark.parametrize("model", ["resnet18", "resnet50", "vgg16"])
def test_the_hand_written_models_have_the_zoo_specs_parameter_counts(model):
    """The benchmark compares like with like: the same layers, so the same parameter count
    (counted by PyTorch on both sides)."""
    import torch
    sys.path.insert(0, str(ROOT / "tools" / "bench"))
    try:
        from handwritten import MODELS
    finally:
        sys.path.remove(str(ROOT / "tools" / "bench"))
    import archspec
    with torch.device("meta"):
        theirs = MODELS[model]()
    ours = archspec.compile(ROOT / "specs" / f"{model}.yaml", device="meta")
    assert sum(p.numel() for p in theirs.parameters()) == \
        sum(p.numel() for p in ours.parameters())
