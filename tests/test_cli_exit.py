"""The `archspec` program exits without tearing down the interpreter (archspec.cli.run): its
output must still arrive whole, atexit handlers still run, and each exit status is the one
documented in `archspec --help` (0, 1, 2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def archspec(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archspec", *args], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=120)


def test_output_to_a_pipe_arrives_whole_before_the_fast_exit():
    result = archspec("check", "--json", "specs/resnet50.yaml", "specs/vgg16.yaml")
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    # ResNet-50 and VGG-16 parameter counts from REFERENCE.md / torchvision's documentation
    assert [r["params"] for r in reports] == [25_557_032, 138_357_544]


def test_exit_statuses_are_the_documented_ones():
    assert archspec("check", "specs/lenet5.yaml").returncode == 0
    missing = archspec("check", "specs/no_such_spec.yaml")
    assert missing.returncode == 1
    assert "cannot read spec file 'specs/no_such_spec.yaml'" in missing.stderr
    usage = archspec("check", "--no-such-option", "specs/lenet5.yaml")
    assert usage.returncode == 2
    assert "No such option '--no-such-option'" in usage.stderr


def test_atexit_handlers_run_before_the_fast_exit(tmp_path):
    marker = tmp_path / "atexit-ran"
    code = ("import atexit, sys\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
            "from archspec.cli import run\n"
            "sys.argv = ['archspec', 'check', 'specs/lenet5.yaml']\n"
            "run()\n"
            "raise AssertionError('run() returned instead of exiting')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=ENV, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "lenet5" in result.stdout
    assert marker.exists()
