"""Every command the README shows runs as shown, and prints what the README says it prints.

Commands are taken from the README's code blocks: each line of a ```bash block (a `&&` chain
is split into its commands), each `$ command` line of an output block (the lines after it, up
to the next `$` line, are its output: each one shown must be printed, `...` elides), and each
```python block, run as one script. They run in a scratch folder that links the repository's
top-level entries, so written files land there, with `archspec` calling this checkout.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# The only commands not run here, and why.
NOT_RUN = {
    "tools/setup.sh": "installs packages into the running environment; .ci/run runs the "
                      "set-up in a fresh virtualenv before this suite",
    "tools/setup.sh --test": "the same, with the test dependencies",
    "python3 -m pytest -q -n auto": "the test suite itself, which is running now (.ci/run runs it)",
}


@dataclass
class Example:
    kind: str  # "shell" or "python"
    text: str
    line: int  # in README.md, for the test id
    output: list[str] = field(default_factory=list)  # lines the README shows it printing

    @property
    def id(self) -> str:
        first = self.text.splitlines()[0]
        return f"L{self.line}:{first[:60]}"


def code_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, line of the first content line, lines) of every fenced block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        blocks.append((fence.group(1), i + 2, lines[i + 1:end]))
        i = end + 1
    return blocks


def split_chain(command: str) -> list[str]:
    return [part.strip() for part in command.split("&&") if part.strip()]


def examples(text: str) -> tuple[list[Example], list[str]]:
    """The examples to run, and the commands found but not run (the NOT_RUN ones)."""
    found, skipped = [], []

    def add_shell(command: str, line: int, output: list[str]) -> None:
        for part in split_chain(command):
            if part in NOT_RUN:
                skipped.append(part)
            else:
                found.append(Example("shell", part, line, output))

    for lang, start, lines in code_blocks(text):
        if lang == "python":
            found.append(Example("python", "\n".join(lines), start))
        elif lang in ("bash", "sh", "shell", "console"):
            for offset, line in enumerate(lines):
                stripped = line.strip()
                if stripped and not stripped.startswith("#"):
                    add_shell(stripped.removeprefix("$ "), start + offset, [])
        elif lines and lines[0].startswith("$ "):
            command_at = [k for k, line in enumerate(lines) if line.startswith("$ ")]
            for n, k in enumerate(command_at):
                end = command_at[n + 1] if n + 1 < len(command_at) else len(lines)
                add_shell(lines[k][2:], start + k, lines[k + 1:end])
    return found, skipped


EXAMPLES, SKIPPED = examples(README.read_text())


def normalized(line: str) -> str:
    return " ".join(line.split())


def test_the_readme_shows_commands_and_skips_only_the_set_up_ones():
    kinds = {e.kind for e in EXAMPLES}
    assert kinds == {"shell", "python"}
    shell = [e.text for e in EXAMPLES if e.kind == "shell"]
    assert "archspec check specs/lenet5.yaml" in shell
    assert "archspec check examples/convnet_without_flatten.yaml" in shell
    assert sorted(SKIPPED) == sorted(NOT_RUN)  # each skip is still in the README, once


def test_ci_runs_the_readme_test_command_exactly():
    [test_command] = [lines[0] for lang, _, lines in code_blocks(README.read_text())
                      if lang == "bash" and "pytest" in "".join(lines)]
    ci = (ROOT / ".ci" / "run").read_text()
    assert any(line.startswith(f"{test_command} ") or line == test_command
               for line in ci.splitlines())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder that looks like the repository (links to its entries) and an `archspec` that
    runs this checkout, first on PATH."""
    work = tmp_path_factory.mktemp("readme")
    for entry in ROOT.iterdir():
        if entry.name not in (".git",):
            (work / entry.name).symlink_to(entry)
    bin_dir = tmp_path_factory.mktemp("bin")
    shim = bin_dir / "archspec"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m archspec "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(ROOT), COLUMNS="80", TERM="dumb", NO_COLOR="1")
    env.pop("FORCE_COLOR", None)
    return work, env


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_readme_example_runs_as_shown(example, scratch):
    work, env = scratch
    if example.kind == "python":
        argv = [sys.executable, "-c", example.text]
    else:
        argv = ["bash", "-c", example.text]
    result = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=600, check=False)
    printed = result.stdout + result.stderr
    assert "Traceback" not in printed, printed
    shows_error = any(": error: " in line for line in example.output)
    assert result.returncode == (1 if shows_error else 0), printed
    printed_lines = {normalized(line) for line in printed.splitlines()}
    missing = [line for line in example.output
               if line.strip() not in ("", "...") and normalized(line) not in printed_lines]
    assert not missing, f"the README shows lines that {example.text!r} does not print:\n" + \
        "\n".join(missing) + "\n--- it printed:\n" + printed
