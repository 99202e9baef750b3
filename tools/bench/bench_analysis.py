"""How much faster is static analysis than the runtime way (what torchinfo does: build the
PyTorch model and run a forward pass with hooks)? Both are measured here, in the same run.

    python tools/bench/bench_analysis.py [SPEC ...]      (default: every specs/*.yaml)
Prints, per spec, the median time of load+analyze, of compile+forward on CPU (or on the meta
device where the weights would not fit), and their ratio.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import archspec  # noqa: E402


def median_time(func, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(paths: list[str]) -> None:
    import torch
    from archspec.backends.verify import runtime_report
    torch.set_num_threads(2)
    specs = [Path(p) for p in paths] or sorted((ROOT / "specs").glob("*.yaml"))
    print(f"{'spec':22} {'static':>10} {'runtime':>10} {'ratio':>8}  baseline")
    for spec in specs:
        static = median_time(lambda: archspec.analyze(spec), 5)
        analysis = archspec.analyze(spec)
        device = "cpu" if analysis.param_bytes < 2**30 else "meta"
        runtime = median_time(lambda: runtime_report(analysis, device=device, batch_size=1), 3)
        print(f"{spec.stem:22} {static * 1e3:8.1f}ms {runtime * 1e3:8.1f}ms {runtime / static:7.0f}x"
              f"  compile+forward on {device}")


if __name__ == "__main__":
    main(sys.argv[1:])
