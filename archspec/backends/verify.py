"""Check the static analysis against PyTorch running the compiled model (forward hooks on every
layer module, merges included): shapes, parameters, trainable parameters and buffers."""
from __future__ import annotations

import torch

from ..analysis import Analysis
from .pytorch.compiler import (check_fits, compile_network, example_input, layer_counts,
                               layer_modules, usable_device)
from .weights import load_weights


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
    x = example_input(analysis, batch_size, device=device)
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    seen["<total>"] = {
        "params": sum(p.numel() for p in model.parameters()),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "buffers": sum(b.numel() for b in model.buffers()),
    }
    return seen


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
