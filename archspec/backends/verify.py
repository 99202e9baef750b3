"""Check the static analysis against PyTorch running the compiled model (forward hooks on every
layer module, merges included): shapes, parameters, trainable parameters and buffers."""
from __future__ import annotations

import torch

from ..analysis import Analysis
from ..collector import collector_paused
from .pytorch import codegen
from .pytorch.compiler import (
    CompiledBlock,
    check_fits,
    compile_network,
    example_input,
    layer_counts,
    layer_modules,
    usable_device,
)
from .weights import load_weights


@collector_paused()  # 100,000 modules alive: each full collection would walk them all
def runtime_report(analysis: Analysis, *, device="cpu", batch_size: int = 2,
                   max_memory: int | None = None, weights=None, skip=()) -> dict[str, dict]:
    """Per layer name: {'output_shape', 'params', 'trainable_params', 'buffers'} as PyTorch sees
    them, the model running with `weights` (a state_dict or its file) if given. Refuses
    (SpecError, before allocating) a run whose weights and activations would not fit in
    max_memory (default: the memory available)."""
    check_fits(analysis, usable_device(device), max_memory, batch_size=batch_size)
    model = compile_network(analysis, device=device, max_memory=max_memory)
    if weights is not None:
        load_weights(model, analysis.network, weights, skip)
    model.eval()
    modules = layer_modules(model)
    seen: dict[str, dict] = layer_counts(model, analysis.network.nodes)

    def hook_for(name):
        def hook(module, args, output):
            seen[name]["output_shape"] = tuple(output.shape[1:])
            seen[name]["batch"] = output.shape[0]
        return hook

    handles = [modules[name].register_forward_hook(hook_for(name))
               for name in analysis.network.nodes]
    if torch.device(device).type == "meta":
        run_repeats_once(model, analysis, seen)
    x = example_input(analysis, batch_size, device=device)
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    # layer_counts gave every tensor of the model to a layer (or raised): their sums are its totals
    seen["<total>"] = {key: sum(seen[name][key] for name in analysis.network.nodes)
                       for key in ("params", "trainable_params", "buffers")}
    return seen


def block_keys(model, analysis: Analysis) -> dict[str, tuple[object, tuple, list[str]]]:
    """Per compiled block: the block, what its modules are made from (per layer, relative to
    the block: its kind, its config's every field, the shapes and in-place flag it was lowered with)
    with its class (its code), and its layers. Two blocks of one key are the same function."""
    blocks = {path: module for path, module in model.named_modules()
              if isinstance(module, CompiledBlock)}
    parts: dict[str, list] = {path: [] for path in blocks}
    layers: dict[str, list[str]] = {path: [] for path in blocks}
    chains = codegen.Blocks()
    inplace = analysis.inplace_layers
    configs: dict[int, tuple] = {}  # repeat items share config objects: one dump per object
    for name, node in analysis.network.nodes.items():
        info = analysis.layers[name]
        config = configs.get(id(node.cfg))
        if config is None:
            config = configs[id(node.cfg)] = (type(node.cfg), node.cfg.model_dump_json())
        for path in chains.of(name):
            if path in blocks:
                parts[path].append((name[len(path) + 1:], id(node.kind), config,
                                    tuple(info.input_shapes), info.output_shape, name in inplace))
                layers[path].append(name)
    return {path: (block, (type(block), tuple(parts[path])), layers[path])
            for path, block in blocks.items()}


def run_repeats_once(model, analysis: Analysis, seen: dict[str, dict]) -> None:
    """On the meta device (no values, 0.3-1 ms per elementwise call in PyTorch's meta kernels), a
    block that is the same function as one already run, on inputs of the same shapes, is not run
    again: its layers get the shapes its twin's layers produced, and it returns meta tensors of
    its twin's output shapes. Twins are the same class (code) built from equal configs and
    shapes: the same function, never a guess."""
    done: dict[tuple, tuple] = {}
    for path, (block, key, layers) in block_keys(model, analysis).items():
        vars(block)[codegen.BLOCK_METHOD] = twin_runner(
            getattr(block, codegen.BLOCK_METHOD), key, layers, len(path) + 1, seen, done)


def twin_runner(method, key, layers, cut, seen, done):
    def run(inputs):
        call = (key, tuple((tuple(t.shape), t.dtype) for t in inputs))
        twin = done.get(call)
        if twin is None:
            out = method(inputs)
            outs = out if isinstance(out, tuple) else () if out is None else (out,)
            done[call] = ({name[cut:]: {k: seen[name][k] for k in ("output_shape", "batch")}
                           for name in layers if "output_shape" in seen[name]},
                          [(tuple(t.shape), t.dtype) for t in outs], type(out))
            return out
        inputs.clear()
        runs, out_shapes, kind = twin
        prefix = layers[0][:cut]
        for relative, record in runs.items():
            seen[prefix + relative].update(record)
        outs = tuple(torch.empty(shape, dtype=dtype, device="meta") for shape, dtype in out_shapes)
        return outs if kind is tuple else None if not outs else outs[0]
    return run


def mismatches(analysis: Analysis, **options) -> list[str]:
    """Every disagreement between the analysis and the runtime, as readable lines (empty = equal)."""
    seen = runtime_report(analysis, **options)
    problems = []
    for name, info in analysis.layers.items():
        got = seen[name]
        expect = {"output_shape": tuple(info.output_shape), "params": info.params,
                  "trainable_params": info.trainable_params, "buffers": info.buffers}
        if "output_shape" not in got:
            problems.append(f"{name}: module never ran")
            continue
        for key, value in expect.items():
            if got[key] != value:
                problems.append(f"{name}: {key} static {value} != runtime {got[key]}")
    total = seen["<total>"]
    for key, value in (("params", analysis.params), ("trainable_params", analysis.trainable_params),
                       ("buffers", analysis.buffers)):
        if total[key] != value:
            problems.append(f"total {key}: static {value} != runtime {total[key]}")
    return problems
