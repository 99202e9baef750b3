"""Does `archspec check` scale linearly? Specs of 1,000, 10,000 and 99,990 layers (three lines of
YAML: a repeat of ten ReLUs), checked as a whole process (table and --json), with each phase
timed in-process too. Prints seconds, microseconds per layer, the per-layer ratio of the largest
size to the smallest (1.0 = perfectly linear), and peak memory per layer.

    python tools/bench/bench_scale.py            (1k / 10k / 100k layers)
    python tools/bench/bench_scale.py --quick    (small sizes, as the test suite runs it)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SIZES = {"full": (100, 1_000, 9_999), "quick": (10, 100)}  # repeat copies of ten layers each


def spec_text(copies: int) -> str:
    return (f"name: scale_{copies * 10}\ninput: [4, 8, 8]\nlayers:\n"
            f"  - {{type: repeat, times: {copies}, layers: [{', '.join(['relu'] * 10)}]}}\n")


def run_cli(args: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, peak resident bytes) of one `archspec` process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "archspec", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"archspec {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def phases(path: Path) -> dict[str, float]:
    """CPU seconds of each step `check` takes, in this process."""
    import archspec
    from archspec.backends.report import report_lines
    times = {}
    start = time.process_time()
    network = archspec.load(path)
    times["load"] = time.process_time() - start
    start = time.process_time()
    analysis = archspec.analyze(network)
    times["analyze"] = time.process_time() - start
    start = time.process_time()
    report_lines(analysis, 160)
    times["table"] = time.process_time() - start
    start = time.process_time()
    json.dumps(analysis.to_json())
    times["json"] = time.process_time() - start
    return times


def main(quick: bool) -> None:
    sizes = SIZES["quick" if quick else "full"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for copies in sizes:
            path = Path(tmp) / f"scale_{copies}.yaml"
            path.write_text(spec_text(copies))
            layers = copies * 10
            table = run_cli(["check", str(path)])
            as_json = run_cli(["check", "--json", str(path)])
            phases(path)  # warm up: first calls build validators and fill caches
            runs = [phases(path) for _ in range(3)]
            best = {k: min(r[k] for r in runs) for k in runs[0]}
            rows.append((layers, table, as_json, best))
    print(f"{'layers':>8} {'table s':>8} {'cpu s':>7} {'json s':>8} {'cpu s':>7} {'peak MiB':>9}"
          f"  in-process CPU us/layer: load analyze table json")
    for layers, table, as_json, ph in rows:
        per = "  ".join(f"{ph[k] / layers * 1e6:6.1f}" for k in ("load", "analyze", "table",
                                                                   "json"))
        print(f"{layers:8,} {table[0]:8.2f} {table[1]:7.2f} {as_json[0]:8.2f} {as_json[1]:7.2f}"
              f" {table[2] / 2**20:9.1f}  {per}")
    (small, s_table, s_json, s_ph), (large, l_table, l_json, l_ph) = rows[0], rows[-1]
    def ratio(phase_names) -> float:  # per-layer CPU at the largest size over the smallest
        return (sum(l_ph[k] for k in phase_names) / large) / (sum(s_ph[k] for k in phase_names) / small)

    phase_names = ("load", "analyze", "table", "json")
    print(f"per-layer ratio {large:,} / {small:,} layers (in-process, 1.0 = linear): " +
          ", ".join(f"{k} {ratio([k]):.2f}" for k in phase_names) +
          f"; all four {ratio(phase_names):.2f}")
    commands = {"check": ("load", "analyze", "table"), "check --json": ("load", "analyze", "json")}
    print("per-layer ratio of each command's in-process work (load + analyze + its output): " +
          ", ".join(f"{name} {ratio(ks):.2f}" for name, ks in commands.items()))
    print(f"peak memory per layer: {(l_table[2] - s_table[2]) / (large - small) / 1024:.2f} KiB "
          f"(table), {(l_json[2] - s_json[2]) / (large - small) / 1024:.2f} KiB (--json)")


if __name__ == "__main__":
    main("--quick" in sys.argv[1:])
