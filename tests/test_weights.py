"""Loading a state_dict into a compiled spec (archspec.compile(state_dict=...), build/verify/
export --weights): strict, every problem located at its layer's spec line, nothing loaded on
failure, no code run from the file, and skip= for a fresh head."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from torchvision_layouts import ZOO, layout, random_state_dict

import archspec
from archspec.cli import main

ROOT = Path(__file__).resolve().parent.parent

TINY = """\
name: tiny
input: [3, 16, 16]
layers:
  - {type: conv, name: conv1, out_channels: 8, kernel_size: 3, padding: 1, bias: false}
  - {type: batch_norm, name: bn1}
  - {type: relu, name: relu}
  - type: residual
    name: block
    shortcut: projection
    layers:
      - {type: conv, name: conv1, out_channels: 16, kernel_size: 3, stride: 2, padding: 1}
      - {type: batch_norm, name: bn1}
  - {type: global_avg_pool, name: pool}
  - {type: flatten, name: flat}
  - {type: dense, name: fc, out_features: CLASSES}
"""


def spec(tmp_path, classes=10, text=TINY) -> Path:
    path = tmp_path / f"tiny{classes}.yaml"
    path.write_text(text.replace("CLASSES", str(classes)))
    return path


def where(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `- ` item whose line contains needle (the layer's
    mapping starts after the dash)."""
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number, line.index("- ") + 3
    raise AssertionError(needle)


def trained_state(path: Path, seed: int = 1) -> dict:
    """A compiled model's state_dict with every tensor changed from its initial value, as after
    training (BatchNorm statistics and counters included)."""
    torch.manual_seed(seed)
    model = archspec.compile(path)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)
            else:
                tensor.fill_(3)
    return model.state_dict()


def errors_of(excinfo) -> list:
    return excinfo.value.diagnostics


# ---- round trips --------------------------------------------------------------------------

@pytest.mark.parametrize("as_file", [True, False])
def test_loaded_model_computes_bitwise_what_the_saved_one_did(tmp_path, as_file):
    path = spec(tmp_path)
    torch.manual_seed(3)
    saved = archspec.compile(path)
    torch.nn.init.normal_(saved.get_submodule("fc").weight)
    saved.train()
    saved(torch.randn(4, 3, 16, 16))  # moves BatchNorm's running statistics off their start
    weights = tmp_path / "w.pt"
    torch.save(saved.state_dict(), weights)
    torch.manual_seed(4)  # a different initialisation, all of it overwritten
    loaded = archspec.compile(path, state_dict=weights if as_file else saved.state_dict())
    x = torch.randn(2, 3, 16, 16)
    saved.eval(), loaded.eval()
    assert torch.equal(saved(x), loaded(x))
    for key, tensor in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_resnet18_round_trip_through_build_weights_and_load_checkpoint(tmp_path):
    torch.manual_seed(0)
    source = archspec.compile(ROOT / "specs" / "resnet18.yaml")
    for p in source.parameters():
        torch.nn.init.normal_(p, std=0.02)
    weights, out = tmp_path / "w.pt", tmp_path / "r18.pt"
    torch.save(source.state_dict(), weights)
    result = cli("build", ROOT / "specs" / "resnet18.yaml", "--weights", weights, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "122 tensors loaded from" in result.stdout
    rebuilt = archspec.load_checkpoint(out)
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(source.eval()(x), rebuilt.eval()(x))


def test_an_archspec_checkpoint_is_a_weights_file(tmp_path):
    path = spec(tmp_path)
    state = trained_state(path)
    torch.manual_seed(0)
    model = archspec.compile(path)
    model.load_state_dict(state)
    archspec.save_checkpoint(model, tmp_path / "ckpt.pt")
    loaded = archspec.compile(path, state_dict=tmp_path / "ckpt.pt")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_torchvision_layout_loads_into_a_spec_with_torchvisions_names(tmp_path):
    """resnet18's keys, shapes and order written in the test as torchvision has them
    (tests/data/torchvision/resnet18.json): a spec naming its layers so loads all 122."""
    state = random_state_dict("resnet18", seed=5)
    stem = {k: v for k, v in state.items() if k.split(".")[0] in ("conv1", "bn1")}
    text = ("name: stem\ninput: [3, 32, 32]\nlayers:\n"
            "  - {type: conv, name: conv1, out_channels: 64, kernel_size: 7, stride: 2, "
            "padding: 3, bias: false}\n  - {type: batch_norm, name: bn1}\n")
    model = archspec.compile(spec(tmp_path, text=text), state_dict=stem)
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])
    assert model.state_dict()["bn1.num_batches_tracked"].item() == 7
    assert list(model.state_dict()) == [k for k, _ in layout("resnet18").state_dict[:6]]


# ---- every failure class, located ----------------------------------------------------------

def test_a_missing_tensor_is_located_at_its_layer(tmp_path):
    path = spec(tmp_path)
    state = trained_state(path)
    del state["fc.bias"]
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(path, state_dict=state)
    [error] = errors_of(excinfo)
    assert error.message == "the weights have no 'fc.bias' [10]"
    assert (error.file, error.line, error.column) == (str(path), *where(TINY, "name: fc"))
    assert error.layer == "fc"
    assert "--skip fc" in error.hint


def test_an_unexpected_tensor_is_reported_with_the_layer_list(tmp_path):
    path = spec(tmp_path)
    state = trained_state(path)
    state["aux.weight"] = torch.zeros(3)
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(path, state_dict=state)
    [error] = errors_of(excinfo)
    assert error.message == ("'aux.weight' [3] in the state_dict given belongs to no layer of "
                             "the spec")
    assert (error.line, error.column) == (3, 1)  # the spec's 'layers:' key
    assert "--skip aux" in error.hint


def test_a_renamed_layer_is_one_problem_with_a_did_you_mean(tmp_path):
    """torchvision calls the projection shortcut 'downsample' where this spec says 'shortcut'."""
    path = spec(tmp_path)
    state = {k.replace("block.shortcut", "block.downsample"): v
             for k, v in trained_state(path).items()}
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(path, state_dict=state)
    errors = errors_of(excinfo)
    renamed = [k for k in state if "downsample" in k]
    assert len(errors) == len(renamed) == 6  # conv weight; bn weight, bias, mean, var, counter
    first = errors[0]
    assert first.message == ("the weights have no 'block.shortcut.conv.weight' [16, 8, 1, 1]; "
                             "they have 'block.downsample.conv.weight' (the same shape), which "
                             "no layer of the spec has")
    assert first.hint.startswith("did you mean 'block.downsample.conv.weight'?")
    assert (first.line, first.column) == (9, 15)  # shortcut: projection
    assert first.layer == "block.shortcut"
    assert {e.message.split("'")[3] for e in errors} == set(renamed)


def test_dataparallel_prefixes_get_a_did_you_mean_for_every_key(tmp_path):
    path = spec(tmp_path)
    state = {f"module.{k}": v for k, v in trained_state(path).items()}
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(path, state_dict=state)
    errors = errors_of(excinfo)
    assert len(errors) == len(state)
    assert all(e.hint.startswith(f"did you mean 'module.{e.message.split(chr(39))[1]}'?")
               for e in errors)


def test_a_mis_shaped_tensor_gives_both_shapes(tmp_path):
    path = spec(tmp_path)
    state = trained_state(spec(tmp_path, classes=1000))
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(path, state_dict=state)
    errors = errors_of(excinfo)
    assert [e.message for e in errors] == [
        "'fc.weight' is [1000, 16] in the state_dict given but [10, 16] in the spec",
        "'fc.bias' is [1000] in the state_dict given but [10] in the spec"]
    assert {(e.line, e.column) for e in errors} == {where(TINY, "name: fc")}
    assert "skip=['fc']" in errors[0].hint


def test_a_tensor_of_the_wrong_kind_is_refused(tmp_path):
    path = spec(tmp_path)
    state = trained_state(path)
    state["conv1.weight"] = state["conv1.weight"].to(torch.int64)
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(path, state_dict=state)
    [error] = errors_of(excinfo)
    assert error.message == ("'conv1.weight' holds torch.int64 values (torch.strided) in the "
                             "state_dict given where the spec has torch.float32")
    assert (error.line, error.column) == where(TINY, "name: conv1, out_channels: 8")


def test_every_problem_is_reported_together_in_spec_order(tmp_path):
    path = spec(tmp_path)
    state = trained_state(spec(tmp_path, classes=1000))
    del state["conv1.weight"]
    state["extra.bias"] = torch.zeros(2)
    state["block.conv1.weight"] = state["block.conv1.weight"][:8]
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(path, state_dict=state)
    errors = errors_of(excinfo)
    assert [e.message.split("'")[1] for e in errors] == [
        "extra.bias", "conv1.weight", "block.conv1.weight", "fc.weight", "fc.bias"]
    assert [e.line for e in errors] == sorted(e.line for e in errors)
    assert excinfo.value.count == 5


def test_nothing_is_loaded_when_anything_is_wrong(tmp_path):
    path = spec(tmp_path)
    torch.manual_seed(0)
    fresh = archspec.compile(path).state_dict()
    state = trained_state(spec(tmp_path, classes=1000))
    torch.manual_seed(0)
    model = archspec.compile(path)
    with pytest.raises(archspec.WeightsError):
        from archspec.backends.weights import load_weights
        load_weights(model, archspec.load(path), state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in fresh.items())


def test_half_precision_weights_load_converted_to_the_models_float32(tmp_path):
    path = spec(tmp_path)
    half = {k: v.half() if v.is_floating_point() else v for k, v in trained_state(path).items()}
    model = archspec.compile(path, state_dict=half)
    assert model.state_dict()["fc.weight"].dtype == torch.float32
    assert torch.equal(model.state_dict()["fc.weight"], half["fc.weight"].float())


def test_a_file_without_batchnorm_counters_loads_and_counts_from_zero(tmp_path):
    """Files saved before PyTorch 0.4.1 have no num_batches_tracked; PyTorch starts it at 0."""
    path = spec(tmp_path)
    state = {k: v for k, v in trained_state(path).items() if "num_batches_tracked" not in k}
    model = archspec.compile(path, state_dict=state)
    assert model.state_dict()["bn1.num_batches_tracked"].item() == 0
    assert torch.equal(model.state_dict()["bn1.running_var"], state["bn1.running_var"])


# ---- skip: a fresh head for fine-tuning ----------------------------------------------------

def test_skip_keeps_fresh_weights_and_ignores_the_files_head(tmp_path):
    pretrained = trained_state(spec(tmp_path, classes=1000))  # a 1000-class head in the file
    path = spec(tmp_path, classes=10)
    torch.manual_seed(7)
    fresh = archspec.compile(path).state_dict()
    torch.manual_seed(7)  # the same initialisation: skipped layers must keep exactly it
    model = archspec.compile(path, state_dict=pretrained, skip=["fc"])
    for key, tensor in model.state_dict().items():
        expected = fresh[key] if key.startswith("fc.") else pretrained[key]
        assert torch.equal(tensor, expected), key


def test_skip_of_a_block_leaves_all_its_layers_fresh(tmp_path):
    path = spec(tmp_path)
    state = trained_state(path)
    torch.manual_seed(2)
    fresh = archspec.compile(path).state_dict()
    torch.manual_seed(2)
    model = archspec.compile(path, state_dict=state, skip=["block", "fc"])
    kept = [k for k in state if k.startswith(("block.", "fc."))]
    assert len(kept) == 2 + 5 + 1 + 5 + 2  # conv w+b, bn, shortcut conv w, its bn, fc w+b
    assert all(torch.equal(model.state_dict()[k], fresh[k]) for k in kept)
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])


def test_skip_of_an_unknown_name_is_an_error_with_a_did_you_mean(tmp_path):
    path = spec(tmp_path)
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(path, state_dict=trained_state(path), skip=["fcc"])
    [error] = errors_of(excinfo)
    assert error.message == "skip 'fcc' names no layer or block with weights in the spec"
    assert error.hint == "did you mean 'fc'?"
    with pytest.raises(TypeError, match="needs state_dict"):
        archspec.compile(path, skip=["fc"])
    with pytest.raises(TypeError, match="a list"):
        archspec.compile(path, state_dict=trained_state(path), skip="fc")


def test_meta_device_checks_the_weights_without_loading(tmp_path):
    path = spec(tmp_path)
    model = archspec.compile(path, device="meta", state_dict=trained_state(path))
    assert next(model.parameters()).is_meta
    with pytest.raises(archspec.WeightsError):
        archspec.compile(path, device="meta", state_dict=trained_state(spec(tmp_path, 1000)))


# ---- files that are not weights --------------------------------------------------------------

class RunsCode:
    """Pickles as a call to os.system: what a hostile .pt file does on a plain torch.load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    path, hostile, marker = spec(tmp_path), tmp_path / "hostile.pt", tmp_path / "ran"
    torch.save({"conv1.weight": RunsCode(marker)}, hostile)
    with pytest.raises(archspec.CheckpointError) as excinfo:
        archspec.compile(path, state_dict=hostile)
    assert excinfo.value.message == (f"'{hostile}' is not a weights file (a state_dict saved "
                                     "with torch.save), or it contains code; refusing to load it")
    assert not marker.exists()
    result = real_cli("build", path, "--weights", hostile, "-o", tmp_path / "out.pt")
    assert result.returncode == 1 and "contains code; refusing" in result.stderr
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_a_file_that_is_not_a_state_dict_says_what_to_do(tmp_path):
    path, other = spec(tmp_path), tmp_path / "train.pt"
    torch.save({"model": trained_state(path), "epoch": 3}, other)
    with pytest.raises(archspec.CheckpointError) as excinfo:
        archspec.compile(path, state_dict=other)
    assert excinfo.value.message == f"'{other}' is not a state_dict (a mapping of names to tensors)"
    assert "checkpoint['model']" in excinfo.value.hint
    with pytest.raises(archspec.FileError):
        archspec.compile(path, state_dict=tmp_path / "absent.pt")


# ---- the command line ------------------------------------------------------------------------

def cli(*args):
    """The command in this process (click's runner): exit code, stdout and stderr as a user
    sees them."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout,
                           stderr=result.stderr)


def real_cli(*args):
    return subprocess.run([sys.executable, "-m", "archspec", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


def test_build_with_weights_exit_codes_and_located_errors(tmp_path):
    path, good, bad = spec(tmp_path), tmp_path / "good.pt", tmp_path / "bad.pt"
    torch.save(trained_state(path), good)
    torch.save(trained_state(spec(tmp_path, classes=1000)), bad)
    out = tmp_path / "out.pt"

    result = cli("build", path, "--weights", bad, "-o", out)
    assert result.returncode == 1 and not out.exists()
    line, column = where(TINY, "name: fc")
    assert (f"{path}:{line}:{column}: error: 'fc.weight' is [1000, 16] in the weights "
            f"'{bad}' but [10, 16] in the spec (layer 'fc')") in result.stderr
    assert "2 errors" in result.stderr and "Traceback" not in result.stderr

    result = cli("build", path, "--weights", bad, "--skip", "fc", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "2 left fresh: fc" in result.stdout
    state = archspec.load_checkpoint(out).state_dict()
    assert torch.equal(state["conv1.weight"], torch.load(bad)["conv1.weight"])

    assert cli("build", path, "--skip", "fc", "-o", out).returncode == 2
    result = cli("build", path, "--weights", good, "--device", "meta", "-o", out)
    assert result.returncode == 0 and "checked against" in result.stdout


def test_verify_and_export_take_the_weights(tmp_path):
    path, good, bad = spec(tmp_path), tmp_path / "good.pt", tmp_path / "bad.pt"
    state = trained_state(path)
    torch.save(state, good)
    torch.save(trained_state(spec(tmp_path, classes=1000)), bad)
    verified = cli("verify", path, "--weights", good)
    assert verified.returncode == 0 and f"cpu, weights from {good})" in verified.stdout
    assert cli("verify", path, "--weights", bad).returncode == 1
    program_file = tmp_path / "tiny.pt2"
    result = cli("export", path, "--to", "torch-export", "--weights", good, "-o", program_file)
    assert result.returncode == 0, result.stderr
    program = torch.export.load(program_file)
    assert all(torch.equal(program.state_dict[k], state[k]) for k in program.state_dict)
    python = cli("export", path, "--to", "python", "--weights", good, "-o", tmp_path / "t.py")
    assert python.returncode == 2 and "Python source holds no weights" in python.stderr
    with pytest.raises(archspec.ArchspecError, match="Python source holds no weights"):
        archspec.export(path, tmp_path / "t.py", to="python", state_dict=good)
    assert not (tmp_path / "t.py").exists()
    archspec.export(path, program_file, to="torch-export", state_dict=good, skip=["fc."])
    program = torch.export.load(program_file)
    assert torch.equal(program.state_dict["conv1.weight"], state["conv1.weight"])
    assert not torch.equal(program.state_dict["fc.weight"], state["fc.weight"])


def test_a_wholly_renamed_model_of_many_layers_is_reported_in_bounded_time(tmp_path):
    """1,000 tensors, every one renamed (a file saved from another program's naming): each is
    reported with its match, in well under a second of matching."""
    import time

    from archspec.backends.weights import weight_problems
    text = ("name: deep\ninput: [8]\nlayers:\n  - {type: repeat, name: stack, times: 500, "
            "layers: [{type: dense, name: fc, out_features: 8}]}\n")
    net = archspec.load(spec(tmp_path, text=text))
    expected = archspec.compile(net, device="meta").state_dict()
    given = {k.replace("stack.", "body.blocks."): torch.zeros(v.shape)
             for k, v in expected.items()}
    start = time.process_time()
    problems = weight_problems(net, expected, given, "w.pt")
    assert time.process_time() - start < 5
    assert len(problems) == 1000
    assert problems[0].message.startswith("the weights have no 'stack.0.fc.weight' [8, 8]; "
                                          "they have 'body.blocks.0.fc.weight'")
    assert all(e.message.split("'")[1].replace("stack.", "body.blocks.") ==
               e.message.split("'")[3] for e in problems)


# ---- torchvision's weights in the zoo (values stand in for the download tests must not make) --

@pytest.mark.parametrize("name", ["squeezenet1_1", "googlenet", "alexnet"])
def test_torchvisions_weights_load_strictly_into_the_zoo_spec(name):
    spec_file, params = ZOO[name]
    state = random_state_dict(name, seed=11)  # torchvision's keys, shapes and order
    model = archspec.compile(archspec.load(ROOT / spec_file, params=params), state_dict=state)
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[key], tensor) for key, tensor in state.items())


RESNET = ROOT / "specs" / "resnet.yaml"


def test_torchvisions_resnet50_weights_fine_tune_with_a_new_10_class_head(tmp_path):
    pretrained, weights = random_state_dict("resnet50", seed=2), tmp_path / "resnet50.pt"
    torch.save(pretrained, weights)
    net = archspec.load(RESNET, params={"depth": 50, "classes": 10})
    with pytest.raises(archspec.WeightsError) as excinfo:
        archspec.compile(net, state_dict=weights)
    assert [e.message for e in errors_of(excinfo)] == [
        f"'fc.weight' is [1000, 2048] in the weights '{weights}' but [10, 2048] in the spec",
        f"'fc.bias' is [1000] in the weights '{weights}' but [10] in the spec"]
    assert {e.layer for e in errors_of(excinfo)} == {"fc"}

    model = archspec.compile(net, state_dict=weights, skip=["fc"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in pretrained.items() if not k.startswith("fc."))
    assert before["fc.weight"].shape == (10, 2048)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name.startswith("fc.")
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.eval()  # the frozen backbone's batch-norm statistics stay as loaded
    loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 64, 64)), torch.tensor([3, 7]))
    loss.backward()
    optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"fc.weight", "fc.bias"}
