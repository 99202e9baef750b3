"""A layer named after an attribute of a PyTorch module (forward, eval, training, ...) or a Python
keyword would compile to a model that calls a method instead of the layer: check refuses such a
name where it is written, and verify, build and load_checkpoint never get as far as torch."""
from __future__ import annotations

import keyword
import re
import subprocess
import sys

import pytest
import torch
from torch import fx, nn

import archspec
from archspec.backends.checkpoint import FORMAT
from archspec.errors import CheckpointError, SpecError
from archspec.frontend import expand
from archspec.frontend.reserved import reserved_reason

NAMES = ["forward", "eval", "float", "type", "training", "graph", "code", "meta", "_modules",
         "to", "cpu", "state_dict", "parameters", "train", "__init__", "__dict__", "shape_env",
         "archspec_name", "archspec_spec", "class", "None", "lambda"]


def spec_text(name: str, nested: bool) -> str:
    layer = f"{{type: relu, name: {name}}}"
    if nested:
        layer = f"{{type: sequential, name: body, layers: [relu, {layer}]}}"
    return f"name: t\ninput: [3, 8, 8]\nlayers:\n  - {{type: conv, out_channels: 4, kernel_size: 1}}\n  - {layer}\n"


def column(text: str, name: str) -> int:
    return text.splitlines()[4].index(f"name: {name}}}") + len("name: ") + 1


def test_every_attribute_of_a_compiled_model_is_refused_as_a_name():
    """The list check uses (without torch) covers the installed torch: the compiled model,
    its containers and an empty GraphModule, class and instance attributes alike."""
    model = archspec.compile(archspec.loads(spec_text("x", nested=True)))
    attributes = set(dir(fx.GraphModule)) | set(dir(model)) | set(vars(model))
    attributes |= set(vars(model.body)) | set(dir(model.body)) | set(vars(nn.Module()))
    layer_names = {name for name, _ in model.named_modules()} | {"conv1", "relu1", "body", "x"}
    candidates = {a for a in attributes if re.fullmatch(r"[A-Za-z0-9_]+", a)} - layer_names
    assert len(candidates) > 140  # the list was gathered (146 with torch 2.13)
    missing = sorted(a for a in candidates | set(keyword.kwlist) if reserved_reason(a) is None)
    assert missing == []


def test_names_beginning_with_two_underscores_are_refused_as_torch_may_add_them_at_run_time():
    """torch.compile sets attributes such as ___needs_generation_tag_patch on modules it has
    seen, after the model is built: no fixed list can hold them all."""
    model = archspec.compile(archspec.loads(spec_text("x", nested=False)))
    torch.compile(model, backend="eager")(torch.randn(1, 3, 8, 8))
    added = {a for a in dir(model) if a.startswith("___")}
    for name in added | {"__private", "___x"}:
        with pytest.raises(SpecError) as info:
            archspec.loads(spec_text(name, nested=True))
        [d] = info.value.diagnostics
        assert d.message == (f"'{name}' begins with two underscores, kept for Python's and "
                             "PyTorch's own attributes: it cannot name a layer or block")
    archspec.loads(spec_text("_private", nested=True))  # one underscore is the user's


@pytest.mark.parametrize("name", ["archspec_forward", "archspec_ops", "archspec_op_x"])
def test_names_beginning_with_archspec_are_refused_where_written(name):
    """The compiled model's own attributes (a block's generated method, the direct layers' ops)
    begin with archspec_: a layer so named would replace one."""
    text = spec_text(name, nested=True)
    with pytest.raises(SpecError) as info:
        archspec.loads(text)
    [d] = info.value.diagnostics
    assert d.message == (f"'{name}' begins with archspec_, kept for the compiled model's own "
                         "attributes: it cannot name a layer or block")
    assert d.hint.startswith("choose another name")
    assert (d.line, d.column) == (5, column(text, name))


@pytest.mark.parametrize("nested", [False, True], ids=["top", "in-block"])
@pytest.mark.parametrize("name", NAMES)
def test_check_refuses_a_module_attribute_as_a_name(name, nested):
    text = spec_text(name, nested)
    with pytest.raises(SpecError) as info:
        archspec.loads(text)
    [d] = info.value.diagnostics
    assert d.message.endswith(": it cannot name a layer or block")
    assert f"'{name}' is a" in d.message and "choose another name" in d.hint
    assert (d.line, d.column) == (5, column(text, name))


@pytest.mark.parametrize("name", ["forward", "training", "_modules", "class"])
def test_check_verify_and_build_refuse_it_on_the_command_line(name, tmp_path):
    spec = tmp_path / "named.yaml"
    spec.write_text(spec_text(name, nested=True))
    out = tmp_path / "model.pt"
    for command in (["check"], ["verify"], ["build", "-o", str(out)]):
        result = subprocess.run([sys.executable, "-m", "archspec", *command, str(spec)],
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 1, (command, result.stderr)
        assert "Traceback" not in result.stderr
        assert f"{spec}:5:{column(spec.read_text(), name)}: error: '{name}' is a" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [spec]


@pytest.mark.parametrize("name", ["forward", "eval", "graph", "meta"])
def test_a_checkpoint_whose_spec_uses_such_a_name_is_refused_on_load(name, tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": FORMAT, "spec": spec_text(name, nested=False), "state_dict": {}}, path)
    with pytest.raises(CheckpointError) as info:
        archspec.load_checkpoint(path)
    assert f"'{name}' is a" in str(info.value) and "it cannot name a layer" in str(info.value)


def test_the_compiler_refuses_names_the_front_end_list_misses(monkeypatch):
    """A newer torch may add module attributes; the back end checks against the installed one."""
    monkeypatch.setattr(expand, "reserved_reason", lambda name: None)
    network = archspec.loads(spec_text("forward", nested=True))  # the front end lets it through
    with pytest.raises(SpecError) as info:
        archspec.compile(network)
    [d] = info.value.diagnostics
    assert d.layer == "body.forward" and (d.line, d.column) == (5, 51)
    assert "'forward' is an attribute of every PyTorch module" in d.message


def test_names_close_to_attributes_still_compile():
    model = archspec.compile(archspec.loads(spec_text("forward1", nested=True).replace(
        "[relu, ", "[{type: relu, name: eval_}, ")))
    assert [name for name, _ in model.named_modules()][1:] == ["conv1", "body", "body.eval_",
                                                               "body.forward1"]
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4, 8, 8)
