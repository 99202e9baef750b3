"""Exports run without archspec and compute what the compiled module computes: standalone
Python source (exec'd here, its state_dict loaded with strict=True), torch.export programs
reloaded with torch.export.load, ONNX files checked by onnx.checker and run by onnxruntime.

Tolerances: the Python source runs the same torch operations in the same order, so float32
outputs agree to 1e-5 (relative and absolute); torch.export runs the same aten kernels (1e-5);
onnxruntime has its own kernels, so ONNX outputs agree to 1e-4 relative, 1e-5 absolute."""
from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import archspec
from archspec.backends.export.exported_program import exported_program, save_program
from archspec.backends.export.python_source import python_source
from archspec.backends.pytorch.compiler import class_name, example_input
from archspec.cli import main
from archspec.errors import SpecError
from archspec.layers import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
ZOO = sorted((ROOT / "specs").glob("*.yaml"))
HUGE = {"fc_400x600"}  # 2.4 G weights (9 GiB): exported and checked on the meta device only
RUNNABLE = [p for p in ZOO if p.stem not in HUGE]
# Tracing a big network for torch.export and converting it to ONNX takes 10-20 s of CPU each
# (graph size and weight bytes); CI runs them, a developer's run opts in with ARCHSPEC_SLOW_TESTS=1.
HEAVY = {"alexnet", "vgg16", "googlenet", "googlenet_paper", "inception_v3", "mobilenet_v2",
         "resnet50", "squeezenet1_0", "squeezenet1_1", "vgg", "densenet", "efficientnet_b0",
         "convnext_tiny", "vit_b_16"}
RUN_HEAVY = bool(os.environ.get("CI") or os.environ.get("ARCHSPEC_SLOW_TESTS"))


def traced_params():
    heavy = pytest.mark.skipif(not RUN_HEAVY, reason="10-20 s of CPU each: set "
                               "ARCHSPEC_SLOW_TESTS=1 (CI runs them)")
    return [pytest.param(str(p), id=p.stem, marks=[heavy] if p.stem in HEAVY else [])
            for p in RUNNABLE] + [pytest.param(name, id=name.replace(" ", "_"))
                                  for name in INLINE_SPECS]

# Every registered layer kind, with the odd cases of each lowering: asymmetric 'same' padding
# (explicit F.pad; -inf for max pooling; average pooling that excludes the padding), reflect
# padding, literal and frozen weights, a projection shortcut and an identity one, 1-d batch norm,
# several outputs, and a top-level name that is not a Python identifier.
ALL_KINDS = """
name: all kinds
input: [3, 12, 12]
layers:
  - {type: conv, name: 2nd, out_channels: 4, kernel_size: 4, padding: same, padding_mode: reflect}
  - {type: conv, name: fixed, out_channels: 4, kernel_size: 1, trainable: false,
     weight: [[[[1.0]], [[0.5]], [[0.25]], [[-1.0]]], [[[0.0]], [[1.0]], [[0.0]], [[0.0]]],
              [[[2.0]], [[0.0]], [[0.0]], [[1.5]]], [[[0.0]], [[0.0]], [[-2.0]], [[1.0]]]],
     bias: [0.1, 0.2, 0.3, 0.4]}
  - {type: batch_norm, momentum: 0.3, eps: 0.001}
  - {type: max_pool, kernel_size: 2, stride: 1, padding: same}
  - {type: avg_pool, kernel_size: 2, stride: 1, padding: same, count_include_pad: false}
  - type: residual
    name: block
    shortcut: projection
    activation: relu
    layers:
      - {type: conv, out_channels: 8, kernel_size: 3, stride: 2, padding: 1}
      - {type: batch_norm}
  - type: residual
    name: same_shape
    shortcut: projection
    layers: [{type: depthwise_conv, kernel_size: 3, padding: 1}]
  - {type: local_response_norm, size: 3}
  - {type: leaky_relu, negative_slope: 0.2}
  - {type: conv_transpose, out_channels: 6, kernel_size: 2, stride: 2}
  - {type: upsample, size: [5, 6], mode: bilinear, align_corners: false}
  - {type: upsample, scale_factor: [2, 1]}
  - {type: elu, alpha: 0.5}
  - {type: layer_norm, channels_first: true, eps: 0.000001}
  - type: sequential
    name: scaled
    layers: [{type: layer_scale, name: gamma, init: 0.5}, {type: parameter, init: normal}]
  - {type: gelu, approximate: tanh}
  - hardswish
  - {type: global_avg_pool, name: gap, from: same_shape}
  - {type: hardsigmoid, name: gate}
  - {type: multiply, from: [gap, gate]}
  - {type: adaptive_avg_pool, name: aap, from: up2, output_size: [2, 3]}
  - {type: adaptive_max_pool, name: amp, from: up2, output_size: [2, 3]}
  - {type: add, from: [aap, amp]}
  - {type: concat, from: [add1, amp], dim: 1}
  - {type: global_max_pool}
  - relu6
  - silu
  - sigmoid
  - tanh
  - identity
  - {type: concat, name: joined, from: [tanh1, mul1]}
  - flatten
  - {type: parameter, mode: prepend, name: token}
  - {type: layer_norm, bias: false}
  - {type: dense, out_features: 5, activation: relu}
  - {type: batch_norm, name: bn_1d}
  - {type: dropout, p: 0.2}
  - {type: stochastic_depth, p: 0.25}
  - {type: dense, name: logits, out_features: 3}
  - {type: softmax, name: probs, dim: 1, from: logits}
  - {type: log_softmax, name: logprobs, dim: -1, from: logits}
outputs: [probs, logprobs]
"""


# the kinds that take token sequences [L, E] (features last)
TOKEN_KINDS = """
name: token kinds
input: {shape: [6, 16], layout: tokens}
layers:
  - {type: multi_head_attention, name: attn, num_heads: 4, dropout: 0.1}
  - {type: multi_head_attention, name: causal, num_heads: 2, causal: true, bias: false}
  - {type: multi_head_attention, name: cross, num_heads: 2, from: [causal, input]}
  - {type: transformer_encoder_layer, nhead: 4, dim_feedforward: 32}
  - {type: transformer_encoder_layer, nhead: 2, dim_feedforward: 8, activation: gelu,
     norm_first: true, causal: true, bias: false, layer_norm_eps: 1.0e-6}
"""
# recurrent layers: every step or the last state, one or two directions, stacked with dropout
RECURRENT_KINDS = """
name: recurrent kinds
input: {shape: [6, 8], layout: tokens}
layers:
  - {type: lstm, name: lstm, hidden_size: 6, num_layers: 2, bidirectional: true, dropout: 0.25}
  - {type: gru, name: gru, hidden_size: 5, bias: false}
  - {type: lstm, name: lstm_last, hidden_size: 4, steps: last}
  - {type: gru, name: gru_last, hidden_size: 3, num_layers: 2, bidirectional: true,
     steps: last, from: lstm}
outputs: [lstm_last, gru_last]
"""
# token ids through an embedding, a class token and a position embedding, dense per position
TEXT_KINDS = """
name: text kinds
input: {shape: [9], layout: ids}
layers:
  - {type: embedding, num_embeddings: 40, embedding_dim: 8, padding_idx: 0}
  - {type: parameter, mode: prepend, name: class_token}
  - {type: parameter, name: pos_embedding, init: normal}
  - {type: layer_norm}
  - {type: dense, out_features: 6}
  - {type: layer_scale, dim: -1, init: 0.5}
"""
# the shape kinds: channels moved last and back (ConvNeXt), patches to tokens (ViT), parts
SHAPE_KINDS = """
name: shape kinds
input: [4, 6, 6]
layers:
  - {type: permute, dims: [0, 2, 3, 1]}
  - {type: dense, out_features: 8}
  - {type: permute, name: back, dims: [0, 3, 1, 2]}
  - {type: flatten, start_dim: 2}
  - {type: transpose, dims: [1, 2]}
  - {type: slice, dim: 1, start: 1, stop: -1, step: 2}
  - {type: index, dim: 1, index: 0}
  - {type: reshape, shape: [2, -1]}
  - {type: unsqueeze, dim: 2}
  - {type: squeeze, dim: 2}
  - {type: reshape, shape: [2, 4, 1], layout: channels_first}
  - squeeze
"""
# norms over positions, every pad mode, pixel and channel shuffles, the newer activations
MAP_KINDS = """
name: map kinds
input: [4, 8, 8]
layers:
  - {type: group_norm, num_groups: 2}
  - {type: instance_norm, affine: true, track_running_stats: true}
  - {type: pad, padding: [1, 0, 0, 1], mode: reflect}
  - {type: pad, padding: 1, mode: replicate}
  - {type: pad, padding: [1, 1], mode: circular}
  - {type: pad, padding: [0, 1, 1, 0], value: 0.5}
  - {type: pixel_unshuffle, downscale_factor: 2}
  - {type: channel_shuffle, groups: 4}
  - {type: conv, out_channels: 8, kernel_size: 1, activation: prelu}
  - {type: pixel_shuffle, upscale_factor: 2}
  - {type: instance_norm}
  - {type: prelu, num_parameters: 2, init: 0.1}
  - mish
  - swish
  - {type: softplus, beta: 2, threshold: 5}
  - {type: stochastic_depth, p: 0.5, mode: batch}
"""
INLINE_SPECS = {"all kinds": ALL_KINDS, "token kinds": TOKEN_KINDS,
                "recurrent kinds": RECURRENT_KINDS, "text kinds": TEXT_KINDS,
                "shape kinds": SHAPE_KINDS, "map kinds": MAP_KINDS}


def all_kinds(name: str = "all kinds"):
    return archspec.loads(INLINE_SPECS[name], filename=f"<{name}>")


@functools.cache
def compiled(spec: str):
    """One compiled model per spec for every test here (the big ones take seconds to build)."""
    torch.manual_seed(0)
    network = all_kinds(spec) if spec in INLINE_SPECS else archspec.load(spec)
    return archspec.analyze(network), archspec.compile(network)


# What a trace costs grows with the graph (nodes) and the weights, what running it costs with
# the input: the heavy specs are traced smaller, the same kinds and wiring at fewer copies
# (DenseNet with two dense layers per block, ViT-B/16 with two encoder blocks and 2x2 patches:
# its input is sized by a param), at the smallest square input their pooling takes.
SMALLER_PARAMS = {"densenet": {"dense_layers": {121: [2, 2, 2, 2]}},
                  "vit_b_16": {"depth": 2, "size": 32}}
SMALLER_SIZES = (32, 64, 96, 128, 160)


@functools.cache
def compiled_small(spec: str):
    """compiled(spec), or for a heavy zoo spec the same network at a smaller size."""
    path = Path(spec)
    if path.stem not in HEAVY:
        return compiled(spec)
    full = archspec.analyze(archspec.load(spec))
    if len(full.input_shape) != 3:
        return compiled(spec)
    for size in SMALLER_SIZES:
        try:
            network = archspec.load(spec, params=SMALLER_PARAMS.get(path.stem),
                                    input_shape=[full.input_shape[0], size, size])
            analysis = archspec.analyze(network)
        except SpecError:
            continue
        if analysis.output_shapes == full.output_shapes:
            torch.manual_seed(0)
            return analysis, archspec.compile(network)
    return compiled(spec)


def as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def assert_outputs_equal(got, want, rtol=1e-5, atol=1e-5):
    got, want = as_tuple(got), as_tuple(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.as_tensor(g), w, rtol=rtol, atol=atol)


def generated_class(source: str, analysis):
    namespace: dict = {}
    exec(compile(source, "<generated>", "exec"), namespace)
    return namespace[class_name(analysis.network.name)]


def test_the_all_kinds_spec_uses_every_registered_layer_kind():
    used = {node.kind.name for name in INLINE_SPECS for node in all_kinds(name).nodes.values()}
    assert used == set(REGISTRY), set(REGISTRY) - used


@pytest.mark.parametrize("spec", [str(p) for p in RUNNABLE] + list(INLINE_SPECS),
                         ids=[p.stem for p in RUNNABLE] + [n.replace(" ", "_")
                                                           for n in INLINE_SPECS])
def test_python_source_loads_the_compiled_state_dict_and_computes_the_same(spec):
    analysis, model = compiled(spec)
    source = python_source(analysis)
    with torch.device("meta"):  # no second random initialisation: the weights come from model
        generated = generated_class(source, analysis)()
    generated.load_state_dict(model.state_dict(), strict=True, assign=True)
    assert {k: p.requires_grad for k, p in generated.named_parameters()} == \
        {k: p.requires_grad for k, p in model.named_parameters()}
    x = example_input(analysis, 2 if spec in INLINE_SPECS else 1)
    model.eval(), generated.eval()
    with torch.no_grad():
        assert_outputs_equal(generated(x), model(x))
    if spec in INLINE_SPECS:  # training mode: dropout masks, batch statistics, running averages
        model.train(), generated.train()
        torch.manual_seed(1)
        want = model(x)
        torch.manual_seed(1)
        assert_outputs_equal(generated(x), want)
        for (name, a), (_, b) in zip(sorted(generated.state_dict().items()),
                                     sorted(model.state_dict().items())):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


LONG = "a_layer_name_long_enough_that_a_sum_of_two_of_them_does_not_fit_on_one_line"


def test_python_source_breaks_long_sums_inside_brackets():
    """x.add_(y) and a * b with long names wrap as x.add_(<newline> y) and (<newline> a * b),
    not at a bare operator, which would not parse (ViT's residual adds in its scopes)."""
    analysis = archspec.analyze(archspec.loads(f"""
name: long names
input: [4]
layers:
  - {{type: dense, name: {LONG}_1, out_features: 4}}
  - {{type: dense, name: {LONG}_2, out_features: 4, from: input}}
  - {{type: add, name: {LONG}_sum, from: [{LONG}_1, {LONG}_2]}}
  - {{type: multiply, name: {LONG}_product, from: [{LONG}_sum, {LONG}_2]}}
"""))
    model = archspec.compile(analysis.network).eval()
    source = python_source(analysis)
    generated = generated_class(source, analysis)()
    generated.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 4)
    with torch.no_grad():
        assert_outputs_equal(generated.eval()(x), model(x))


def test_python_source_has_the_spec_literal_weights_without_a_state_dict():
    analysis, model = compiled("all kinds")
    generated = generated_class(python_source(analysis), analysis)()
    assert generated.fixed.weight.flatten().tolist() == [1.0, 0.5, 0.25, -1.0, 0, 1, 0, 0,
                                                         2, 0, 0, 1.5, 0, 0, -2, 1]
    assert generated.fixed.bias.tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert not generated.fixed.weight.requires_grad and generated.logits.weight.requires_grad


def test_python_source_of_the_huge_spec_has_the_compiled_keys_and_shapes():
    analysis = archspec.analyze(ROOT / "specs" / "fc_400x600.yaml")
    with torch.device("meta"):
        generated = generated_class(python_source(analysis), analysis)()
    want = archspec.compile(analysis.network, device="meta").state_dict()
    assert {k: tuple(v.shape) for k, v in generated.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in want.items()}
    assert sum(p.numel() for p in generated.parameters()) == 2_405_025_000  # the spec's figure


def zoo_sources(tmp_path: Path) -> list[Path]:
    files = []
    for spec in ZOO:
        path = tmp_path / f"{spec.stem}.py"
        path.write_text(python_source(archspec.analyze(spec), str(spec)), encoding="utf-8")
        files.append(path)
    path = tmp_path / "all_kinds.py"
    path.write_text(python_source(archspec.analyze(all_kinds())), encoding="utf-8")
    return files + [path]


def test_python_source_imports_only_torch_and_passes_ruff(tmp_path):
    files = zoo_sources(tmp_path)
    for path in files:
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module)
        assert imported <= {"torch", "torch.nn.functional", "collections"}, (path, imported)
        names = {node.id for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                 if isinstance(node, ast.Name)}
        assert not any("archspec" in name for name in names), path
    # pycodestyle errors and warnings, pyflakes, import order, lines of at most 100 characters
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--no-cache",
                             "--select", "E,W,F,I", "--line-length", "100", *map(str, files)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("spec", traced_params())
def test_torch_export_and_onnx_files_compute_the_compiled_outputs_at_any_batch(spec, tmp_path):
    import onnx
    import onnxruntime

    from archspec.backends.export.onnx_model import onnx_bytes
    analysis, model = compiled_small(spec)
    program = exported_program(analysis, model=model)  # one trace for both files
    save_program(program, tmp_path / "model.pt2")
    reloaded = torch.export.load(tmp_path / "model.pt2").module()
    (tmp_path / "model.onnx").write_bytes(onnx_bytes(program, analysis))
    proto = onnx.load(tmp_path / "model.onnx")
    onnx.checker.check_model(proto, full_check=True)
    session = onnxruntime.InferenceSession(tmp_path / "model.onnx",
                                           providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == analysis.network.outputs
    for batch in (1, 3):  # the trace used a batch of 2
        x = example_input(analysis, batch)
        with torch.no_grad():
            want = model(x)
            assert_outputs_equal(reloaded(x), want)
        assert_outputs_equal(tuple(torch.from_numpy(o) for o in session.run(None, {"input": x.numpy()})),
                             want, rtol=1e-4, atol=1e-5)


# ---- the command --------------------------------------------------------------------------

def run_cli(*args):
    """The command in a fresh process (what a user runs)."""
    return subprocess.run([sys.executable, "-m", "archspec", *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def invoke(*args):
    """The command in this process (torch and the exporters already imported: faster)."""
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("target, suffix", [("python", "py"), ("torch-export", "pt2"),
                                            ("onnx", "onnx")])
def test_export_command_writes_each_target_for_lenet5(target, suffix, tmp_path):
    out = tmp_path / f"lenet5.{suffix}"
    result = invoke("export", str(ROOT / "specs" / "lenet5.yaml"), "--to", target, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {out}") and "lenet5 as " + target in result.output
    x = torch.randn(4, 1, 32, 32)
    if target == "python":
        namespace: dict = {}
        exec(compile(out.read_text(), str(out), "exec"), namespace)
        assert namespace["Lenet5"]()(x).shape == (4, 10)
    elif target == "torch-export":
        assert torch.export.load(out).module()(x).shape == (4, 10)
    else:
        import onnxruntime
        session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
        assert session.run(None, {"input": x.numpy()})[0].shape == (4, 10)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_export_python_to_standard_output():
    result = run_cli("export", str(ROOT / "specs" / "lenet5.yaml"), "--to", "python", "-o", "-")
    assert result.returncode == 0, result.stderr
    ast.parse(result.stdout)
    assert "class Lenet5(nn.Module):" in result.stdout
    assert "wrote standard output" in result.stderr


def test_export_refuses_a_spec_with_errors_like_check_without_importing_torch(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\ninput: [3]\nlayers:\n  - {type: dense, out_features: 0}\n")
    probe = ("import sys\nfrom archspec.cli import main\n"
             "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n"
             "    print('exit', exc.code, 'torch' in sys.modules)\n")
    export = subprocess.run([sys.executable, "-c", probe, "export", str(spec), "--to", "onnx",
                             "-o", str(tmp_path / "bad.onnx")], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    check = run_cli("check", str(spec))
    assert export.stdout.strip() == "exit 1 False"
    assert f"{spec}:4:33: error: out_features must be a positive integer" in export.stderr
    assert export.stderr == check.stderr
    assert not (tmp_path / "bad.onnx").exists()


def test_onnx_export_refuses_a_model_over_the_protobuf_limit_before_building_it(tmp_path):
    result = invoke("export", str(ROOT / "specs" / "fc_400x600.yaml"), "--to", "onnx",
                    "-o", str(tmp_path / "fc.onnx"))
    assert result.exit_code == 1
    assert "fc_400x600.yaml:1:1: error: the model's 8.96 GiB of parameters and buffers do not " \
           "fit in one ONNX file (at most 2 GiB)" in result.output
    assert "hint: export with --to torch-export or --to python" in result.output
    assert list(tmp_path.iterdir()) == []


def test_onnx_export_names_the_layer_onnx_cannot_express(tmp_path):
    text = ("name: uneven\ninput: [3, 10, 7]\nlayers:\n  - relu\n"
            "  - {type: adaptive_max_pool, name: pool, output_size: [2, 3]}\n")
    with pytest.raises(SpecError) as caught:
        archspec.export(archspec.loads(text, filename="uneven.yaml"), tmp_path / "u.onnx", to="onnx")
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.file, diagnostic.line, diagnostic.column, diagnostic.layer) == \
        ("uneven.yaml", 5, 5, "pool")
    assert diagnostic.message == ("ONNX cannot express this layer as configured (no ONNX operator "
                                  "for aten.adaptive_max_pool2d)")
    assert not (tmp_path / "u.onnx").exists()


def test_python_export_refuses_a_block_member_named_like_a_module_dict_method():
    text = ("name: t\ninput: [3]\nlayers:\n  - type: sequential\n    name: blk\n    layers:\n"
            "      - {type: dense, out_features: 4, name: items}\n")
    archspec.compile(archspec.loads(text))  # a fine name for the compiled module
    with pytest.raises(SpecError) as caught:
        python_source(archspec.analyze(archspec.loads(text, filename="t.yaml")))
    (diagnostic,) = caught.value.diagnostics
    assert (diagnostic.line, diagnostic.column, diagnostic.layer) == (7, 46, "blk.items")
    assert diagnostic.message == ("the name 'items' cannot be exported to Python: it is an "
                                  "attribute of torch's ModuleDict")
