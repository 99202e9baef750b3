"""imports: blocks from other spec files. Diagnostics point at the file where the thing was
written (with the chain of uses as notes); cycles, self-imports, non-files, clashes and limits
are located errors found in bounded time; a checkpoint stores the resolved spec, which reloads
without the imported files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import archspec
from archspec.cli import main
from archspec.frontend import Limits
from archspec.frontend.resolved import dump_resolved
from archspec.frontend.yaml_loader import load_yaml

ROOT = Path(__file__).resolve().parent.parent

UNIT = """\
blocks:
  unit:
    params: {c: ~}
    layers:
      - {type: conv, out_channels: $c, kernel_size: 3, padding: 1}
      - relu
"""

NET = """\
name: net
input: [3, 8, 8]
imports:
  - {file: lib/unit.yaml}
layers:
  - {type: unit, name: a, c: 4}
  - {type: unit, name: b, c: 8}
"""


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / next(iter(files))


def errors(spec, **kwargs) -> list[archspec.Diagnostic]:
    with pytest.raises(archspec.SpecError) as info:
        archspec.analyze(archspec.frontend.load(spec, **kwargs))
    return info.value.diagnostics


def test_an_imported_block_expands_as_if_written_in_the_spec(tmp_path):
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": UNIT})
    inline = NET.replace("imports:\n  - {file: lib/unit.yaml}\n", UNIT)
    imported, written = archspec.analyze(spec), archspec.analyze(archspec.loads(inline))
    assert [(l.name, l.output_shape, l.params) for l in imported.layers.values()] == \
        [(l.name, l.output_shape, l.params) for l in written.layers.values()]
    # by hand: conv 3->4 3x3 (3*4*9 + 4 = 112), conv 4->8 (4*8*9 + 8 = 296)
    assert imported.params == 112 + 296


def test_a_bad_value_in_an_imported_block_is_located_in_its_file_with_the_use_as_note(tmp_path):
    lib = UNIT.replace("kernel_size: 3", "kernel_size: three")
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": lib})
    first, second = errors(spec)
    lib_file = str(tmp_path / "lib" / "unit.yaml")
    column = lib.splitlines()[4].index("three") + 1
    assert first.file == lib_file and (first.line, first.column) == (5, column)
    assert first.message.startswith("kernel_size must be a positive integer")
    assert first.notes == [f"in block 'unit' from {lib_file}:2:3, used at {spec}:6:5"]
    assert second.notes == [f"in block 'unit' from {lib_file}:2:3, used at {spec}:7:5"]


def test_a_shape_error_in_an_imported_block_is_located_in_its_file(tmp_path):
    lib = UNIT.replace("padding: 1", "padding: 0").replace("- relu", "- {type: max_pool, kernel_size: 9}")
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": lib})
    [d] = errors(spec)[:1]
    column = lib.splitlines()[5].index("9}") + 1  # the pool's kernel_size
    assert d.file == str(tmp_path / "lib" / "unit.yaml") and (d.line, d.column) == (6, column)
    assert d.layer == "a.pool1" and "6x6" in " ".join(d.notes + [d.message])
    assert f"used at {spec}:6:5" in d.notes[-1]


def test_nested_imports_give_the_chain_of_uses(tmp_path):
    """A block of one library used by a block of another: both uses are noted, innermost
    last, each with its own file."""
    spec = write(tmp_path, {
        "net.yaml": NET.replace("lib/unit.yaml", "lib/pair.yaml").replace("unit", "pair"),
        "lib/pair.yaml": "imports:\n  - {file: unit.yaml}\nblocks:\n  pair:\n"
                         "    params: {c: ~}\n    layers:\n      - {type: unit, c: $c}\n"
                         "      - {type: unit, c: $c}\n",
        "lib/unit.yaml": UNIT.replace("kernel_size: 3", "kernel_size: 0")})
    d = errors(spec)[0]
    pair, unit = tmp_path / "lib" / "pair.yaml", tmp_path / "lib" / "unit.yaml"
    assert (d.file, d.line, d.column) == (str(unit), 5, UNIT.splitlines()[4].index("3,") + 1)
    assert d.notes == [f"in block 'pair' from {pair}:4:3, used at {spec}:6:5",
                       f"in block 'unit' from {unit}:2:3, used at {pair}:7:9"]


def test_cli_shows_the_source_line_of_the_right_file_and_json_names_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": UNIT.replace("padding: 1", "padding: x")})
    result = CliRunner().invoke(main, ["check", "net.yaml"])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    head = lines.index(next(l for l in lines if l.startswith("lib/unit.yaml:5:")))
    assert "padding must be" in lines[head]
    assert lines[head + 1].strip() == \
        "- {type: conv, out_channels: $c, kernel_size: 3, padding: x}"
    assert lines[head + 2].index("^") == lines[head + 1].index("padding: x") + len("padding: ")
    assert "note: in block 'unit' from lib/unit.yaml:2:3, used at net.yaml:6:5" in result.stderr
    result = CliRunner().invoke(main, ["check", "--json", "net.yaml"])
    [doc] = [json.loads(line) for line in result.stdout.splitlines()]
    assert doc["file"] == "net.yaml"
    assert [(e["file"], e["line"], e["column"]) for e in doc["errors"]] == \
        [("lib/unit.yaml", 5, UNIT.splitlines()[4].index("1}") + 1)] * 2


def test_standard_input_imports_from_the_working_folder(tmp_path):
    write(tmp_path, {"lib/unit.yaml": UNIT})
    result = subprocess.run([sys.executable, "-m", "archspec", "check", "-"], input=NET,
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), check=False)
    assert result.returncode == 0, result.stderr
    assert "params: 408 " in result.stdout


def test_text_imports_are_relative_to_its_filename_or_the_working_folder(tmp_path, monkeypatch):
    write(tmp_path, {"lib/unit.yaml": UNIT})
    net = archspec.frontend.loads(NET, filename=str(tmp_path / "net.yaml"))
    assert list(net.nodes)[0] == "a.conv1"
    monkeypatch.chdir(tmp_path)
    assert archspec.loads(NET).name == "net"


# --------------------------------------------------------------------------- refused imports

def one_error(spec, **kwargs) -> archspec.Diagnostic:
    started = time.monotonic()
    [d] = errors(spec, **kwargs)
    assert time.monotonic() - started < 5
    return d


def test_a_self_import_is_refused_at_the_import(tmp_path):
    spec = write(tmp_path, {"net.yaml": NET.replace("lib/unit.yaml", "../" + tmp_path.name
                                                    + "/net.yaml")})
    d = one_error(spec)
    assert (d.file, d.line, d.column) == (str(spec), 4, 12)
    assert d.message == f"'{spec}' imports itself"


def test_an_import_cycle_is_refused_where_it_closes(tmp_path):
    spec = write(tmp_path, {
        "net.yaml": NET.replace("lib/unit.yaml", "a.yaml"),
        "a.yaml": "imports:\n  - {file: b.yaml}\n",
        "b.yaml": "blocks: {}\nimports:\n  - {file: a.yaml}\n"})
    d = one_error(spec)
    assert (d.file, d.line, d.column) == (str(tmp_path / "b.yaml"), 3, 12)
    assert d.message.startswith(f"import cycle: '{tmp_path / 'a.yaml'}' is already being imported")
    assert d.notes == [f"in {tmp_path / 'b.yaml'}, imported at {tmp_path / 'a.yaml'}:2:12",
                       f"in {tmp_path / 'a.yaml'}, imported at {spec}:4:12"]


@pytest.mark.parametrize("make,kind", [
    (lambda p: os.mkfifo(p), "a FIFO (named pipe)"),
    (lambda p: os.mkdir(p), "a directory"),
])
def test_non_files_are_refused_without_blocking(tmp_path, make, kind):
    spec = write(tmp_path, {"net.yaml": NET})
    (tmp_path / "lib").mkdir()
    make(tmp_path / "lib" / "unit.yaml")
    # in a process of its own: a FIFO opened for reading the usual way waits for a writer
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "archspec", "check", str(spec)],
                            capture_output=True, text=True, timeout=60, check=False,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert time.monotonic() - started < 30
    assert result.returncode == 1
    assert f"{spec}:4:12: error: cannot read imported spec file " \
           f"'{tmp_path / 'lib' / 'unit.yaml'}': it is {kind}, not a regular file" in result.stderr


def test_a_device_is_refused(tmp_path):
    relative = os.path.relpath("/dev/zero", tmp_path)
    d = one_error(write(tmp_path, {"net.yaml": NET.replace("lib/unit.yaml", relative)}))
    assert "it is a character device, not a regular file" in d.message and d.line == 4


def test_more_files_than_the_limit_are_refused(tmp_path):
    chain = {f"l{i}.yaml": f"imports:\n  - {{file: l{i + 1}.yaml}}\n" for i in range(5)}
    spec = write(tmp_path, {"net.yaml": NET.replace("lib/unit.yaml", "l0.yaml"), **chain,
                            "l5.yaml": UNIT})
    d = one_error(spec, limits=Limits(max_files=4))
    # net, l0, l1, l2 are read; l2's import of l3 would be the fifth file
    assert (d.file, d.line, d.column) == (str(tmp_path / "l2.yaml"), 2, 12)
    assert d.message == "the spec reads more than 4 files (max_files limit)"


def test_the_byte_limit_counts_every_file(tmp_path):
    padding = "# " + "x" * 997 + "\n"
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": padding * 3 + UNIT})
    size = (tmp_path / "lib" / "unit.yaml").stat().st_size
    limit = len(NET) + size - 1  # each file alone is under it, both together are not
    d = one_error(spec, limits=Limits(max_bytes=limit))
    assert (d.line, d.column) == (4, 12)
    assert d.message == (f"importing '{tmp_path / 'lib' / 'unit.yaml'}' ({size:,} bytes) makes "
                         f"the spec's files more than {limit:,} bytes in all (max_bytes limit)")
    archspec.frontend.load(spec, limits=Limits(max_bytes=limit + 1))


def test_the_node_limit_counts_every_file(tmp_path):
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": UNIT})
    _, alone = load_yaml(NET)
    d = one_error(spec, limits=Limits(max_nodes=alone.nodes + 3))
    assert d.file == str(tmp_path / "lib" / "unit.yaml")
    assert d.message.startswith(f"spec expands to more than {alone.nodes + 3:,} nodes")


def test_two_definitions_of_one_block_clash(tmp_path):
    spec = write(tmp_path, {
        "net.yaml": NET.replace("  - {file: lib/unit.yaml}\n",
                                "  - {file: lib/unit.yaml}\n  - {file: lib/other.yaml}\n"),
        "lib/unit.yaml": UNIT, "lib/other.yaml": UNIT})
    d = one_error(spec)
    lib, other = tmp_path / "lib" / "unit.yaml", tmp_path / "lib" / "other.yaml"
    assert (d.file, d.line, d.column) == (str(spec), 5, 12)
    assert d.message == f"block 'unit' is defined twice: at {lib}:2:3 and at {other}:2:3"


def test_a_spec_block_clashes_with_an_imported_one(tmp_path):
    spec = write(tmp_path, {"net.yaml": NET + UNIT, "lib/unit.yaml": UNIT})
    d = one_error(spec)
    assert (d.file, d.line, d.column) == (str(spec), 9, 3)  # the spec's own 'unit:'
    assert "block 'unit' is defined twice" in d.message


def test_one_file_imported_by_two_routes_is_read_once_and_no_clash(tmp_path):
    spec = write(tmp_path, {
        "net.yaml": NET.replace("  - {file: lib/unit.yaml}\n",
                                "  - {file: lib/a.yaml}\n  - {file: lib/b.yaml}\n"),
        "lib/a.yaml": "imports:\n  - {file: unit.yaml}\n",
        "lib/b.yaml": "imports:\n  - {file: unit.yaml}\n", "lib/unit.yaml": UNIT})
    net = archspec.frontend.load(spec, limits=Limits(max_files=4))  # net, a, b, unit
    assert len(net.source.maps) == 4


def test_selected_blocks_bring_the_blocks_they_use(tmp_path):
    lib = UNIT + "  pair:\n    params: {c: ~}\n    layers: [{type: unit, c: $c}, {type: unit, c: $c}]\n"
    spec = write(tmp_path, {
        "net.yaml": NET.replace("{file: lib/unit.yaml}", "{file: lib/unit.yaml, blocks: [pair]}")
                       .replace("type: unit", "type: pair"),
        "lib/unit.yaml": lib})
    assert archspec.analyze(spec).params == 112 + (4 * 4 * 9 + 4) + 296 + (8 * 8 * 9 + 8)
    # the spec's own 'unit' would otherwise be taken silently by the imported pair
    clash = write(tmp_path, {"clash.yaml": spec.read_text() + UNIT})
    assert "block 'unit' is defined twice" in one_error(clash).message


def test_a_selected_name_must_exist(tmp_path):
    spec = write(tmp_path, {"net.yaml": NET.replace("{file: lib/unit.yaml}",
                                                    "{file: lib/unit.yaml, blocks: [unti]}"),
                            "lib/unit.yaml": UNIT})
    d = one_error(spec)
    assert (d.line, d.column) == (4, 36)
    assert d.message == "'lib/unit.yaml' has no block 'unti'" and d.hint == "did you mean 'unit'?"


def test_an_imported_file_holds_only_blocks_params_and_imports(tmp_path):
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": "name: x\n" + UNIT})
    d = one_error(spec)
    assert (d.file, d.line, d.column) == (str(tmp_path / "lib" / "unit.yaml"), 1, 1)
    assert d.message == "an imported file holds only blocks, params and imports: 'name' is " \
                        "not allowed in it"
    assert d.notes == [f"in {tmp_path / 'lib' / 'unit.yaml'}, imported at {spec}:4:12"]


def test_a_yaml_error_in_an_imported_file_is_located_there(tmp_path):
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": "blocks: {unit: [}\n"})
    d = one_error(spec)
    assert d.file == str(tmp_path / "lib" / "unit.yaml") and d.line == 1
    assert d.message.startswith("YAML syntax error")


# --------------------------------------------------------------------------- the standard blocks

def test_the_fire_block_is_torchvisions_fire_module():
    """specs/blocks/squeezenet.yaml's fire against torchvision's Fire written out here in
    PyTorch (torchvision/models/squeezenet.py): same state_dict, same output."""
    torch = pytest.importorskip("torch")
    from torch import nn

    class Fire(nn.Module):
        def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
            super().__init__()
            self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
            self.squeeze_activation = nn.ReLU(inplace=True)
            self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
            self.expand1x1_activation = nn.ReLU(inplace=True)
            self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
            self.expand3x3_activation = nn.ReLU(inplace=True)

        def forward(self, x):
            x = self.squeeze_activation(self.squeeze(x))
            return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                              self.expand3x3_activation(self.expand3x3(x))], 1)

    spec = ("name: f\ninput: [96, 13, 13]\nimports:\n  - {file: blocks/squeezenet.yaml}\n"
            "layers:\n  - {type: fire, name: fire, squeeze_planes: 16, expand1x1_planes: 64, "
            "expand3x3_planes: 64}\n")
    model = archspec.compile(archspec.frontend.loads(spec, filename=str(ROOT / "specs" / "f.yaml")))
    reference = Fire(96, 16, 64, 64)
    ours = {k.removeprefix("fire."): tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert list(ours) == list(reference.state_dict())
    reference.load_state_dict({k.removeprefix("fire."): v for k, v in model.state_dict().items()})
    x = torch.randn(2, 96, 13, 13)
    assert torch.equal(model(x), reference(x))


# --------------------------------------------------------------------------- checkpoints

def test_a_checkpoint_reloads_without_the_imported_files(tmp_path):
    torch = pytest.importorskip("torch")
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": UNIT})
    before = archspec.analyze(spec)
    out = tmp_path / "net.pt"
    result = CliRunner().invoke(main, ["build", str(spec), "-o", str(out)])
    assert result.exit_code == 0, result.output
    saved = archspec.compile(spec).state_dict()
    (tmp_path / "lib" / "unit.yaml").unlink()
    with pytest.raises(archspec.SpecError):
        archspec.load(spec)  # the spec itself needs the library now gone
    model = archspec.load_checkpoint(out)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in saved.items()}
    text = torch.load(out, weights_only=True)["spec"]
    assert "imports" not in load_yaml(text)[0]
    after = archspec.analyze(archspec.loads(text))
    assert [(l.name, l.output_shape, l.params, l.macs) for l in after.layers.values()] == \
        [(l.name, l.output_shape, l.params, l.macs) for l in before.layers.values()]


def test_a_checkpoint_whose_spec_imports_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    write(tmp_path, {"lib/unit.yaml": UNIT})
    model = archspec.compile(archspec.frontend.loads(NET, filename=str(tmp_path / "net.yaml")))
    path = tmp_path / "bad.pt"
    torch.save({"format": "archspec-checkpoint/1", "spec": NET,
                "state_dict": model.state_dict()}, path)
    with pytest.raises(archspec.CheckpointError) as info:
        archspec.load_checkpoint(path)
    assert "this spec may not import files" in info.value.message


def test_the_resolved_text_reads_back_as_the_same_data():
    data = {"name": "08", "a": "1e-3", "b": "2020-01-01", "c": "yes", "d": 1e-3, "e": "1:30",
            "f": "~", "g": "=", "h": ["0x1F", 0x1F, "-7", None, True, "true"], "i": "a: b"}
    assert load_yaml(dump_resolved(data))[0] == data


@pytest.mark.parametrize("command", [["diagram", "--format", "dot"], ["export", "--to", "python"]])
def test_an_imported_file_is_never_overwritten(tmp_path, command):
    spec = write(tmp_path, {"net.yaml": NET, "lib/unit.yaml": UNIT})
    lib = tmp_path / "lib" / "unit.yaml"
    result = CliRunner().invoke(main, [command[0], str(spec), "-o", str(lib), *command[1:]])
    assert result.exit_code == 1
    assert f"{lib}: error: refusing to overwrite the input spec" in result.stderr
    assert lib.read_text() == UNIT


# --------------------------------------------------------------------------- params

WIDTHS = """\
params:
  width: 4
  wide: "$width * 2"
blocks:
  unit:
    params: {c: "$width"}
    layers:
      - {type: conv, out_channels: $c, kernel_size: 3, padding: 1}
"""

USES_PARAMS = """\
name: net
input: [3, 8, 8]
imports:
  - {file: lib/widths.yaml}
params:
  classes: "$wide + 2"
layers:
  - {type: unit}
  - flatten
  - {type: dense, out_features: $classes}
"""


def test_imported_params_come_first_and_set_reaches_them(tmp_path):
    spec = write(tmp_path, {"net.yaml": USES_PARAMS, "lib/widths.yaml": WIDTHS})
    net = archspec.load(spec)
    assert net.params == {"width": 4, "wide": 8, "classes": 10}
    # conv 3->4 (3*4*9 + 4 = 112), dense 4*8*8 -> 10 (256*10 + 10 = 2570)
    assert archspec.analyze(net).params == 112 + 2570
    net = archspec.frontend.load(spec, params={"width": 2})
    assert net.params == {"width": 2, "wide": 4, "classes": 6}


def test_a_wrong_set_value_names_the_imported_declaration(tmp_path):
    spec = write(tmp_path, {"net.yaml": USES_PARAMS, "lib/widths.yaml": WIDTHS})
    lib = tmp_path / "lib" / "widths.yaml"
    [d] = errors(spec, params={"width": "four"})
    assert (d.file, d.line, d.column) == (str(lib), 2, 3)
    assert d.message.startswith("parameter 'width'") and f"declared at {lib}:2:3" in d.message


def test_a_param_clash_is_located(tmp_path):
    spec = write(tmp_path, {"net.yaml": USES_PARAMS.replace("  classes:", "  width: 3\n  classes:"),
                            "lib/widths.yaml": WIDTHS})
    d = one_error(spec)
    assert (d.file, d.line, d.column) == (str(spec), 6, 3)
    assert d.message == f"param 'width' is defined twice: at {tmp_path / 'lib' / 'widths.yaml'}" \
                        f":2:3 and at {spec}:6:3"


def test_a_checkpoint_built_with_set_stores_the_bound_values(tmp_path):
    torch = pytest.importorskip("torch")
    spec = write(tmp_path, {"net.yaml": USES_PARAMS, "lib/widths.yaml": WIDTHS})
    out = tmp_path / "net.pt"
    result = CliRunner().invoke(main, ["build", str(spec), "--set", "width=2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    shutil.rmtree(tmp_path / "lib")
    text = torch.load(out, weights_only=True)["spec"]
    assert load_yaml(text)[0]["params"] == {"width": 2, "wide": 4, "classes": 6}
    model = archspec.load_checkpoint(out)
    # conv 3->2 (3*2*9 + 2 = 56), dense 2*8*8 -> 6 (128*6 + 6 = 774)
    assert sum(p.numel() for p in model.parameters()) == 56 + 774


def test_a_one_file_spec_built_with_set_stores_the_bound_values(tmp_path):
    torch = pytest.importorskip("torch")
    spec = write(tmp_path, {"net.yaml": "name: n\ninput: [4]\nparams: {n: 3}\n"
                                        "layers: [{type: dense, out_features: $n}]\n"})
    out = tmp_path / "n.pt"
    assert CliRunner().invoke(main, ["build", str(spec), "--set", "n=5", "-o", str(out)]).exit_code == 0
    model = archspec.load_checkpoint(out)
    assert model.state_dict()["dense1.weight"].shape == (5, 4)
    plain = tmp_path / "plain.pt"  # without --set, the file as written (comments and all)
    assert CliRunner().invoke(main, ["build", str(spec), "-o", str(plain)]).exit_code == 0
    assert torch.load(plain, weights_only=True)["spec"] == spec.read_text()


def test_the_json_schema_knows_imports_and_imported_block_types():
    jsonschema = pytest.importorskip("jsonschema")
    from archspec.frontend.schema import spec_json_schema
    validator = jsonschema.Draft202012Validator(spec_json_schema())
    assert not list(validator.iter_errors(load_yaml(NET)[0]))  # 'unit' comes from the import
    bad = load_yaml(NET.replace("{file: lib/unit.yaml}", "{file: lib/unit.yaml, blokcs: []}"))[0]
    assert [e.message for e in validator.iter_errors(bad)] == \
        ["Additional properties are not allowed ('blokcs' was unexpected)"]


def test_a_name_clash_across_files_notes_the_first_use_with_its_file(tmp_path):
    """An inline block puts its names in the enclosing scope: the clash is in the spec, the
    first use in the library."""
    spec = write(tmp_path, {"net.yaml": NET.replace("{type: unit, name: b, c: 8}",
                                                    "{type: relu, name: conv}")
                                           .replace("{type: unit, name: a, c: 4}",
                                                    "{type: unit, c: 4, inline: true}"),
                            "lib/unit.yaml": UNIT.replace("{type: conv,", "{type: conv, name: conv,")})
    d = one_error(spec)
    assert (d.file, d.line) == (str(spec), 7)
    assert d.message == "name 'conv' is already used in this scope"
    assert f"first used at {tmp_path / 'lib' / 'unit.yaml'}:5:9" in d.notes
