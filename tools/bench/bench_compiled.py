"""Does a model compiled by archspec run as fast as the same network written by hand in plain
PyTorch (tools/bench/handwritten.py, torchvision-style)? Eval forward and a training step (SGD,
forward + backward + step), the two models interleaved round by round (which one runs first
alternates); prints the median time of each side and the median of the per-round ratios.

    python tools/bench/bench_compiled.py [--rounds N] [--batch B] [--threads T] [NAME ...]
        (default: resnet18 resnet50 vgg16, 9 rounds, batch 2, 1 thread: steadier on a shared
        machine)
    python tools/bench/bench_compiled.py --quick     (resnet18, 1 round, batch 1: the test suite)
    --control adds archspec against a copy of itself: the ratio this machine gives for no
    difference at all, measured in the same run.
    --steady-memory reruns the benchmark with glibc's malloc keeping freed memory (no mmap per
    large tensor, no trimming). Without it a forward may hand megabytes back to the system and
    fault them in again, by the order of its frees, not by its arithmetic: ResNet-18 in eval
    once took 4,600 minor page faults per forward, 5% apart between two models running the same
    operators. archspec.compile now moves glibc's trim threshold off that edge once per process
    (compiler.settle_allocator), which the hand-written model in the same process shares; VGG-16
    still faults in both, as its own forward frees larger blocks.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools" / "bench"))

import archspec  # noqa: E402
from handwritten import MODELS  # noqa: E402


# glibc's tunables: large blocks from the heap instead of mmap, and the heap never trimmed
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "1099511627776"}


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def eval_forward(model, x):
    def run():
        with torch.no_grad():
            model(x)
    return run


def train_step(model, x):
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def run():
        optimizer.zero_grad(set_to_none=True)
        model(x).sum().backward()
        optimizer.step()
    return run


def compare(name: str, rounds: int, batch: int,
            control: bool = False) -> dict[str, tuple[float, float, float]]:
    """{'eval'|'train': (median s archspec, median s by hand, median ratio)}."""
    torch.manual_seed(0)
    ours = archspec.compile(ROOT / "specs" / f"{name}.yaml")
    theirs = MODELS[name]()
    # the same weights on both sides (same shapes in the same order; names may differ), so no
    # difference in values (denormals, say) can tell the two apart
    theirs.load_state_dict(dict(zip(theirs.state_dict(), ours.state_dict().values())))
    if control:  # archspec against itself: the noise floor of this machine, in the same run
        theirs = copy.deepcopy(ours)
    x = torch.randn(batch, 3, 224, 224)
    results = {}
    for mode, make in (("eval", eval_forward), ("train", train_step)):
        for model in (ours, theirs):
            model.train(mode == "train")
        runs = [make(ours, x), make(theirs, x)]
        for run in runs:  # warm up: allocator, kernels, optimizer state
            run()
        times: list[tuple[float, float]] = []
        for k in range(rounds):
            if k % 2:
                theirs_t, ours_t = timed(runs[1]), timed(runs[0])
            else:
                ours_t, theirs_t = timed(runs[0]), timed(runs[1])
            times.append((ours_t, theirs_t))
        results[mode] = (statistics.median(t[0] for t in times),
                         statistics.median(t[1] for t in times),
                         statistics.median(t[0] / t[1] for t in times))
    return results


def main(names: list[str], rounds: int, batch: int, control: bool = False) -> None:
    print(f"archspec.compile vs the same network by hand (torchvision-style), batch {batch}, "
          f"{rounds} interleaved rounds, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}")
    print(f"{'model':10} {'mode':6} {'archspec s':>11} {'by hand s':>10} {'ratio':>7}")
    for name in names:
        for mode, (ours, theirs, ratio) in compare(name, rounds, batch).items():
            print(f"{name:10} {mode:6} {ours:11.4f} {theirs:10.4f} {ratio:7.3f}")
        if control:
            for mode, (ours, twin, ratio) in compare(name, rounds, batch, control=True).items():
                print(f"{name:10} {mode:6} {ours:11.4f} {twin:10.4f} {ratio:7.3f}  "
                      "(control: archspec against a copy of itself)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*", default=["resnet18", "resnet50", "vgg16"])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--control", action="store_true",
                        help="also time archspec against a copy of itself (the noise floor)")
    parser.add_argument("--steady-memory", action="store_true",
                        help="keep freed memory in the process (no page faults per forward)")
    options = parser.parse_args()
    if options.steady_memory and STEADY_MALLOC.items() - os.environ.items():
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_MALLOC})
    if options.steady_memory:
        print(f"glibc malloc: {' '.join(f'{k}={os.environ[k]}' for k in STEADY_MALLOC)}")
    torch.set_num_threads(options.threads)
    if options.quick:
        main(["resnet18"], 1, 1)
    else:
        main(options.names, options.rounds, options.batch, options.control)
