"""How close is `archspec check SPEC` (a whole process) to the import floor of the packages it is
built on (`python -c "import yaml, pydantic, networkx"`)? And how does it compare with
torchinfo's summary of the same network written in plain PyTorch (tools/bench/handwritten.py)?

Runs are paired (floor, check, check --json, torchinfo, one after the other, repeated) and the
medians of wall time and peak memory are printed with the ratios from the same run. Bytecode is
cached in a temporary folder first, as for an installed package.

    python tools/bench/bench_check.py [SPEC] [--runs N]   (default: specs/resnet50.yaml, 15 runs)
    python tools/bench/bench_check.py --quick             (lenet5, 2 runs, as the test suite runs it)
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLOOR = [sys.executable, "-c", "import yaml, pydantic, networkx"]
TORCHINFO_MODELS = {"resnet50": "resnet50", "resnet18": "resnet18", "vgg16": "vgg16"}


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak resident bytes) of one process, which must succeed."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def commands(spec: Path) -> dict[str, list[str] | None]:
    archspec = [sys.executable, "-m", "archspec", "check"]
    sides: dict[str, list[str] | None] = {
        "floor": FLOOR, "check": archspec + [str(spec)], "check --json": archspec + ["--json",
                                                                                    str(spec)]}
    model = TORCHINFO_MODELS.get(spec.stem)
    if importlib.util.find_spec("torchinfo") is None:
        print("torchinfo is not installed (pip install torchinfo==1.8.0): its column is skipped")
    elif model is None:
        print(f"no plain-PyTorch {spec.stem} in handwritten.py: the torchinfo column is skipped")
    else:
        sides["torchinfo"] = [sys.executable, str(ROOT / "tools" / "bench" / "handwritten.py"),
                              "--torchinfo", model]
    return sides


def main(spec: Path, runs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=cache, COLUMNS="160")
        sides = commands(spec)
        for args in sides.values():  # warm up: bytecode written, files in the page cache
            run(args, env)
        samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in sides}
        for _ in range(runs):
            for name, args in sides.items():
                samples[name].append(run(args, env))
    wall = {n: statistics.median(s[0] for s in v) for n, v in samples.items()}
    cpu = {n: statistics.median(s[1] for s in v) for n, v in samples.items()}
    peak = {n: statistics.median(s[2] for s in v) for n, v in samples.items()}
    print(f"{spec.name}, {runs} paired runs, medians (CPU: user + system)")
    print(f"{'':14} {'wall s':>8} {'x floor':>8} {'CPU s':>8} {'x floor':>8} {'peak MiB':>9} "
          f"{'x floor':>8}")
    for name in sides:
        print(f"{name:14} {wall[name]:8.3f} {wall[name] / wall['floor']:8.2f} "
              f"{cpu[name]:8.3f} {cpu[name] / cpu['floor']:8.2f} "
              f"{peak[name] / 2**20:9.1f} {peak[name] / peak['floor']:8.2f}")
    if "torchinfo" in wall:
        print(f"torchinfo / check: {wall['torchinfo'] / wall['check']:.1f}x the time, "
              f"{peak['torchinfo'] / peak['check']:.1f}x the memory")
    return {name: wall[name] / wall["floor"] for name in sides}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "resnet50.yaml"))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    if options.quick:
        main(ROOT / "specs" / "lenet5.yaml", 2)
    else:
        main(Path(options.spec), options.runs)
