"""PyTorch back end: the IR becomes a torch.fx.GraphModule whose forward is straight-line code
(one statement per layer, generated once), with one submodule per layer under its
hierarchical name (layer1.0.conv1), so state_dict keys and hooks follow the spec."""
from __future__ import annotations

import os
import re
from functools import cache

import torch
import torch.fx as fx
import torch.nn as nn

from ... import shapes
from ...analysis import Analysis
from ...collector import collector_paused
from ...errors import DeviceUnavailable, Diagnostic, SpecError
from ...ir import INPUT
from ...frontend.reserved import MODULE_ATTRIBUTES, reserved_reason
from ...units import human_bytes
from .lowering import lower


def available_memory_bytes() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def usable_device(device) -> torch.device:
    """The device, probed once with an empty tensor: a CPU-only torch refuses 'cuda' here."""
    try:
        dev = torch.device(device)
        torch.empty(0, device=dev)
    except Exception as exc:  # torch raises RuntimeError, AssertionError or NotImplementedError
        raise DeviceUnavailable(f"device '{device}' is not available: "
                                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                                ) from exc
    return dev


def activation_bytes(analysis: Analysis, batch_size: int, dtype_bytes: int = 4) -> int:
    """Bytes of the input and of every layer's output for a batch (what a forward pass may hold)."""
    per_sample = shapes.product(analysis.input_shape) + sum(
        shapes.product(info.output_shape) for info in analysis.layers.values())
    return per_sample * batch_size * dtype_bytes


def check_fits(analysis: Analysis, device, max_memory: int | None, *,
               batch_size: int | None = None) -> None:
    """The memory guard: refuse (SpecError, nothing allocated) when the parameters and buffers,
    plus for a forward pass (batch_size given) the input and every layer output, would not fit in
    max_memory (default: the memory available). The analysis knows every byte beforehand."""
    if torch.device(device).type == "meta":
        return
    weights = analysis.param_bytes
    activations = 0 if batch_size is None else activation_bytes(analysis, batch_size)
    limit = max_memory if max_memory is not None else available_memory_bytes()
    if weights + activations <= limit:
        return
    allowed = (f"the {human_bytes(limit)} allowed" if max_memory is not None
               else f"the {human_bytes(limit)} of memory available")
    what = f"{human_bytes(weights)} for its {analysis.params:,} parameters and buffers"
    if batch_size is None:
        message = f"the model needs {what}, more than {allowed}"
        hint = ("build with device='meta' (--device meta) to inspect it without allocating, or "
                "raise the limit (max_memory=..., --max-memory)")
    else:
        message = (f"running the model on a batch of {batch_size:,} needs "
                   f"{human_bytes(weights + activations)} ({what}, {human_bytes(activations)} "
                   f"for the input and every layer's output), more than {allowed}")
        hint = ("verify with --device meta (device='meta') to check shapes and counts without "
                "allocating, use a smaller --batch-size, or raise the limit (--max-memory)")
    raise SpecError(Diagnostic(message, file=analysis.network.source.file, line=1, column=1,
                               hint=hint))


def example_input(analysis: Analysis, batch_size: int, *, device="cpu",
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """A random input batch: floats, or token ids (int64) below every embedding's vocabulary."""
    shape = (batch_size,) + tuple(analysis.input_shape)
    if analysis.input_layout == "ids":
        vocab = min((node.cfg.num_embeddings for node in analysis.network.nodes.values()
                     if node.kind.name == "embedding"), default=2)
        return torch.randint(0, vocab, shape, device=device)
    return torch.randn(shape, device=device, dtype=dtype)


def class_name(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", name) or ["Network"]
    text = "".join(w[:1].upper() + w[1:] for w in words)
    return text if text[0].isalpha() else "Net" + text


@cache
def module_attributes() -> frozenset[str]:
    """Every attribute a compiled model has besides its layers, in the installed torch."""
    empty = fx.GraphModule(nn.Module(), fx.Graph())
    return MODULE_ATTRIBUTES | set(dir(empty)) | set(vars(empty)) | set(vars(nn.Module()))


def check_names(net) -> None:
    """check refuses these names already; this catches attributes that a newer torch added, so a
    model whose forward would call a method instead of a layer is never built."""
    attributes = module_attributes()
    for node in net.nodes.values():
        for part in node.name.split("."):
            reason = reserved_reason(part, attributes)
            if reason is not None:
                raise SpecError(net.source.diagnostic(
                    node.path, f"{reason}: it cannot name a layer or block", layer=node.name,
                    hint=f"choose another name, e.g. {part.strip('_') or 'layer'}1"))


def module_tree(modules: dict[str, nn.Module | nn.Parameter]) -> nn.Module:
    """The layers under their hierarchical names, each container created where its first layer
    comes, so parameters() and state_dict() follow the spec's order (not nesting depth); a
    direct tensor is a parameter of its block's module (listed before the block's layers, as
    PyTorch lists a module's own parameters)."""
    root = nn.Module()
    for name, module in modules.items():
        *parents, leaf = name.split(".")
        holder = root
        for part in parents:
            if part not in holder._modules:
                holder.add_module(part, nn.Module())
            holder = holder._modules[part]
        if isinstance(module, nn.Parameter):
            holder.register_parameter(leaf, module)
        else:
            holder.add_module(leaf, module)
    return root


def take_tensor(op: nn.Module, name: str) -> nn.Parameter:
    """A direct layer's tensor, moved out of its op (the op is called with it)."""
    tensor = op.tensor
    del op.tensor
    op.tensor = None
    op.__name__ = name.replace(".", "_")  # names the op in the generated forward
    op.archspec_layer = name
    return tensor


def layer_modules(model: fx.GraphModule) -> dict[str, nn.Module]:
    """Per layer name, the module that runs it (for hooks): its submodule, or a direct
    layer's op, which is no submodule (its tensor holds the name)."""
    modules = dict(model.named_modules())
    for node in model.graph.nodes:
        if node.op == "call_function" and isinstance(node.target, nn.Module):
            modules[node.target.archspec_layer] = node.target
    return modules


def layer_parameters(model: fx.GraphModule, module: nn.Module, name: str) -> list[nn.Parameter]:
    """The parameters of one layer (module: layer_modules(model)[name]): its module's, or a
    direct layer's tensor."""
    if getattr(module, "archspec_layer", None) == name:
        return [model.get_parameter(name)]
    return list(module.parameters())


@collector_paused()  # 100,000 modules: the collector's full passes would make this superlinear
def compile_network(analysis: Analysis, *, device="cpu",
                    max_memory: int | None = None) -> fx.GraphModule:
    net = analysis.network
    check_names(net)
    device = usable_device(device)
    check_fits(analysis, device, max_memory)
    modules: dict[str, nn.Module] = {}
    inplace = analysis.inplace_layers
    graph = fx.Graph()
    values = {INPUT: graph.placeholder("x")}
    with torch.device(device):
        for node in net.nodes.values():
            info = analysis.layers[node.name]
            module = lower(node.kind, node.cfg, info.input_shapes, info.output_shape)
            if node.name in inplace:  # ReLU, ReLU6 and Add read the flag on every call
                module.inplace = True
            if not node.cfg.trainable:
                module.requires_grad_(False)
            args = tuple(values[i] for i in node.inputs)
            if node.kind.direct_tensor:
                modules[node.name] = take_tensor(module, node.name)
                values[node.name] = graph.call_function(module, args + (
                    graph.get_attr(node.name),))
                continue
            modules[node.name] = module
            values[node.name] = graph.call_module(node.name, args)
    outs = [values[o] for o in net.outputs]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    model = fx.GraphModule(module_tree(modules), graph, class_name=class_name(net.name))
    model.archspec_name = net.name
    model.archspec_spec = net.source.text  # what save_checkpoint stores beside the weights
    return model
