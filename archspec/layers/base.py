"""What every layer kind declares, in one place, and the registry that collects them.

A kind bundles its config schema (a pydantic model), its shape rule, its counts, its
receptive-field step and its memory rule, the way a Keras layer keeps config and
``compute_output_shape`` side by side. Back ends lower each kind in their own table
(archspec/backends/pytorch/lowering.py); nothing here imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from annotated_types import Ge, Gt, Le
from pydantic import AllowInfNan, BaseModel, ConfigDict, Field

Shape = tuple[int, ...]  # channels first, no batch dimension

# One rule for every number a layer takes, so that what `check` accepts PyTorch can hold:
# sizes, strides, paddings, dilations and counts are integers up to MAX_SIZE (no network
# needs more; PyTorch's 64-bit sizes overflow long before 2^63), and every float is finite
# and within what a float32 module attribute holds.
MAX_SIZE = 10 ** 9
FLOAT_LIMIT = 1e38  # float32 holds up to 3.4e38
Size = Annotated[int, Ge(1), Le(MAX_SIZE)]
Offset = Annotated[int, Ge(0), Le(MAX_SIZE)]
Real = Annotated[float, Ge(-FLOAT_LIMIT), Le(FLOAT_LIMIT), AllowInfNan(False)]
PositiveReal = Annotated[float, Gt(0), Le(FLOAT_LIMIT), AllowInfNan(False)]

FAMILIES = ("input", "conv", "pool", "dense", "norm", "activation", "dropout", "reshape",
            "merge", "upsample", "attention", "recurrent", "learned")


# What a tensor's axes mean, beside its shape (no batch dim): a channels-first map [C, L] /
# [C, H, W] / [C, D, H, W]; channels last, features on the last axis ([L, D] token sequences,
# [H, W, C] maps); a flat feature vector [N] (both of those); integer token ids [L].
LAYOUTS = ("channels_first", "channels_last", "vector", "ids")
LAYOUT_ALIASES = {"tokens": "channels_last"}
FLOATS = frozenset({"channels_first", "channels_last", "vector"})
CHANNELS_FIRST = frozenset({"channels_first", "vector"})
CHANNELS_LAST = frozenset({"channels_last", "vector"})


def describe_layout(shape: tuple[int, ...], layout: str) -> str:
    """'a token sequence 196x768, features last', for messages."""
    text = "x".join(map(str, shape))
    if layout == "ids":
        return f"token ids {text} (integers)"
    if layout == "vector" or len(shape) == 1:
        return f"a feature vector of {shape[0]}"
    if layout == "channels_last":
        what = "a token sequence" if len(shape) == 2 else "a channels-last map"
        return f"{what} {text}, features last"
    return f"a channels-first map {text} (channels on dim 1)"


class ShapeProblem(Exception):
    """Raised by a shape rule; the analysis turns it into a located Diagnostic."""

    def __init__(self, message: str, hint: str | None = None, field: str | None = None,
                 notes: tuple[str, ...] = ()):
        super().__init__(message)
        self.message, self.hint, self.field, self.notes = message, hint, field, list(notes)


@dataclass
class Counts:
    params: int = 0          # all parameters; the analysis splits trainable/frozen
    buffers: int = 0
    macs: int = 0            # multiply-accumulates for one sample
    param_tensors: int = 0   # how many tensors hold the parameters (weight, bias, ...)


@dataclass(frozen=True)
class Saved:
    """One tensor autograd keeps for a layer's backward pass, as PyTorch's derivative formulas
    save it: one of the layer's inputs, its output, or a tensor the layer makes on the way (a
    padded copy, max-pool indices, a dropout mask, per-channel statistics)."""
    tensor: Literal["input", "output", "new"]
    index: int = 0              # "input": which input
    shape: Shape = ()           # "new": its shape, without the batch dim when `batched`
    batched: bool = True        # "new": it has the batch dim
    int64: bool = False         # "new": indices, 8 bytes each whatever the dtype
    float32: bool = False       # "new": kept in float32 when the dtype is narrower (statistics)
    dtypes: Literal["all", "wide", "half"] = "all"  # "new": kept only in 4+ or 2-byte dtypes
    # "new": a copy of input `copy_of` made contiguous in sequence-first order ([L, N, E], as
    # nn.MultiheadAttention works); with a batch of 1 or one position it is the input itself
    copy_of: int | None = None

    def element_bytes(self, dtype_bytes: int) -> int:
        """Bytes per element in a model of that dtype; 0 when it is not kept in that dtype."""
        if self.dtypes != "all" and (dtype_bytes >= 4) != (self.dtypes == "wide"):
            return 0
        return 8 if self.int64 else max(dtype_bytes, 4) if self.float32 else dtype_bytes

    def elements(self, batch_size: int) -> int:
        from ..shapes import product
        return product(self.shape) * (batch_size if self.batched else 1)


SAVES_INPUT, SAVES_OUTPUT = Saved("input"), Saved("output")


def stats(channels: int) -> list[Saved]:
    """Batch norm's saved mean and inverse standard deviation, one value per channel each."""
    return [Saved("new", shape=(channels,), batched=False)] * 2


@dataclass(frozen=True)
class GradFlow:
    """Which tensors of a layer take part in the backward pass: its inputs that require grad,
    and whether it has trainable parameters."""
    inputs: tuple[bool, ...]
    params: bool

    @property
    def any(self) -> bool:
        return self.params or any(self.inputs)


@dataclass(frozen=True)
class RFStep:
    """One spatial dim of a sliding window: effective kernel, stride, left padding."""
    kernel: int
    stride: int
    pad_left: int


class LayerConfig(BaseModel):
    """Fields every layer accepts, whatever its kind."""
    # defer_build: a kind's validator is built when a spec first uses it, not at import (47
    # models would cost about 110 ms of every `archspec check`)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True,
                              defer_build=True)

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_]+$",
                             description="Layer name; default: kind and a counter (conv1, pool2).")
    from_: str | list[str] | None = Field(
        None, alias="from", description="Input layer name(s); default: the layer above.")
    trainable: bool = Field(True, description="false freezes the layer's parameters.")


class LayerKind:
    """Base of every layer kind. Subclasses set the class attributes and override the rules."""

    name: ClassVar[str]
    family: ClassVar[str]
    Config: ClassVar[type[LayerConfig]]
    base_name: ClassVar[str] = ""       # default node name stem ("conv" -> conv1, conv2)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    broadcasts: ClassVar[bool] = False  # size-1 dims of an input stretch (a product's gates)
    # one learned tensor registered on the enclosing block's module under the layer's own name
    # (torchvision's class_token, layer_scale): the back end's lowering gives the tensor and op
    direct_tensor: ClassVar[bool] = False
    # layouts its first input may have (base.LAYOUTS; a vector passes wherever channels_first
    # or channels_last does); None: any, token ids included
    layouts: ClassVar[frozenset[str] | None] = FLOATS

    def accepts(self, cfg: Any) -> frozenset[str] | None:
        """The layouts this layer's input may have (a kind whose fields change it overrides)."""
        return self.layouts

    def layout_problem(self, cfg: Any, shape: Shape, layout: str) -> ShapeProblem:
        """The error for an input of a layout this layer does not take, with the fix."""
        return wrong_layout(self.name, shape, layout, self.accepts(cfg) or FLOATS)

    def output_layout(self, cfg: Any, inputs: list[Shape], layouts: list[str],
                      output: Shape) -> str:
        return "vector" if len(output) == 1 and layouts[0] != "ids" else layouts[0]

    def output_shape(self, cfg: Any, inputs: list[Shape]) -> Shape:
        return inputs[0]

    def counts(self, cfg: Any, inputs: list[Shape], output: Shape) -> Counts:
        return Counts()

    def rf_steps(self, cfg: Any, inputs: list[Shape]) -> list[RFStep] | None:
        """Per spatial dim window of this layer; identity by default; None: no spatial field."""
        return [RFStep(1, 1, 0)] * (len(inputs[0]) - 1)

    def size_period(self, cfg: Any, inputs: list[Shape]) -> int:
        """A period of the output sizes in each input size: an input size grown by this much
        grows the output by a fixed amount whatever the size (a window's stride; 1 for a
        pointwise, upsampling or fixed-size output). archspec.sizes builds on it."""
        steps = self.rf_steps(cfg, inputs)
        return math.lcm(*(step.stride for step in steps)) if steps else 1

    def label(self, cfg: Any, inputs: list[Shape]) -> str:
        return self.name

    def notes(self, cfg: Any, inputs: list[Shape]) -> list[str]:
        """Notes on every use of the layer (attention: its field is the whole sequence)."""
        return []

    def is_identity(self, cfg: Any, inputs: list[Shape]) -> bool:
        """True when this layer passes its (first) input through unchanged, for diagrams."""
        return False

    # ---- memory: every kind states what its PyTorch lowering keeps (register checks) --------
    # the back end may overwrite the first input with the result, where nothing else needs it
    # (archspec.memory.inplace_layers decides, per layer)
    inplace_capable: ClassVar[bool] = False

    def saved(self, cfg: Any, inputs: list[Shape], output: Shape, grad: GradFlow) -> list[Saved]:
        """Tensors autograd keeps for this layer's backward in train mode (parameters and
        buffers aside), each a separate storage unless it is an input or the output."""
        raise NotImplementedError(self.name)

    def aliases_input(self, cfg: Any, inputs: list[Shape], training: bool) -> bool:
        """True when the output shares its (first) input's storage: a view or an identity (a
        layer run in place aliases its input too: Analysis.aliases_input)."""
        return False


REGISTRY: dict[str, LayerKind] = {}
INLINE_DOC = ("No scope of its own: its layers are named in the enclosing scope (no cluster in "
              "the diagram); numbering of a numbered sequential continues through them.")
COMPOSITES: dict[str, Any] = {}  # block kinds that expand into several nodes (layers/blocks.py)


def _check_new_name(name: str, module: str) -> None:
    if name in REGISTRY or name in COMPOSITES:
        raise ValueError(f"layer kind '{name}' is registered twice (again in {module})")


def register(kind_cls: type[LayerKind]) -> type[LayerKind]:
    """Class decorator: add a kind to the registry; a second kind with the same name is a bug."""
    name = kind_cls.name
    _check_new_name(name, kind_cls.__module__)
    if kind_cls.family not in FAMILIES:
        raise ValueError(f"layer kind '{name}' has unknown family '{kind_cls.family}'")
    type_field = kind_cls.Config.model_fields.get("type")
    if type_field is None or type_field.annotation != Literal[name]:  # type: ignore[valid-type]
        raise ValueError(f"layer kind '{name}' must declare type: Literal['{name}']")
    if kind_cls.saved is LayerKind.saved:
        raise ValueError(f"layer kind '{name}' must declare its memory rule (saved): which "
                         "tensors its backward keeps")
    REGISTRY[name] = kind_cls()
    if not kind_cls.base_name:
        kind_cls.base_name = name
    return kind_cls


def register_composite(kind_cls):
    """Class decorator for block kinds that expand into several nodes (no shape rule of their own)."""
    _check_new_name(kind_cls.name, kind_cls.__module__)
    if not getattr(kind_cls, "stem", ""):
        raise ValueError(f"block kind '{kind_cls.name}' must declare a name stem (res -> res1)")
    COMPOSITES[kind_cls.name] = kind_cls()
    return kind_cls


# ---- helpers shared by kinds -------------------------------------------------------------

def per_dim(value: int | list[int] | tuple[int, ...], ndim: int, field: str) -> tuple[int, ...]:
    """Broadcast an int to every spatial dim, or check a list has one entry per dim."""
    if isinstance(value, int):
        return (value,) * ndim
    if len(value) != ndim:
        raise ShapeProblem(f"'{field}' has {len(value)} values but the input has {ndim} spatial "
                           f"dimension{'s' if ndim != 1 else ''}",
                           hint=f"give one int, or a list of {ndim}", field=field)
    return tuple(value)


DIM_DOC = "PyTorch's dim: 0 is the batch, 1 the channels, negative counts from the end."


def sample_axis(dim: int, shape: Shape, kind: str, why: str) -> int:
    """The axis of a per-sample shape (no batch) that PyTorch's `dim` names on a batch of such
    samples; a dim out of range, or naming the batch, is the user's error."""
    rank = len(shape) + 1
    if not -rank <= dim < rank:
        raise ShapeProblem(f"dim {dim} is out of range for a batch of {fmt_shape(shape)} "
                           f"({rank} dims with the batch)", field="dim",
                           hint=f"dims count as in PyTorch: 0 is the batch, 1 the channels, up to "
                                f"{rank - 1}; -1 is the last")
    if dim % rank == 0:
        raise ShapeProblem(f"{kind} along dim {dim}, the batch dim, {why}", field="dim",
                           hint="dims count as in PyTorch: 0 is the batch, 1 the channels; "
                                "write dim: 1 for the channels (or -1 for the last dim)")
    return dim % rank - 1


def check_declared(cfg, field: str, actual: int, what: str = "channels") -> None:
    """in_channels / in_features / num_features are inferred; if the user wrote one, it must agree."""
    given = getattr(cfg, field)
    if given is not None and given != actual:
        raise ShapeProblem(f"{field} is {given} but the incoming tensor has {actual} {what}",
                           field=field, hint=f"remove {field} (it is inferred) or set it to "
                                             f"{actual}")


def require_spatial(kind: str, shape: Shape, dims: tuple[int, ...] = (1, 2, 3)) -> int:
    nd = len(shape) - 1
    if nd not in dims:
        raise ShapeProblem(
            f"{kind} needs a [C, L], [C, H, W] or [C, D, H, W] input, got {list(shape)}",
            hint="feature vectors have no spatial dims; put this layer before the flatten/dense")
    return nd


def sequence_input(kind: str, shape: Shape, features: str, vector_hint: str,
                   role: str = "input") -> tuple[int, int]:
    """(length, features) of a token sequence [L, features] for a sequence layer; a vector or
    a channels-first map is the user's error, the map's with the reshape that makes it one."""
    if len(shape) == 2:
        return shape[0], shape[1]
    expects = f"{kind} needs a token sequence [L, {features}] (features last) but its {role} is"
    if len(shape) == 1:
        raise ShapeProblem(f"{expects} a vector of {shape[0]} features", hint=vector_hint)
    c, *spatial = shape
    positions = 1
    for n in spatial:
        positions *= n
    raise ShapeProblem(
        f"{expects} a {fmt_shape(shape)} map", hint=f"make the map a sequence of {positions} "
        f"positions of {c} features: {{type: reshape, shape: [{c}, {positions}]}} then "
        "{type: transpose, dims: [1, 2]}")


def wrong_layout(kind: str, shape: Shape, layout: str, accepted: frozenset[str]) -> ShapeProblem:
    """A located refusal naming the layout the layer got and the axis it expects."""
    got = describe_layout(shape, layout)
    rank = len(shape) + 1  # dims with the batch, as PyTorch counts them
    if "ids" in accepted and layout != "ids":
        return ShapeProblem(
            f"{kind} takes integer token ids [L] but its input is {got}",
            hint="declare the network input as ids: input: {shape: [L], layout: ids}; an "
                 "input already embedded needs no embedding")
    if layout == "ids":
        return ShapeProblem(f"{kind} takes float features but its input is {got}",
                            hint="token ids go through an embedding first: insert {type: "
                                 "embedding, num_embeddings: ..., embedding_dim: ...} before it")
    to_first = [0, rank - 1, *range(1, rank - 1)]
    to_last = [0, *range(2, rank), 1]
    if "channels_first" in accepted:
        move = "{type: transpose, dims: [1, 2]}" if rank == 3 else \
            f"{{type: permute, dims: {to_first}}}"
        return ShapeProblem(f"{kind} expects a channels-first map (channels on dim 1) but its "
                            f"input is {got}",
                            hint=f"move the features to dim 1: insert {move} before it")
    move = "{type: transpose, dims: [1, 2]}" if rank == 3 else f"{{type: permute, dims: {to_last}}}"
    return ShapeProblem(f"{kind} expects features on the last axis (channels last, as a token "
                        f"sequence [L, D]) but its input is {got}",
                        hint=f"move the channels last: insert {move} before it")


def sequence_layout_problem(kind: str, shape: Shape, layout: str) -> ShapeProblem:
    """wrong_layout for a kind on token sequences [L, D]: a map of two or more spatial dims is
    flattened to its positions first (ViT's patches), since moving its channels last alone
    leaves it a map."""
    if layout != "channels_first" or len(shape) < 3:
        return wrong_layout(kind, shape, layout, frozenset({"channels_last"}))
    positions = math.prod(shape[1:])
    return ShapeProblem(
        f"{kind} expects features on the last axis (channels last, as a token sequence [L, D]) "
        f"but its input is {describe_layout(shape, layout)}",
        hint=f"move the channels last: insert {{type: flatten, start_dim: 2}} then {{type: "
             f"transpose, dims: [1, 2]}} before it (a sequence of {positions} positions of "
             f"{shape[0]} features)")


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(s) for s in shape)


def dims_text(values: tuple[int, ...]) -> str:
    """(3, 3) -> '3x3'; (5,) -> '5'."""
    return "x".join(map(str, values))


def step_text(values: tuple[int, ...]) -> str:
    """Strides and dilations: (2, 2) -> '2'; (1, 2) -> '1x2'."""
    return str(values[0]) if len(set(values)) == 1 else dims_text(values)


# ---- literal weights (fixed filters such as Sobel kernels) ----------------------------------

def nested_shape(values: Any) -> tuple[int, ...]:
    """Shape of a rectangular nested list; raises ShapeProblem if ragged."""
    if not isinstance(values, list):
        if isinstance(values, bool) or not isinstance(values, (int, float)):
            raise ShapeProblem(f"literal values must be numbers, got {values!r}")
        if abs(values) > FLOAT_LIMIT:
            raise ShapeProblem(f"literal values must be at most {FLOAT_LIMIT:g} in magnitude, "
                               f"got {values!r}", hint="weights are stored as 32-bit floats")
        return ()
    if not values:
        raise ShapeProblem("literal values must not be an empty list")
    inner = [nested_shape(v) for v in values]
    if any(s != inner[0] for s in inner):
        raise ShapeProblem("literal values are ragged: rows have different lengths",
                           hint="every row of a literal weight must have the same length")
    return (len(values),) + inner[0]


def check_literal(values: Any, expected: tuple[int, ...], field: str) -> None:
    """Accept the exact shape, or the same with leading size-1 dims left out ([3,2,1] for 1x1x3)."""
    try:
        got = nested_shape(values)
    except ShapeProblem as problem:  # point at the field, and name it
        problem.message = problem.message.replace("literal values are", f"literal '{field}' is") \
            .replace("literal values", f"literal '{field}' values")
        problem.field = field
        raise
    trimmed = expected
    while len(trimmed) > len(got) and trimmed[0] == 1:
        trimmed = trimmed[1:]
    if got != trimmed:
        raise ShapeProblem(f"literal '{field}' has shape {list(got)} but this layer needs "
                           f"{list(expected)}", field=field,
                           hint=f"give {field} as a nested list of shape {list(expected)}")


class FixedWeights(BaseModel):
    """Mixin for kinds that take literal weight/bias values."""
    weight: list[Any] | None = Field(
        None, description="Literal weight values (nested list, PyTorch's layout).")


class ActivationField(BaseModel):
    activation: str | None = Field(
        None, description="Shorthand: an activation applied right after this layer (relu, ...).")


def check_bias_literal(bias: bool | list[float], out: int) -> None:
    if isinstance(bias, list) and len(bias) != out:
        raise ShapeProblem(f"literal 'bias' has {len(bias)} values but the layer has {out} outputs",
                           field="bias", hint=f"give {out} bias values")
