"""PyTorch back end: the IR becomes an nn.Module tree with one submodule per layer under its
hierarchical name (layer1.0.conv1), so state_dict keys and hooks follow the spec, and each block
a class whose forward is straight-line code generated once (codegen.py)."""
from __future__ import annotations

import itertools
import keyword
import linecache
import os
import re
import textwrap
from functools import cache

import torch
import torch.fx as fx
import torch.nn as nn

from ... import shapes
from ...analysis import Analysis
from ...collector import collector_paused
from ...errors import DeviceUnavailable, Diagnostic, InternalError, SpecError
from ...frontend.reserved import MODULE_ATTRIBUTES, reserved_reason
from ...ir import INPUT
from ...units import human_bytes
from . import codegen
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
    return text if text[0].isalpha() and not keyword.iskeyword(text) else "Net" + text


@cache
def module_attributes() -> frozenset[str]:
    """Every attribute a compiled model has besides its layers, in the installed torch."""
    root = type("Root", (nn.Module,), {"code": ""})()
    return (MODULE_ATTRIBUTES | set(dir(fx.GraphModule)) | set(dir(root)) | set(vars(root))
            | set(dir(CompiledBlock)))


def check_names(net) -> None:
    """check refuses these names already; this catches attributes that a newer torch added, so a
    model whose forward would call a method instead of a layer is never built."""
    attributes = module_attributes()
    checked: set[str] = set()  # 100,000 layers have few distinct parts (relu, 0, 1, ...)
    for node in net.nodes.values():
        for part in node.name.split("."):
            if part in checked:
                continue
            checked.add(part)
            reason = reserved_reason(part, attributes)
            if reason is not None:
                raise SpecError(net.source.diagnostic(
                    node.path, f"{reason}: it cannot name a layer or block", layer=node.name,
                    hint=f"choose another name, e.g. {part.strip('_') or 'layer'}1"))


def module_tree(modules: dict[str, nn.Module | nn.Parameter],
                classes: dict[str, type]) -> nn.Module:
    """The layers under their hierarchical names, each container (of its block's class) created
    where its first layer comes, so parameters() and state_dict() follow the spec's order (not
    nesting depth); a direct tensor is a parameter of its block's module (listed before the
    block's layers, as PyTorch lists a module's own parameters)."""
    holders = {codegen.ROOT: classes[codegen.ROOT]()}

    def holder_of(path: str) -> nn.Module:
        holder = holders.get(path)
        if holder is None:
            parent, _, leaf = path.rpartition(".")
            holder = holders[path] = classes.get(path, nn.Module)()
            holder_of(parent).add_module(leaf, holder)
        return holder

    for name, module in modules.items():
        parent, _, leaf = name.rpartition(".")
        holder = holder_of(parent)
        if isinstance(module, nn.Parameter):
            holder.register_parameter(leaf, module)
        else:
            holder.add_module(leaf, module)
    return holders[codegen.ROOT]


def take_tensor(op: nn.Module, name: str) -> nn.Parameter:
    """A direct layer's tensor, moved out of its op (the op is called with it)."""
    tensor = op.tensor
    del op.tensor
    op.tensor = None
    op.archspec_layer = name
    return tensor


def layer_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Per layer name, the module that runs it (for hooks): its submodule, or a direct
    layer's op, which is no submodule (its tensor holds the name)."""
    return dict(model.named_modules()) | model.archspec_ops


def layer_counts(model: nn.Module, layers) -> dict[str, dict[str, int]]:
    """Per layer name, its 'params', 'trainable_params' and 'buffers' as PyTorch holds them:
    each tensor of model.named_parameters() and named_buffers() goes to the layer whose name
    its key extends (one pass, where layer by layer module.parameters() would walk each)."""
    counts = {name: {"params": 0, "trainable_params": 0, "buffers": 0} for name in layers}

    def owner(key: str) -> dict[str, int]:
        name = key
        while name not in counts:
            if "." not in name:
                raise InternalError(f"the model's tensor {key} belongs to no layer")
            name = name.rpartition(".")[0]
        return counts[name]

    for key, parameter in model.named_parameters():
        count = owner(key)
        count["params"] += parameter.numel()
        count["trainable_params"] += parameter.numel() if parameter.requires_grad else 0
    for key, buffer in model.named_buffers():
        owner(key)["buffers"] += buffer.numel()
    return counts


class CompiledBlock(nn.Module):
    """A block of a compiled spec, called like any module (its hooks run): block(x, y), or, from
    the generated code, block([x, y]), a list that its archspec_forward empties, so that a
    caller that drops its own references first frees each tensor after its last use."""

    def forward(self, *inputs):
        if len(inputs) == 1 and type(inputs[0]) is list:
            return getattr(self, codegen.BLOCK_METHOD)(inputs[0])
        return getattr(self, codegen.BLOCK_METHOD)(list(inputs))


def block_class_name(title: str, used: set[str]) -> str:
    """A class name for the generated text, never one the text uses (a network named
    'compiled_block' would shadow the blocks' base class)."""
    base = class_name(title)
    name, n = base, 1
    while name in used:
        n += 1
        name = f"{base}{n}"
    used.add(name)
    return name


def define_classes(program: codegen.Program, network_name: str,
                   titles: dict[str, str]) -> dict[str, type]:
    """Per block path, its class: blocks with the same method share one; the text is executed
    once, and registered with linecache so tracebacks and inspect show it."""
    by_source: dict[str, str] = {}
    class_of_path: dict[str, str] = {}
    texts: dict[str, str] = {}
    used = {"nn", "CompiledBlock"}
    root_name = block_class_name(network_name, used)
    for path, source in program.sources.items():
        if path == codegen.ROOT:
            name = root_name
        elif source in by_source:
            class_of_path[path] = by_source[source]
            continue
        else:
            name = block_class_name(titles.get(path, 'block'), used)
            by_source[source] = name
        class_of_path[path] = name
        base = "nn.Module" if path == codegen.ROOT else "CompiledBlock"
        texts[name] = f"class {name}({base}):\n" + textwrap.indent(source, "    ") + "\n"
    classes = run_program("\n\n".join(texts.values()))
    return {path: classes[name] for path, name in class_of_path.items()}


# glibc serves a block over its mmap threshold with mmap, and freeing one raises the threshold
# to its size and the heap's trim threshold to twice that. ResNet-18's forward frees 9.4 MB
# temporaries, then grows the heap by 19.3 MB: just over the 18.9 MB trim threshold, so by the
# order of frees a forward may hand that memory back and fault it in again (4,600 faults, 5% of
# its time). One untouched 16 MiB block freed once moves the trim threshold to 32 MiB, off that
# edge; a forward freeing larger blocks raises it further itself (tools/bench/RESULTS.md).
SETTLE_BYTES = 16 * 2**20


@cache
def settle_allocator() -> None:
    """Once per process: two system calls, no page touched; another malloc just frees it."""
    torch.empty(SETTLE_BYTES, dtype=torch.uint8, device="cpu")


PROGRAMS = itertools.count()
PROGRAMS_RUN: dict[str, dict[str, type]] = {}  # program text -> its classes, by name


def run_program(text: str) -> dict[str, type]:
    """The classes a program text defines (executed once per process; registered with linecache
    so that tracebacks and inspect show it), each with its source as `code` (the root's: the
    whole text) and pickled by that text, as torch.fx pickles a GraphModule by its code."""
    classes = PROGRAMS_RUN.get(text)
    if classes is not None:
        return classes
    filename = f"<archspec program {next(PROGRAMS)}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    namespace = {"nn": nn, "CompiledBlock": CompiledBlock, "__name__": "archspec.compiled"}
    exec(compile(text, filename, "exec"), namespace)  # noqa: S102 (our own generated text)
    classes = {}
    for index, segment in enumerate(text.split("\n\n\n")):
        name = segment[len("class "):segment.index("(")]
        cls = classes[name] = namespace[name]
        cls.code = text if index == 0 else segment.rstrip("\n") + "\n"
        cls.archspec_program = text
        cls.__reduce_ex__ = reduce_compiled
    PROGRAMS_RUN[text] = classes
    return classes


def reduce_compiled(module: nn.Module, protocol: int):
    return (new_compiled, (module.archspec_program, type(module).__name__), vars(module))


def new_compiled(text: str, name: str) -> nn.Module:
    cls = run_program(text)[name]
    return cls.__new__(cls)


@collector_paused()  # 100,000 modules: the collector's full passes would make this superlinear
def compile_network(analysis: Analysis, *, device="cpu",
                    max_memory: int | None = None) -> nn.Module:
    net = analysis.network
    check_names(net)
    device = usable_device(device)
    check_fits(analysis, device, max_memory)
    modules: dict[str, nn.Module] = {}
    ops: dict[str, nn.Module] = {}
    inplace = analysis.inplace_layers
    with torch.device(device):
        for node in net.nodes.values():
            info = analysis.layers[node.name]
            module = lower(node.kind, node.cfg, info.input_shapes, info.output_shape)
            if node.name in inplace:  # ReLU, ReLU6 and Add read the flag on every call
                module.inplace = True
            if not node.cfg.trainable:
                module.requires_grad_(False)
            if node.kind.direct_tensor:
                modules[node.name] = take_tensor(module, node.name)
                ops[node.name] = module
            else:
                modules[node.name] = module
    program = codegen.program({n: node.inputs for n, node in net.nodes.items()}, net.outputs,
                              INPUT, set(ops))
    titles = {b.name: b.title or b.kind for b in net.blocks.values()}
    model = module_tree(modules, define_classes(program, net.name, titles))
    for name, op in ops.items():  # beside the tensor, outside the module tree (and state_dict)
        holder, _, leaf = name.rpartition(".")
        vars(model.get_submodule(holder) if holder else model)[codegen.OP_PREFIX + leaf] = op
    model.archspec_ops = ops  # by layer name, for hooks (layer_modules)
    model.archspec_name = net.name
    model.archspec_spec = net.source.text  # what save_checkpoint stores beside the weights
    if device.type == "cpu":
        settle_allocator()  # after the weights, which are mapped as a hand-built model's are
    return model
