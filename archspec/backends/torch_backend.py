"""PyTorch back end: the IR becomes a torch.fx.GraphModule whose forward is straight-line code
(one statement per layer, generated once), with one submodule per layer under its
hierarchical name (layer1.0.conv1), so state_dict keys and hooks follow the spec."""
from __future__ import annotations

import os
import re

import torch
import torch.fx as fx
import torch.nn as nn

from ..analysis import Analysis
from ..errors import DeviceUnavailable, Diagnostic, SpecError
from ..ir import INPUT

CHECKPOINT_FORMAT = "archspec-checkpoint/1"


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


def check_fits(analysis: Analysis, device, max_param_bytes: int | None) -> None:
    if torch.device(device).type == "meta":
        return
    need = analysis.param_bytes
    limit = max_param_bytes if max_param_bytes is not None else available_memory_bytes()
    if need > limit:
        net = analysis.network
        raise SpecError(Diagnostic(
            f"the model needs {need / 2**30:.1f} GiB for its {analysis.params:,} parameters and "
            f"buffers, more than the {limit / 2**30:.1f} GiB allowed", file=net.source.file,
            line=1, column=1,
            hint="build with device='meta' (--device meta) to inspect it without allocating, or "
                 "raise the limit (max_param_bytes=..., --max-param-bytes)"))


def class_name(name: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", name) or ["Network"]
    text = "".join(w[:1].upper() + w[1:] for w in words)
    return text if text[0].isalpha() else "Net" + text


def compile_network(analysis: Analysis, *, device="cpu",
                    max_param_bytes: int | None = None) -> fx.GraphModule:
    device = usable_device(device)
    check_fits(analysis, device, max_param_bytes)
    net = analysis.network
    modules: dict[str, nn.Module] = {}
    graph = fx.Graph()
    values = {INPUT: graph.placeholder("x")}
    with torch.device(device):
        for node in net.nodes.values():
            info = analysis.layers[node.name]
            module = node.kind.build_torch(node.cfg, info.input_shapes, info.output_shape)
            if not node.cfg.trainable:
                module.requires_grad_(False)
            modules[node.name] = module
            values[node.name] = graph.call_module(node.name, tuple(values[i] for i in node.inputs))
    outs = [values[o] for o in net.outputs]
    graph.output(outs[0] if len(outs) == 1 else tuple(outs))
    model = fx.GraphModule(modules, graph, class_name=class_name(net.name))
    model.archspec_name = net.name
    return model


def save_checkpoint(model: nn.Module, spec_text: str, path: str | os.PathLike) -> None:
    """A plain dict of the spec text and tensors: torch.load(weights_only=True) reads it safely."""
    torch.save({"format": CHECKPOINT_FORMAT, "spec": spec_text,
                "state_dict": model.state_dict()}, path)


def load_checkpoint(path: str | os.PathLike, *, device="cpu") -> fx.GraphModule:
    from .. import compile as compile_spec, load
    data = torch.load(path, map_location=device, weights_only=True)
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise SpecError(Diagnostic(f"{path} is not an archspec checkpoint", file=str(path),
                                   hint="create one with 'archspec build SPEC -o FILE'"))
    model = compile_spec(load(data["spec"]), device=device)
    model.load_state_dict(data["state_dict"])
    return model
