"""Checkpoints as a user makes and loads them: save_checkpoint after training, and every way a
file can be hostile or damaged ending in one CheckpointError (never a raw exception, never code
run, never a big allocation before the file is known to be sound). Also: no torch installed."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archspec
from archspec.errors import CheckpointError

ROOT = Path(__file__).resolve().parent.parent
LENET = ROOT / "specs" / "lenet5.yaml"
SMALL = """name: small
input: [3, 8, 8]
layers:
  - {type: conv, out_channels: 4, kernel_size: 3, padding: 1, bias: false}
  - batch_norm
  - relu
  - global_avg_pool
  - {type: dense, out_features: 2}
"""


def run_python(code: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def small_checkpoint(path: Path) -> dict:
    model = archspec.compile(archspec.loads(SMALL))
    archspec.save_checkpoint(model, path)
    return torch.load(path, weights_only=True)


def resave(path: Path, data) -> Path:
    torch.save(data, path)
    return path


# ---- the public round trip --------------------------------------------------------------------

def test_a_trained_model_saved_with_save_checkpoint_loads_back_identical(tmp_path):
    torch.manual_seed(0)
    model = archspec.compile(archspec.load(LENET))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    assert not torch.equal(before["conv1.weight"], model.state_dict()["conv1.weight"])

    path = tmp_path / "trained.pt"
    written = archspec.save_checkpoint(model, path)
    assert written == path.stat().st_size
    data = torch.load(path, weights_only=True)  # the safe format build writes
    assert data["format"] == "archspec-checkpoint/1" and data["spec"] == LENET.read_text()
    loaded = archspec.load_checkpoint(path)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    model.eval(), loaded.eval()
    assert torch.equal(loaded(x), model(x))
    archspec.save_checkpoint(loaded, tmp_path / "again.pt")  # a loaded model saves too
    assert archspec.load_checkpoint(tmp_path / "again.pt").state_dict().keys() == before.keys()


def test_a_model_without_spec_or_values_cannot_be_saved_as_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="carries no archspec spec"):
        archspec.save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "x.pt")
    meta = archspec.compile(archspec.load(LENET), device="meta")
    with pytest.raises(CheckpointError, match="on the meta device: its tensors hold no values"):
        archspec.save_checkpoint(meta, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


# ---- hostile and damaged files ------------------------------------------------------------------

class Payload:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_with_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "hostile.pt"
    torch.save({"format": "archspec-checkpoint/1", "spec": SMALL, "state_dict": Payload(marker)},
               hostile)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Payload(marker)))
    for path in (hostile, plain):
        with pytest.raises(CheckpointError) as caught:
            archspec.load_checkpoint(path)
        assert f"'{path}' is not an archspec checkpoint, or it contains code; refusing to load " \
               "it" in str(caught.value)
        assert "weights_only=False" not in str(caught.value)
    assert not marker.exists()


def test_damaged_files_are_one_clear_error(tmp_path):
    good = tmp_path / "good.pt"
    small_checkpoint(good)
    data = good.read_bytes()
    cases = {"empty.pt": "is empty, not an archspec checkpoint",
             "truncated.pt": "is damaged or not an archspec checkpoint",
             "cut.pt": "is damaged or not an archspec checkpoint",
             "text.pt": "is not an archspec checkpoint, or it contains code"}
    contents = {"empty.pt": b"", "truncated.pt": data[: len(data) // 2], "cut.pt": data[:200],
                "text.pt": b"hello\n"}
    for name, message in cases.items():
        (tmp_path / name).write_bytes(contents[name])
        with pytest.raises(CheckpointError) as caught:
            archspec.load_checkpoint(tmp_path / name)
        assert f"'{tmp_path / name}' {message}" in str(caught.value)


def test_wrong_structure_is_one_clear_error(tmp_path):
    good = small_checkpoint(tmp_path / "good.pt")
    state = good["state_dict"]
    cases = [
        ([1, 2, 3], "is not an archspec checkpoint"),
        ({"spec": SMALL, "state_dict": state}, "is not an archspec checkpoint"),
        ({**good, "spec": 42}, "has no spec text (its 'spec' is int"),
        ({k: v for k, v in good.items() if k != "state_dict"}, "has no weights"),
        ({**good, "state_dict": {"conv1.weight": [1, 2]}}, "has no weights"),
        ({**good, "state_dict": {k: v for k, v in state.items() if k != "conv1.weight"}},
         "do not match its spec: missing 'conv1.weight'"),
        ({**good, "state_dict": {**state, "extra.weight": torch.zeros(1)}},
         "unexpected 'extra.weight'"),
        ({**good, "state_dict": {**state, "conv1.weight": torch.zeros(4, 3, 5, 5)}},
         "'conv1.weight' is [4, 3, 5, 5] in the file and [4, 3, 3, 3] in the spec"),
        ({**good, "state_dict": {**state, "bn1.num_batches_tracked": torch.tensor(1.5)}},
         "'bn1.num_batches_tracked' holds torch.float32 values where the spec has torch.int64"),
        ({**good, "spec": "name: x\nlayers: 3\n"}, "is not valid"),
        ({**good, "state_dict": {k: v.to("meta") for k, v in state.items()}},
         "hold no values: 'conv1.weight' was saved from the meta device"),
    ]
    for i, (content, message) in enumerate(cases):
        with pytest.raises(CheckpointError) as caught:
            archspec.load_checkpoint(resave(tmp_path / f"case{i}.pt", content))
        assert message in str(caught.value), (i, str(caught.value))


def test_spec_text_inside_a_checkpoint_is_never_read_as_a_path(tmp_path, monkeypatch):
    (tmp_path / "lenet5.yaml").write_bytes(LENET.read_bytes())
    monkeypatch.chdir(tmp_path)
    lenet = archspec.compile(archspec.load(LENET))
    path = resave(tmp_path / "trick.pt", {"format": "archspec-checkpoint/1",
                                          "spec": "lenet5.yaml",
                                          "state_dict": lenet.state_dict()})
    with pytest.raises(CheckpointError, match="the spec inside .* is not valid"):
        archspec.load_checkpoint(path)


def test_a_tiny_checkpoint_of_a_huge_spec_fails_before_allocating(tmp_path):
    """A 300-million-weight spec (1.2 GB in float32) with a few bytes of tensors: the mismatch is
    found on the meta device, so the process never comes near that size."""
    huge_spec = "name: huge\ninput: [20000]\nlayers:\n  - {type: dense, out_features: 15000}\n"
    path = resave(tmp_path / "tiny.pt", {"format": "archspec-checkpoint/1", "spec": huge_spec,
                                         "state_dict": {"dense1.weight": torch.zeros(2, 2),
                                                        "dense1.bias": torch.zeros(2)}})
    assert path.stat().st_size < 4096
    # VmHWM, not ru_maxrss: after a vfork and exec, Linux's ru_maxrss starts from the parent's
    # peak (the whole test process), while VmHWM is this process's own memory's peak.
    result = run_python(
        "import re, sys, archspec\n"
        "try:\n"
        "    archspec.load_checkpoint(sys.argv[1])\n"
        "except archspec.CheckpointError as exc:\n"
        "    print(exc)\n"
        "status = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s*(\\d+) kB', status).group(1))\n", path)
    assert result.returncode == 0, result.stderr
    message, peak_kib = result.stdout.strip().rsplit("\n", 1)
    assert "'dense1.weight' is [2, 2] in the file and [15000, 20000] in the spec" in message
    assert int(peak_kib) * 1024 < 800 * 2**20   # torch itself takes about 300 MB


def test_loading_refuses_a_model_larger_than_the_memory_limit(tmp_path):
    path = tmp_path / "lenet.pt"
    archspec.save_checkpoint(archspec.compile(archspec.load(LENET)), path)
    with pytest.raises(archspec.SpecError, match="more than the 1.00 KiB allowed"):
        archspec.load_checkpoint(path, max_memory=1024)


def test_a_fifo_is_not_a_checkpoint(tmp_path):
    fifo = tmp_path / "c.pt"
    os.mkfifo(fifo)
    with pytest.raises(archspec.FileError, match="it is a FIFO"):
        archspec.load_checkpoint(fifo)


# ---- no torch installed -------------------------------------------------------------------------

WITHOUT_TORCH = "import sys; sys.modules['torch'] = None\n"


def test_build_and_verify_without_torch_say_how_to_install_it(tmp_path):
    for args in (("build", LENET, "-o", tmp_path / "m.pt"), ("verify", LENET)):
        result = run_python(WITHOUT_TORCH + "from archspec.cli import main\n"
                            "main(prog_name='archspec')\n", *args)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "PyTorch (the torch package) is not installed" in result.stderr
        assert "pip install torch==2.13.0" in result.stderr
    assert not (tmp_path / "m.pt").exists()
    result = run_python(WITHOUT_TORCH + "from archspec.cli import main\n"
                        "main(prog_name='archspec')\n", "check", LENET)
    assert result.returncode == 0, result.stderr   # check never needs torch


def test_the_api_without_torch_raises_torch_missing(tmp_path):
    result = run_python(WITHOUT_TORCH + "import archspec\n"
                        "for call in (lambda: archspec.compile(archspec.load(sys.argv[1])),\n"
                        "             lambda: archspec.load_checkpoint(sys.argv[1])):\n"
                        "    try:\n"
                        "        call()\n"
                        "    except archspec.TorchMissing as exc:\n"
                        "        print(exc)\n", LENET)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all("not installed" in line and "pip install torch==2.13.0" in line
                                   for line in lines)

