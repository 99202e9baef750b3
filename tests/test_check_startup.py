"""`archspec check` costs little more than importing yaml, pydantic and networkx: it builds the
validators of only the layer kinds a spec uses, and imports rich only where output can take
styles (a terminal, or FORCE_COLOR)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# runs `check` in-process on a pipe, then reports what the process built and imported
PROBE = """
import sys
from archspec.cli import main
from archspec.layers import REGISTRY
try:
    main(["check", sys.argv[1]])
except SystemExit as exc:
    status = exc.code
built = sorted(n for n, k in REGISTRY.items() if k.Config.__pydantic_complete__)
print("RESULT", status, ",".join(built), "rich" in sys.modules, "torch" in sys.modules,
      file=sys.stderr)
"""


def probe(spec: str, **env: str) -> tuple[str, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, str(ROOT / spec)], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(ROOT), **env),
                            timeout=120)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("RESULT"), result.stderr
    return result.stdout, last


def test_check_builds_validators_only_for_the_kinds_the_spec_uses():
    out, result = probe("specs/lenet5.yaml")
    _, status, built, rich, torch = result.split()
    assert status == "0" and "lenet5" in out
    # LeNet-5 (specs/lenet5.yaml): convolutions, tanh, average pooling, flatten, dense layers
    used = set(built.split(","))
    assert "conv" in used and "dense" in used
    assert not used & {"conv_transpose", "lstm", "batch_norm", "concat", "upsample"}, used
    assert (rich, torch) == ("False", "False")


def test_check_on_a_pipe_writes_no_escape_codes_and_in_a_forced_terminal_styles_the_header():
    plain, result = probe("specs/lenet5.yaml")
    assert "\x1b[" not in plain and result.split()[3] == "False"
    styled, result = probe("specs/lenet5.yaml", FORCE_COLOR="1", TERM="xterm")
    assert "\x1b[1mlayer" in styled and result.split()[3] == "True"
    assert [line for line in styled.splitlines() if "conv1" in line] == \
        [line for line in plain.splitlines() if "conv1" in line]

