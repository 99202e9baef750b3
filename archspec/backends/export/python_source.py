"""`archspec export --to python`: standalone PyTorch source for a spec.

The source is lowered from the module archspec.compile builds (on the meta device, so nothing is
allocated): each torch module is rebuilt from its own constructor arguments, so the generated
class has exactly the compiled model's submodules and state_dict keys. archspec's own small
modules (concat, add, global pooling, explicit padding, shortcuts) become plain expressions in
forward. The output imports nothing but torch."""
from __future__ import annotations

import inspect
import keyword
import math
import pprint
import textwrap
from typing import Callable

from torch import nn

from ...analysis import Analysis
from ...errors import InternalError, SpecError
from ...ir import INPUT, Node
from ..pytorch import modules as tm
from ..pytorch.compiler import class_name, compile_network, layer_modules

INDENT = " " * 8
WIDTH = 99  # the longest line written
RESERVED = {"self", "x", "torch", "nn", "F", "OrderedDict"}
SKIPPED_ARGS = {"self", "device", "dtype", "_weight", "_freeze"}  # nn.Embedding's private two


def python_source(analysis: Analysis, spec_file: str | None = None) -> str:
    """The spec as one nn.Module class in a Python file that needs only torch."""
    model = compile_network(analysis, device="meta")
    return _Writer(analysis, model, spec_file).source()


# ---- constructor calls: a torch module's own arguments, read back from its attributes ----------

def _plain_class(module: nn.Module) -> type[nn.Module]:
    """The torch class under archspec's subclasses (explicit padding, a transposed conv whose
    output gets a buffer of its own size: the same values)."""
    for cls in type(module).__mro__:
        if getattr(nn, cls.__name__, None) is cls:
            return cls
    raise InternalError(f"export: no Python lowering for module class {type(module).__qualname__}")


def _literal(value) -> str:
    if isinstance(value, tuple) and value and all(v == value[0] for v in value):
        value = value[0]  # torch broadcasts one number to every dim: (3, 3) reads as 3
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    return repr(value)


def constructor(module: nn.Module) -> str:
    name, args = constructor_parts(module)
    return f"{name}({', '.join(args)})"


def constructor_parts(module: nn.Module) -> tuple[str, list[str]]:
    """('nn.Conv2d', ['3', '64', 'kernel_size=7', 'stride=2', 'padding=3', 'bias=False']):
    required arguments by position (kernel_size by keyword, as in torchvision), the others only
    when they differ from the default."""
    cls = _plain_class(module)
    args = []
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in SKIPPED_ARGS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name == "bias" and not isinstance(getattr(module, name), bool):
            value = module.bias is not None  # the attribute holds the tensor, the argument a flag
        elif hasattr(module, name):
            value = getattr(module, name)
        else:
            raise InternalError(f"export: {cls.__name__} keeps no attribute for argument '{name}'")
        text = _literal(value)
        if param.default is param.empty and name != "kernel_size":
            args.append(text)
        elif param.default is param.empty or text != _literal(param.default):
            args.append(f"{name}={text}")
    return f"nn.{cls.__name__}", args


def wrapped(start: str, items: list[str], end: str, indent: str = INDENT,
            comment: str = "") -> list[str]:
    """start + items + end on one line if it fits, else the items on their own line(s); a
    comment that does not fit at the end goes on the line above."""
    line = f"{indent}{start}{', '.join(items)}{end}"
    if len(line) + len(comment) <= WIDTH:
        return [line + comment]
    above = [f"{indent}{comment.strip()}"] if comment else []
    if len(line) <= WIDTH:
        return above + [line]
    if not start.endswith(("(", "[")):  # an expression (a + b) breaks only inside brackets
        start, end = f"{start}(", f"){end}"
    inner = indent + "    "
    if len(inner) + len(", ".join(items)) <= WIDTH:
        return above + [f"{indent}{start}", f"{inner}{', '.join(items)}", f"{indent}{end}"]
    if len(items) == 1:  # no trailing comma: it would make a parenthesised expression a tuple
        return above + [f"{indent}{start}", f"{inner}{items[0]}", f"{indent}{end}"]
    return above + [f"{indent}{start}", *(f"{inner}{item}," for item in items), f"{indent}{end}"]


# ---- the file -------------------------------------------------------------------------------

class _Writer:
    def __init__(self, analysis: Analysis, model, spec_file: str | None):
        self.analysis, self.net, self.model = analysis, analysis.network, model
        self.modules = layer_modules(model)
        self.spec_file = spec_file
        self.imports: set[str] = {"nn"}
        self.containers: set[str] = set()
        self.init: list[str] = []
        self.fixed: list[str] = []
        self.helpers: set[str] = set()  # methods the forward calls, written after it

    def source(self) -> str:
        forward = self.forward_lines()
        for node in self.net.nodes.values():
            self.declare(node)
        shape = ", ".join(map(str, self.analysis.input_shape))
        summary = (f"{self.net.name}: input [N, {shape}], {self.analysis.params:,} parameters and "
                   f"{self.analysis.buffers:,} buffers.")
        body = [f"class {class_name(self.net.name)}(nn.Module):", f'    """{summary}"""', "",
                "    def __init__(self):", f"{INDENT}super().__init__()", *self.init]
        if self.fixed:
            self.imports.add("torch")
            body += [f"{INDENT}with torch.no_grad():  # fixed weights written in the spec",
                     *(f"    {line}" for line in self.fixed)]
        body += ["", "    def forward(self, x):", *forward]
        if "drop_path" in self.helpers:
            body += DROP_PATH.rstrip("\n").split("\n")
        return "\n".join(self.header() + body) + "\n"

    def header(self) -> list[str]:
        where = f" from {self.spec_file}" if self.spec_file else ""
        about = (f"Generated by archspec{where}. It needs only PyTorch: its state_dict keys are "
                 "archspec.compile's, so weights trained there load here with strict=True.")
        first = f"{self.net.name}: {self.net.description.strip()}" if self.net.description \
            else self.net.name
        text = "\n\n".join("\n".join(textwrap.wrap(p, 96)) for p in (first, about))
        text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
        lines = [f'"""{text}', '"""']
        if "OrderedDict" in self.imports:
            lines += ["from collections import OrderedDict", ""]
        lines += ["import torch"] if "torch" in self.imports else []
        lines += ["import torch.nn.functional as F"] if "F" in self.imports else []
        return lines + ["from torch import nn", "", ""]

    # -- __init__: one statement per module, under the spec's (hierarchical) names

    def attribute(self, name: str, node: Node) -> str:
        """self.layer1["0"].conv1 for 'layer1.0.conv1': nested nn.ModuleDict containers, so the
        state_dict keys are the dotted names."""
        parts = name.split(".")
        text = "self"
        for depth, part in enumerate(parts):
            owner = nn.Module if depth == 0 else nn.ModuleDict
            if hasattr(owner, part):
                raise SpecError(self.net.source.diagnostic(
                    node.path + ("name",), f"the name '{part}' cannot be exported to Python: it is "
                    f"an attribute of torch's {owner.__name__}", layer=node.name,
                    hint="rename the layer or block"))
            if part.isidentifier() and not keyword.iskeyword(part):
                text += f".{part}"
            elif depth == 0:
                text = f'getattr(self, "{part}")'
            else:
                text += f'["{part}"]'
        return text

    def declare(self, node: Node) -> None:
        module = self.modules[node.name]
        if not _keeps_module(node, module):
            return
        parts = node.name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix not in self.containers:
                self.containers.add(prefix)
                self.assign(prefix, ("nn.ModuleDict(", [], ")"), node)
        if node.kind.direct_tensor:
            self.assign(node.name, self.tensor_expression(node), node)
        else:
            self.assign(node.name, self.module_expression(module), node)
        target = self.attribute(node.name, node)
        if not node.cfg.trainable:
            self.init.append(f"{INDENT}{target}.requires_grad_(False)  # trainable: false")
        for field in ("weight", "bias"):
            values = getattr(node.cfg, field, None)
            if isinstance(values, list):
                tensor = getattr(module, field) if field == "weight" else module.bias
                shape_args = ", ".join(map(str, tensor.shape))
                listing = pprint.pformat(values, width=80, compact=True)
                listing = textwrap.indent(listing, INDENT + "        ").lstrip()
                self.fixed.append(f"{INDENT}{target}.{field}.copy_(torch.tensor(\n"
                                  f"{INDENT}        {listing}\n{INDENT}    ).reshape({shape_args}))")

    def assign(self, name: str, call: tuple[str, list[str], str], node: Node) -> None:
        target = self.attribute(name, node)
        start, items, end = call
        if target.startswith("getattr(self, "):
            adds = "register_parameter" if start.startswith("nn.Parameter") else "add_module"
            start, end = f'self.{adds}("{name}", {start}', end + ")"
        else:
            start = f"{target} = {start}"
        self.init.extend(wrapped(start, items, end))

    def tensor_expression(self, node: Node) -> tuple[str, list[str], str]:
        """A direct layer's tensor, created as the compiled model initialises it."""
        self.imports.add("torch")
        tensor = self.model.get_parameter(node.name)
        size = ", ".join(map(str, tensor.shape))
        cfg = node.cfg
        if node.kind.name == "layer_scale":
            return "nn.Parameter(torch.full(", [f"({size},)" if tensor.dim() == 1 else f"({size})",
                                                _literal(float(cfg.init))], "))"
        if cfg.init == "normal":
            return "nn.Parameter(torch.empty(", [size], f").normal_(std={_literal(cfg.std)}))"
        return "nn.Parameter(torch.zeros(", [size], "))"

    def module_expression(self, module: nn.Module) -> tuple[str, list[str], str]:
        if isinstance(module, tm.Projection):  # a 1x1 conv (and batch norm) under one name
            self.imports.add("OrderedDict")
            parts = [f"conv={constructor(module.conv)}"]
            if module.bn is not None:
                parts.append(f"bn={constructor(module.bn)}")
            return "nn.Sequential(OrderedDict(", parts, "))"
        if isinstance(module, tm.EncoderLayer):  # keeps no attribute per argument
            args = [f"{k}={_literal(v)}" for k, v in module.arguments.items()]
            return "nn.TransformerEncoderLayer(", [*args, "batch_first=True"], ")"
        if isinstance(module, nn.RNNBase):  # its constructor takes *args: read its attributes
            return f"nn.{module.mode}(", _recurrent_args(module), ")"
        name, args = constructor_parts(module)
        return f"{name}(", args, ")"

    # -- forward: one line per layer, straight-line code

    def forward_lines(self) -> list[str]:
        aliases = self.identity_aliases()
        nodes = [n for n in self.net.nodes.values() if n.name not in aliases]

        def resolve(name: str) -> str:
            return aliases.get(name, name)

        last_use, consumers = {INPUT: -1}, {}
        for index, node in enumerate(nodes):
            for src in node.data_inputs:
                last_use[resolve(src)] = index
                consumers.setdefault(resolve(src), []).append(index)
        for out in self.net.outputs:
            last_use[resolve(out)] = len(nodes)
        outputs = {resolve(o) for o in self.net.outputs}
        variables = {INPUT: "x"}
        holder = INPUT  # the value now in the variable x
        taken = set(RESERVED)
        lines = [f'{INDENT}"""x: [N, {", ".join(map(str, self.analysis.input_shape))}]."""']
        for index, node in enumerate(nodes):
            args = [variables[resolve(src)] for src in node.data_inputs]
            if consumers.get(node.name) == [index + 1] and last_use[holder] <= index \
                    and node.name not in outputs:
                variables[node.name] = "x"
                holder = node.name
            else:
                variables[node.name] = _variable(node.name, taken)
            shape = f"  # [N, {', '.join(map(str, self.analysis.layers[node.name].output_shape))}]"
            start, items, end = self.call(node, args)
            if node.name in consumers or node.name in outputs:
                start = f"{variables[node.name]} = {start}"
            else:  # read by no layer, but run all the same (batch statistics, as compiled)
                shape += " (no layer reads it)"
            lines += wrapped(start, items, end, comment=shape)
        outs = [variables[resolve(o)] for o in self.net.outputs]
        lines.append(f"{INDENT}return {outs[0] if len(outs) == 1 else ', '.join(outs)}")
        return lines

    def identity_aliases(self) -> dict[str, str]:
        """Identity shortcuts pass their input through: no module, no statement."""
        aliases: dict[str, str] = {}
        for node in self.net.nodes.values():
            module = self.modules[node.name]
            if isinstance(module, tm.Projection) and module.conv is None:
                aliases[node.name] = aliases.get(node.inputs[0], node.inputs[0])
        return aliases

    def call(self, node: Node, args: list[str]) -> tuple[str, list[str], str]:
        """The right-hand side of a layer's statement, as (start, items, end) for wrapping."""
        return CALLS[node.kind.name](self, node, self.modules[node.name], args)

    def module_call(self, node: Node, module: nn.Module, args: list[str]) -> Call:
        target = self.attribute(node.name, node)
        if hasattr(module, "explicit_padding"):
            return f"{target}(", [self.padded_call(module, target, args[0])], ")"
        return f"{target}(", args, ")"

    def concat_call(self, node: Node, module: nn.Module, args: list[str]) -> Call:
        self.imports.add("torch")
        return "torch.cat([", args, f"], dim={module.dim})"

    def padded_call(self, module, target: str, arg: str) -> str:
        """Asymmetric ('same') padding: F.pad first, as the compiled module does."""
        self.imports.add("F")

        def pad(value: str) -> str:
            if module.explicit_pad_mode != "constant":
                return f'F.pad({value}, {module.explicit_padding!r}, mode="{module.explicit_pad_mode}")'
            fill = module.explicit_pad_value
            return f"F.pad({value}, {module.explicit_padding!r}" + \
                (f", value={_literal(float(fill))})" if fill else ")")

        if not module.explicit_exclude_pad:
            return pad(arg)
        self.imports.add("torch")  # average over the real inputs only: divide by their share
        return f"{pad(arg)}) / {target}({pad(f'torch.ones_like({arg}[:1, :1])')}"


Call = tuple[str, list[str], str]  # (start, items, end) of a statement's right-hand side


def _add_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    if module.inplace:  # into the first, as compiled
        return f"{args[0]}.add_(", [args[1]], "".join(f").add_({arg}" for arg in args[2:]) + ")"
    return "", [" + ".join(args)], ""


def _multiply_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    return "", [" * ".join(args)], ""


def _layer_norm_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    if not isinstance(module, tm.ChannelsFirstLayerNorm):
        return writer.module_call(node, module, args)
    return f"{writer.attribute(node.name, node)}(", [f"{args[0]}.movedim(1, -1)"], ").movedim(-1, 1)"


def _direct_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    tensor = writer.attribute(node.name, node)
    if module.op == "add":
        return "", [f"{args[0]} + {tensor}"], ""
    if module.op == "scale":
        return "", [f"{tensor} * {args[0]}"], ""
    writer.imports.add("torch")
    rest = ", ".join(["-1"] * (writer.model.get_parameter(node.name).dim() - 1))
    return "torch.cat([", [f"{tensor}.expand({args[0]}.shape[0], {rest})", args[0]], \
        f"], dim={module.dim})"


def _stochastic_depth_call(writer: _Writer, node: Node, module: nn.Module,
                           args: list[str]) -> Call:
    """Drop path without torchvision: a call of the class's drop_path method (written once, in
    the file), which draws what the compiled module draws."""
    if module.p == 0:
        return "", [args[0]], ""
    writer.helpers.add("drop_path")
    items = [args[0], _literal(1.0 - module.p)] + (["per_sample=False"] if module.mode == "batch"
                                                   else [])
    return "self.drop_path(", items, ")"


DROP_PATH = '''
    def drop_path(self, x, survival, per_sample=True):
        """Stochastic depth (torchvision.ops.stochastic_depth): in training, x times a
        Bernoulli(survival) noise per sample (or one for the batch), divided by survival."""
        if not self.training:
            return x
        noise = x.new_empty([x.shape[0] if per_sample else 1] + [1] * (x.dim() - 1))
        noise.bernoulli_(survival)
        return x * (noise.div_(survival) if survival > 0 else noise)
'''


def _global_pool_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    dims = str(module.dims[0]) if len(module.dims) == 1 else repr(module.dims)
    return f"{args[0]}.{'mean' if module.op == 'avg' else 'amax'}(", [dims], ")"


def _attention_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    """nn.MultiheadAttention returns (output, weights): the output alone, as compiled."""
    query, memory = args[0], args[-1]
    items = [query, memory, memory, "need_weights=False"]
    if module.causal:
        writer.imports.add("torch")
        length = f"{query}.shape[1]"
        mask = (f"attn_mask=torch.ones({length}, {length}, dtype=torch.bool, "
                f"device={query}.device).triu(1)")
        items += [mask, "is_causal=True"]
    return f"{writer.attribute(node.name, node)}(", items, ")[0]"


def _encoder_layer_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    items = list(args)
    if module.causal:
        writer.imports.add("torch")
        length = f"{args[0]}.shape[1]"
        items += [(f"src_mask=torch.ones({length}, {length}, dtype=torch.bool, "
                   f"device={args[0]}.device).triu(1)"), "is_causal=True"]
    return f"{writer.attribute(node.name, node)}(", items, ")"


def _recurrent_args(module: nn.RNNBase) -> list[str]:
    args = [str(module.input_size), str(module.hidden_size)]
    defaults = {"num_layers": 1, "bias": True, "dropout": 0.0, "bidirectional": False,
                "proj_size": 0}
    args += [f"{name}={_literal(getattr(module, name))}" for name, default in defaults.items()
             if getattr(module, name) != default]
    return args + ["batch_first=True"]


def _recurrent_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    """nn.LSTM / nn.GRU return (output, h_n) (LSTM: (output, (h_n, c_n))): the output, or
    with steps: last h_n of the last layer, both directions side by side, as compiled."""
    call = f"{writer.attribute(node.name, node)}({args[0]})"
    if not module.last:
        return "", [f"{call}[0]"], ""
    h_n = f"{call}[1]" + ("[0]" if module.mode == "LSTM" else "")
    if not module.bidirectional:
        return "", [f"{h_n}[-1]"], ""
    writer.imports.add("torch")
    return "torch.cat(tuple(", [f"{h_n}[-2:]"], "), dim=1)"


def _reorder_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    moved = [i for i, d in enumerate(module.dims) if i != d]
    if len(moved) == 2:
        call = f"{args[0]}.transpose({moved[0]}, {moved[1]})"
    else:
        call = f"{args[0]}.permute({', '.join(map(str, module.dims))})"
    return "", [call + (".contiguous()" if module.copy else "")], ""


def _take_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    if module.stop is None:
        part = str(module.start)
    else:
        part = f"{module.start}:{module.stop}" + (f":{module.step}" if module.step != 1 else "")
    return "", [f"{args[0]}[{':, ' * module.dim}{part}].contiguous()"], ""


def _reshape_call(writer: _Writer, node: Node, module: nn.Module, args: list[str]) -> Call:
    if isinstance(module, tm.Reshape):
        return f"{args[0]}.reshape(", [f"{args[0]}.shape[0]", *map(str, module.shape)], ")"
    return "", [f"{args[0]}.{'unsqueeze' if module.unsqueeze else 'squeeze'}({module.dim})"], ""


# layer kind -> how its statement in forward is written; the kinds in INLINE are expressions
# (no module in __init__), every other kind calls its module
CALLS: dict[str, Callable[[_Writer, Node, nn.Module, list[str]], Call]] = {
    "concat": _Writer.concat_call, "add": _add_call, "multiply": _multiply_call,
    "global_avg_pool": _global_pool_call, "global_max_pool": _global_pool_call,
    "multi_head_attention": _attention_call, "transformer_encoder_layer": _encoder_layer_call,
    "lstm": _recurrent_call, "gru": _recurrent_call, "stochastic_depth": _stochastic_depth_call,
    "layer_norm": _layer_norm_call, "parameter": _direct_call, "layer_scale": _direct_call,
    "permute": _reorder_call, "transpose": _reorder_call, "slice": _take_call,
    "index": _take_call, "reshape": _reshape_call, "squeeze": _reshape_call,
    "unsqueeze": _reshape_call,
    **{kind: _Writer.module_call for kind in (
        "conv", "depthwise_conv", "conv_transpose", "dense", "flatten", "max_pool", "avg_pool",
        "adaptive_avg_pool", "adaptive_max_pool", "batch_norm", "local_response_norm",
        "dropout", "upsample", "projection", "relu", "leaky_relu", "relu6", "elu", "gelu",
        "silu", "hardswish", "hardsigmoid", "sigmoid", "tanh", "softmax", "log_softmax",
        "identity", "embedding", "swish", "mish", "softplus", "prelu", "group_norm",
        "instance_norm", "pad", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle")},
}
INLINE = {"concat", "add", "multiply", "global_avg_pool", "global_max_pool", "stochastic_depth",
          "permute", "transpose", "slice", "index", "reshape", "squeeze", "unsqueeze"}


def _keeps_module(node: Node, module: nn.Module) -> bool:
    """Modules that stay modules in __init__ even without tensors (pools, activations, ...)."""
    return node.kind.name not in INLINE and not (
        isinstance(module, tm.Projection) and module.conv is None)


def _variable(name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    if not base.isidentifier() or keyword.iskeyword(base):
        base = f"v_{base}"
    text, n = base, 2
    while text in taken:
        text, n = f"{base}_{n}", n + 1
    taken.add(text)
    return text
