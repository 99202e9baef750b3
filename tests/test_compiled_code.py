"""The compiled model's generated code: one class per distinct block, straight-line methods
whose size does not grow with the network, blocks that are ordinary modules (hooks, calling one
alone), and verify on the meta device running a repeated block once."""
from __future__ import annotations

import copy
import os
import platform
import subprocess
import sys
import time
import weakref
from pathlib import Path

import pytest
import torch
from torch import nn

import archspec
from archspec.backends.export.python_source import python_source
from archspec.backends import verify
from archspec.backends.pytorch import codegen
from archspec.backends.pytorch.compiler import CompiledBlock, compile_network
from archspec.backends.verify import mismatches, runtime_report

ROOT = Path(__file__).resolve().parent.parent
RESNET = """name: tiny
input: [3, 16, 16]
layers:
  - {type: conv, out_channels: 8, kernel_size: 3, padding: 1}
  - type: repeat
    name: stage
    times: 3
    layers:
      - type: residual
        layers:
          - {type: conv, out_channels: 8, kernel_size: 3, padding: 1}
          - batch_norm
          - relu
  - global_avg_pool
  - {type: dense, out_features: 5}
"""


def relu_chain(outer: int, inner: int) -> str:
    return (f"name: chain\ninput: [1, 8]\nlayers:\n  - {{type: repeat, times: {outer}, layers: "
            f"[{{type: repeat, times: {inner}, layers: [relu]}}]}}\n")


def test_equal_blocks_share_one_class_and_keep_their_hierarchical_names():
    model = archspec.compile(archspec.loads(RESNET))
    items = [model.stage.get_submodule(str(i)) for i in range(3)]
    assert len({type(item) for item in items}) == 1
    assert all(isinstance(item, CompiledBlock) for item in items)
    assert "stage.2.conv1.weight" in model.state_dict()
    # the root, the repeat, and one residual class: three classes, whatever the repeat count
    assert model.code.count("\nclass ") + model.code.startswith("class ") == 3


def test_the_largest_method_is_as_long_as_the_largest_block_not_the_network():
    """99,990 layers as 9,999 blocks of ten: the repeat's method calls 9,999 items, the item's
    calls ten layers; one flat forward would hold 99,990 statements (CPython compiles that in
    tens of seconds)."""
    net = archspec.loads(relu_chain(2000, 10))
    program = codegen.program({n: node.inputs for n, node in net.nodes.items()}, net.outputs,
                              "input", set())
    longest = max(len(source.splitlines()) for source in program.sources.values())
    assert len(net.nodes) == 20000
    # the repeat of 2,000: a def line, the unpacking line, two lines per item, a return
    assert longest == 1 + 1 + 2 * 2000 + 1
    assert len(set(program.sources.values())) <= 6  # root, outer, item, inner repeat, its item


def test_compile_time_grows_linearly_with_the_layers():
    def cpu_seconds(outer: int) -> float:
        net = archspec.loads(relu_chain(outer, 10))
        analysis = archspec.analyze(net)
        best = float("inf")
        for _ in range(2):
            start = time.process_time()
            archspec.compile(analysis.network, device="meta")
            best = min(best, time.process_time() - start)
        return best

    small, large = cpu_seconds(200), cpu_seconds(2000)
    assert large < 20 * small  # ten times the layers; quadratic would be a hundred


def test_a_block_is_an_ordinary_module_its_hooks_run_and_it_runs_alone():
    torch.manual_seed(0)
    model = archspec.compile(archspec.loads(RESNET)).eval()
    seen = []
    model.stage.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x)
        stem = model.conv1(x)
        alone = model.gap1(model.stage(stem))
    assert seen == [torch.Size([2, 8, 16, 16])] * 2
    assert torch.equal(model.dense1(alone), out)


def test_the_generated_forward_frees_each_tensor_after_its_last_use():
    """The stem's output is read only by the first residual block, which keeps it for its add:
    alive while that block runs, gone once it has returned (nothing else holds it)."""
    model = archspec.compile(archspec.loads(RESNET)).eval()
    stem = []
    model.conv1.register_forward_hook(lambda m, a, out: stem.append(weakref.ref(out)))
    during, after = [], []
    model.stage.get_submodule("0").bn1.register_forward_hook(
        lambda m, a, out: during.append(stem[-1]() is not None))
    model.stage.get_submodule("1").conv1.register_forward_hook(
        lambda m, a, out: after.append(stem[-1]() is not None))
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16))
    assert (during, after) == ([True], [False])


def assert_each_shared_method_is_its_own(nodes, outputs, direct) -> None:
    program = codegen.program(nodes, outputs, "input", direct)
    for path, function in program.functions.items():
        alone = codegen.method_source(function, program.functions, nodes, direct, outputs,
                                      "input")
        assert program.sources[path] == "\n".join(alone), path


@pytest.mark.parametrize("spec", sorted(p.name for p in (ROOT / "specs").glob("*.yaml")))
def test_a_method_shared_by_template_is_the_one_its_block_would_generate(spec):
    """program() writes one method per template (names relative to the block, inputs by
    position) and reuses it: the key must hold everything the text depends on. Every block of
    the zoo, generated on its own, gives the text it was given."""
    net = archspec.load(ROOT / "specs" / spec)
    assert_each_shared_method_is_its_own(
        {n: node.inputs for n, node in net.nodes.items()}, net.outputs,
        {n for n, node in net.nodes.items() if node.kind.direct_tensor})


@pytest.mark.parametrize("nodes, outputs, direct", [
    # the same layers, but b's first layer is read outside b as well: b exports two values
    ({"a.c1": ["input"], "a.c2": ["a.c1"], "b.c1": ["a.c2"], "b.c2": ["b.c1"],
      "d": ["b.c1", "b.c2"]}, ["d"], set()),
    # the same layers, but a's p is a direct tensor (called as its op) and b's is a module
    ({"a.p": ["input"], "a.r": ["a.p"], "b.p": ["a.r"], "b.r": ["b.p"]}, ["b.r"], {"a.p"}),
    # the same layers, but b's second layer reads b's input, a's reads a's first layer
    ({"a.c1": ["input"], "a.c2": ["a.c1"], "b.c1": ["a.c2"], "b.c2": ["a.c2"]}, ["b.c2"],
     set()),
    # one input against two
    ({"a.c1": ["input"], "m": ["input"], "b.c1": ["a.c1", "m"]}, ["b.c1"], set()),
], ids=["exports", "direct", "wiring", "inputs"])
def test_blocks_that_differ_only_in_wiring_or_exports_get_methods_of_their_own(nodes, outputs,
                                                                             direct):
    assert_each_shared_method_is_its_own(nodes, outputs, direct)


def test_a_block_whose_layers_are_not_contiguous_is_inlined_into_its_parent():
    nodes = {"a.x": ["input"], "b": ["a.x"], "a.y": ["b"]}
    program = codegen.program(nodes, ["a.y"], "input", set())
    assert set(program.functions) == {""}
    assert program.sources[""].splitlines() == [
        "def forward(self, x):",
        "    a_x = self.a.x(x); x = None",
        "    b = self.b(a_x); a_x = None",
        "    a_y = self.a.y(b); b = None",
        "    return a_y"]


def test_values_crossing_blocks_become_inputs_and_outputs_in_definition_order():
    nodes = {"p.a": ["input"], "p.b": ["p.a"], "q.c": ["p.a", "input"], "d": ["q.c", "p.b"]}
    program = codegen.program(nodes, ["d", "p.a"], "input", set())
    p, q = program.functions["p"], program.functions["q"]
    assert (p.inputs, p.outputs) == (["input"], ["p.a", "p.b"])
    assert (q.inputs, q.outputs) == (["input", "p.a"], ["q.c"])
    root = program.sources[""].splitlines()
    assert root[1:3] == ["    inputs = [x]", "    p_a, p_b = self.p(inputs)"]
    assert root[-1] == "    return (d, p_a)"


def test_verify_on_meta_runs_a_repeated_block_once_and_reports_every_layer(monkeypatch):
    net = archspec.loads(RESNET)
    analysis = archspec.analyze(net)
    on_cpu = runtime_report(analysis, device="cpu")
    calls = []

    def counted(*args, **kwargs):
        model = compile_network(*args, **kwargs)
        for name, module in model.named_modules():
            if name.endswith("conv1"):
                module.register_forward_hook(lambda m, a, out, name=name: calls.append(name))
        return model

    monkeypatch.setattr(verify, "compile_network", counted)
    on_meta = runtime_report(analysis, device="meta")
    assert calls == ["conv1", "stage.0.conv1"]  # stage.1 and stage.2 are stage.0's twins
    assert on_meta == on_cpu  # every layer's shape and counts, the twins' included
    assert mismatches(analysis, device="meta") == []


def test_verify_on_meta_runs_blocks_that_differ_in_config_each_time():
    """Items whose config reads the repeat index are different functions: each one runs."""
    text = """name: widening
input: [4, 8, 8]
layers:
  - type: repeat
    times: 3
    layers:
      - {type: conv, out_channels: "4 * ($i + 1)", kernel_size: 3, padding: 1}
      - relu
"""
    analysis = archspec.analyze(archspec.loads(text))
    report = runtime_report(analysis, device="meta")
    shapes = [report[name]["output_shape"] for name in analysis.network.nodes
              if name.endswith("conv1")]
    assert shapes == [(4, 8, 8), (8, 8, 8), (12, 8, 8)]  # out_channels 4 (i+1) at 8x8, padding 1


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_verify_of_ten_thousand_layers_runs_each_layer_on_cpu_and_each_distinct_block_on_meta(
        device):
    analysis = archspec.analyze(archspec.loads(relu_chain(1000, 10)))
    report = runtime_report(analysis, device=device)
    assert all(report[name]["output_shape"] == (1, 8) for name in analysis.network.nodes)
    assert len(analysis.network.nodes) == 10000


def test_a_whole_model_pickles_and_loads_in_a_new_process(tmp_path):
    """torch.save(model) as users do with any nn.Module: the classes travel as their source,
    so a fresh process (archspec installed, the spec not needed) rebuilds them."""
    torch.manual_seed(0)
    model = archspec.compile(archspec.loads(RESNET)).eval()
    x = torch.randn(2, 3, 16, 16)
    torch.save({"model": model, "x": x, "y": model(x)}, tmp_path / "whole.pt")
    script = ("import torch\n"
              f"saved = torch.load({str(tmp_path / 'whole.pt')!r}, weights_only=False)\n"
              "model = saved['model']\n"
              "assert torch.equal(model(saved['x']), saved['y'])\n"
              "assert type(model.stage).__name__ == 'Repeat', type(model.stage)\n"
              "print(type(model).__name__, len(model.state_dict()))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Tiny", str(len(model.state_dict()))]
    assert copy.deepcopy(model)(x).equal(model(x))


@pytest.mark.parametrize("network, title", [("compiled_block", "residual_unit"),
                                            ("net", "compiled_block"), ("none", "none")])
def test_class_names_never_shadow_the_generated_text_or_a_keyword(network, title):
    """A network named compiled_block once became the base class of its own blocks (and the
    conv of its residual got a list); one named none made `class None(...)`, a SyntaxError."""
    text = (f"name: {network}\ninput: [3, 8, 8]\nblocks:\n  {title}:\n    layers:\n"
            "      - {type: residual, layers: [{type: conv, out_channels: 4, kernel_size: 3, "
            "padding: 1}]}\nlayers:\n  - {type: conv, out_channels: 4, kernel_size: 1}\n"
            f"  - {title}\n  - {title}\n")
    analysis = archspec.analyze(archspec.loads(text))
    assert mismatches(analysis) == []
    model = archspec.compile(analysis.network)
    names = [type(m).__name__ for m in model.modules() if isinstance(m, CompiledBlock)]
    assert "CompiledBlock" not in names and "None" not in names and type(model).__name__ != "None"
    exported = {}
    exec(python_source(analysis), exported)  # the standalone export names its class alike
    built = next(v for v in exported.values() if isinstance(v, type) and issubclass(v, nn.Module)
                 and v is not nn.Module)()
    assert built.load_state_dict(model.state_dict()) is not None


# one eval forward of a compiled ResNet-18 (or one loaded from a checkpoint) at batch 2, alone
# in a fresh process: minor page faults per forward (median of 6, after 2 to warm up)
REFAULT_PROBE = """
import resource, statistics, sys
import torch
import archspec
torch.set_num_threads(1)
how, path = sys.argv[1:]
model = (archspec.compile(path) if how == "compile" else archspec.load_checkpoint(path)).eval()
x = torch.randn(2, 3, 224, 224)
faults = []
with torch.no_grad():
    for i in range(8):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(x)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(statistics.median(faults[2:]))
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
@pytest.mark.parametrize("how", ["compile", "load_checkpoint"])
def test_a_compiled_resnet18_forward_does_not_fault_its_memory_in_again_each_time(how, tmp_path):
    """Without settle_allocator, glibc's trim threshold sat 0.4 MB under what each forward
    frees at the top of the heap: about 4,600 minor faults per forward (18 MB, 5% of the time)
    in every such process measured, 20 of 20."""
    path = ROOT / "specs/resnet18.yaml"
    if how == "load_checkpoint":
        archspec.save_checkpoint(archspec.compile(path), tmp_path / "resnet18.pt")
        path = tmp_path / "resnet18.pt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run([sys.executable, "-c", REFAULT_PROBE, how, str(path)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) < 500, result.stdout
