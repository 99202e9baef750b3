"""examples/train.py trains a compiled spec in one process and under torchrun with two
DistributedDataParallel processes (gloo, CPU), and its checkpoint loads with archspec."""
from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import archspec

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ROOT / "examples" / "train.py"
LENET = ROOT / "specs" / "lenet5.yaml"
SUMMARY = re.compile(r"^loss (\d+\.\d+) -> (\d+\.\d+) \(mean of the first and last 5 steps, "
                     r"(\d) process(?:es)?\); wrote (.+)$", re.MULTILINE)


def step_losses(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"^step \d+/20: loss (\d+\.\d+)$", text, re.MULTILINE)]


def test_two_ddp_processes_train_lenet5_like_one_and_save_a_loadable_checkpoint(tmp_path, capsys,
                                                                               monkeypatch):
    out = tmp_path / "lenet5.pt"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(TRAIN), str(LENET), "--steps", "20", "-o", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    first, last, processes, written = SUMMARY.search(result.stdout).groups()
    assert processes == "2" and written == str(out)
    assert float(last) < float(first) - 0.2, (first, last)

    # one process on the whole batch: DDP averages the two halves' gradients, so every step
    # has the same loss (up to float rounding)
    monkeypatch.setattr(sys, "argv", ["train.py", str(LENET), "--steps", "20",
                                      "-o", str(tmp_path / "single.pt")])
    runpy.run_path(str(TRAIN), run_name="__main__")
    single = capsys.readouterr().out
    assert SUMMARY.search(single).group(3) == "1"
    two, one = step_losses(result.stdout), step_losses(single)
    assert len(two) == len(one) == 20
    assert max(abs(a - b) for a, b in zip(two, one)) < 1e-3

    model = archspec.load_checkpoint(out)
    keys = list(model.state_dict())
    assert keys == list(archspec.compile(LENET, device="meta").state_dict())
    assert not any(k.startswith("module.") for k in keys)
    digits = load_digits()  # the trained weights are in the file: well above chance (0.1)
    x = F.pad(torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1), (12,) * 4)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == torch.tensor(digits.target)).float().mean().item()
    assert accuracy > 0.3, accuracy
