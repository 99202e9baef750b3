"""Measure memory on the compiled model, for comparison with archspec.memory's static figures:
what autograd saves (torch.autograd.graph.saved_tensors_hooks, storages counted once, parameters
and buffers excluded) and the layer outputs alive at once during an eval forward (weak
references to every output, checked as each layer finishes)."""
from __future__ import annotations

import weakref

import torch

from ..analysis import Analysis
from .pytorch.compiler import compile_network, example_input, layer_modules

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}


def storage_key(tensor: torch.Tensor) -> int:
    """The storage's identity (its C++ object), which also tells storages apart on the meta
    device, where every data pointer is 0."""
    return tensor.untyped_storage()._cdata


def compiled(analysis: Analysis, dtype: str, device="cpu"):
    """The compiled model with uninitialised weights (their values do not change what is
    saved or alive, and initialising VGG's 138 M weights takes seconds)."""
    model = compile_network(analysis, device="meta").to_empty(device=device).to(DTYPES[dtype])
    x = example_input(analysis, analysis.batch_size, device=device, dtype=DTYPES[dtype])
    return model, x


def measure_saved_bytes(analysis: Analysis, dtype: str = "float32",
                        device="cpu") -> dict[str, int]:
    """Per layer: bytes of storages autograd saves during one train-mode forward that this
    layer is the first to save."""
    model, x = compiled(analysis, dtype, device)
    model.train()
    state = {storage_key(t) for t in [*model.parameters(), *model.buffers()]}
    modules = layer_modules(model)
    per_layer = {name: 0 for name in analysis.layers}
    seen: set[int] = set()
    current: list[str] = []

    def pack(tensor):
        key = storage_key(tensor)
        if key not in state and key not in seen and tensor.untyped_storage().nbytes():
            seen.add(key)
            per_layer[current[-1]] += tensor.untyped_storage().nbytes()
        return tensor

    handles = [modules[name].register_forward_pre_hook(
        lambda module, args, name=name: current.append(name)) for name in analysis.layers]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = model(x)
    for handle in handles:
        handle.remove()
    del out
    return per_layer


def measure_inference_peak(analysis: Analysis, dtype: str = "float32", device="cpu") -> int:
    """Most bytes of distinct storages among the input and the layer outputs alive at once, as
    each layer finishes, during an eval forward under no_grad (the caller holds the input)."""
    model, x = compiled(analysis, dtype, device)
    model.eval()
    modules = layer_modules(model)
    outputs: list[weakref.ref] = []
    peak = [0]

    def after(module, args, output):
        outputs.append(weakref.ref(output))
        alive = [t for t in (ref() for ref in outputs) if t is not None] + [x]
        sizes = {storage_key(t): t.untyped_storage().nbytes() for t in alive}
        peak[0] = max(peak[0], sum(sizes.values()))

    handles = [modules[name].register_forward_hook(after) for name in analysis.layers]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return peak[0]


def measure_training_state(analysis: Analysis, optimizer: str, dtype: str = "float32",
                           device="cpu") -> tuple[int, int]:
    """(gradient bytes, optimizer state bytes) after one real training step with torch.optim:
    SGD, SGD with momentum 0.9, or Adam."""
    model, x = compiled(analysis, dtype, device)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
            "momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
            "adam": lambda ps: torch.optim.Adam(ps)}[optimizer]
    opt = make(trainable) if trainable else None
    out = model(x)
    outs = out if isinstance(out, tuple) else (out,)
    loss = sum(o.float().sum() for o in outs)
    if loss.requires_grad:
        loss.backward()
    grads = sum(p.grad.untyped_storage().nbytes() for p in trainable if p.grad is not None)
    if opt is None:
        return grads, 0
    opt.step()
    state = sum(t.untyped_storage().nbytes() for s in opt.state.values() for t in s.values()
                if isinstance(t, torch.Tensor))
    return grads, state
