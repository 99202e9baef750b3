"""archspec build / check as a user runs them (real CLI in a subprocess)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

import archspec

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "archspec", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd)


def test_check_json_has_the_documented_keys():
    result = cli("check", "--json", SPECS / "lenet5.yaml", SPECS / "alexnet.yaml")
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["name"] for d in docs] == ["lenet5", "alexnet"]
    for key in ("name", "input_shape", "output_shape", "params", "trainable_params", "buffers",
                "macs", "layers"):
        assert key in docs[0]
    assert docs[0]["params"] == 61_706 and docs[0]["output_shape"] == [10]
    conv1 = docs[0]["layers"][0]
    assert {"name", "type", "output_shape", "params", "macs", "receptive_field"} <= set(conv1)
    # conv1 of LeNet-5: 6 maps of 28x28, each output a 5x5x1 dot product: 6*28*28*25 MACs.
    assert conv1["macs"] == 6 * 28 * 28 * 25
    assert conv1["receptive_field"] == {"size": [5, 5], "stride": [1, 1], "padding": [0, 0]}
    assert docs[0]["layers"][-1]["receptive_field"] is None
    assert docs[1]["flops"] == 2 * docs[1]["macs"]


def test_check_table_states_the_mac_convention():
    result = cli("check", SPECS / "lenet5.yaml")
    assert result.returncode == 0
    assert "MACs per sample" in result.stdout and "FLOPs = 2 x MACs" in result.stdout
    assert "61,706" in result.stdout


def test_check_exit_code_is_1_on_a_bad_spec(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput: [1, 28, 28]\nlayers:\n  - {type: MaxPool2D, kernel_size: 2}\n")
    result = cli("check", bad, SPECS / "lenet5.yaml")
    assert result.returncode == 1
    assert f"{bad}:4:12: error: unknown layer type 'MaxPool2D'" in result.stderr
    assert "did you mean 'max_pool'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_build_saves_a_checkpoint_that_loads_back(tmp_path):
    out = tmp_path / "lenet.pt"
    result = cli("build", SPECS / "lenet5.yaml", "-o", out)
    assert result.returncode == 0, result.stderr
    data = torch.load(out, weights_only=True)   # plain tensors and text: safe to load
    assert data["format"] == "archspec-checkpoint/1" and "lenet5" in data["spec"]
    model = archspec.load_checkpoint(out)
    x = torch.randn(2, 1, 32, 32)
    reference = archspec.compile(SPECS / "lenet5.yaml")
    reference.load_state_dict(data["state_dict"])
    assert torch.equal(model(x), reference(x))
    assert not list(tmp_path.glob(".*tmp"))   # no temporary left behind


def test_build_refuses_a_model_too_big_for_memory_and_meta_works(tmp_path):
    out = tmp_path / "fc.pt"
    result = cli("build", SPECS / "fc_400x600.yaml", "-o", out, "--max-param-bytes", 10**9)
    assert result.returncode == 1
    assert "GiB" in result.stderr and "--device meta" in result.stderr
    assert not out.exists()
    result = cli("build", SPECS / "fc_400x600.yaml", "-o", out, "--device", "meta")
    assert result.returncode == 0, result.stderr
    assert "2,405,025,000 parameters" in result.stdout and not out.exists()


def test_build_never_overwrites_its_input(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text((SPECS / "lenet5.yaml").read_text())
    result = cli("build", spec, "-o", spec)
    assert result.returncode == 1 and "overwrite" in result.stderr
    assert spec.read_text() == (SPECS / "lenet5.yaml").read_text()


def test_verify_runs_the_model_and_agrees(tmp_path):
    result = cli("verify", SPECS / "lenet5.yaml")
    assert result.returncode == 0, result.stderr
    assert "equals PyTorch on 12 layers (61,706 parameters" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ninput: [1, 4, 4]\nlayers:\n  - {type: conv, out_channels: 2, "
                   "kernel_size: 5}\n")
    result = cli("verify", bad)
    assert result.returncode == 1 and f"{bad}:4:" in result.stderr


def test_check_json_reports_every_error_with_its_layer(tmp_path):
    spec = tmp_path / "three.yaml"
    spec.write_text("name: x\ninput: [3, 32, 32]\nlayers:\n"
                    "  - {type: conv, out_channels: 8, kernel_size: 3, padding: sme}\n"
                    "  - {type: Linear, out_features: 10}\n"
                    "  - {type: conv, out_chanels: 4, kernel_size: 3}\n")
    result = cli("check", "--json", spec)
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    got = [(e["line"], e["column"], e["layer"], e["hint"]) for e in doc["errors"]]
    assert got == [(4, 60, "conv1", "did you mean 'same'?"),
                   (5, 12, None, "did you mean 'dense'?"),          # unknown type: no name yet
                   (6, 18, "conv2", "did you mean 'out_channels'?")]


def test_unwritable_output_and_missing_device_are_errors_not_tracebacks(tmp_path):
    missing = tmp_path / "no_such_folder" / "out.pt"
    for args in (("build", SPECS / "lenet5.yaml", "-o", missing),
                 ("diagram", SPECS / "lenet5.yaml", "-o", missing.with_suffix(".dot"))):
        result = cli(*args)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "no_such_folder" in result.stderr
        assert ".tmp" not in result.stderr                  # names the user's file
    # a CPU-only torch has no CUDA; a typo is no device at all
    for device in ("cuda", "gpu0"):
        result = cli("build", SPECS / "lenet5.yaml", "-o", tmp_path / "m.pt", "--device", device)
        if device == "cuda" and torch.cuda.is_available():
            continue
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert f"device '{device}' is not available" in result.stderr
        assert "--device cpu" in result.stderr
    assert not (tmp_path / "m.pt").exists()


def test_build_runs_the_analysis_once(tmp_path, monkeypatch):
    """The analysis is linear but not free (seconds for 100,000 layers): build reuses the one
    that located the spec's errors."""
    from click.testing import CliRunner

    import archspec.analysis
    from archspec.cli import main
    calls = []
    real = archspec.analysis.analyze

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(archspec.analysis, "analyze", counted)
    monkeypatch.setattr(archspec, "_analyze", counted)  # what archspec.analyze calls
    for device in ("cpu", "meta"):
        calls.clear()
        result = CliRunner().invoke(main, ["build", str(SPECS / "lenet5.yaml"), "-o",
                                           str(tmp_path / "lenet5.pt"), "--device", device])
        assert result.exit_code == 0, result.output
        assert len(calls) == 1, device
