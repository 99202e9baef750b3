"""Shape kinds: flatten, permute, transpose, reshape, squeeze, unsqueeze, slice and index.

None has parameters or MACs. Dims count as in PyTorch (0 is the batch). Each moves the axes
of a tensor and so the layout: the feature axis (channels first, or last) is followed through
the move, and a result whose features would sit in a middle axis is the user's error (no
layer reads such a tensor). Every result is contiguous, as the memory rules of later layers
assume: the views of a contiguous tensor (flatten, reshape, squeeze, unsqueeze, and permute or
transpose that keep the order of the axes larger than 1) share its storage; a permute or
transpose that reorders copies into a new one; slice and index copy their part.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .. import shapes
from .base import DIM_DOC, LayerConfig, LayerKind, RFStep, Shape, ShapeProblem, fmt_shape, register

Layout = str


def axis_of(dim: int, shape: Shape, field: str, what: str, extra: int = 0) -> int:
    """The per-sample axis (0 = the first after the batch) PyTorch's `dim` names on a batch of
    `shape`; `extra` allows one more position (unsqueeze inserts at the end)."""
    rank = len(shape) + 1 + extra
    if not -rank <= dim < rank:
        raise ShapeProblem(f"{field} {dim} is out of range for a batch of {fmt_shape(shape)} "
                           f"({len(shape) + 1} dims with the batch)", field=field,
                           hint=f"dims count as in PyTorch: 0 is the batch, 1 the first dim of "
                                f"a sample, up to {rank - 1}; -1 is the last")
    if dim % rank == 0:
        raise ShapeProblem(f"{what} dim {dim}, the batch dim, would mix the samples of a batch",
                           field=field, hint="dims count as in PyTorch: 0 is the batch; the "
                                             "first dim of a sample is 1 (the last is -1)")
    return dim % rank - 1


def feature_axis(layout: Layout, rank: int) -> int | None:
    """The per-sample axis holding the features; None for token ids."""
    if layout == "ids":
        return None
    return rank - 1 if layout == "channels_last" else 0


def placed_layout(layout: Layout, axis: int | None, rank: int, field: str, move: str,
                  order: tuple[int, ...] | None = None) -> Layout:
    """The layout of a result whose feature axis is now `axis` (None: it was taken away, the
    input's layout stays); `order`: the axes moved, for the hint."""
    if layout == "ids":
        return "ids"
    if rank == 1:
        return "vector"
    if axis is None:
        return "channels_first" if layout == "vector" else layout
    if axis == 0:
        return "channels_first"
    if axis == rank - 1:
        return "channels_last"
    where = "channels-last" if layout == "channels_last" else "channels-first"
    hint = "move the features to dim 1 (channels first) or to the last dim (channels last)"
    if order is not None:
        features = order[axis]
        rest = [a + 1 for a in order if a != features]
        hint += (f": permute with dims: {[0, *rest, features + 1]} (channels last) or "
                 f"{[0, features + 1, *rest]} (channels first)")
    raise ShapeProblem(f"{move} puts the features of a {where} input on dim {axis + 1} of "
                       f"{rank + 1}, between other axes; layers read features on dim 1 "
                       "(channels first) or on the last dim", field=field, hint=hint)


def keeps_order(shape: Shape, order: tuple[int, ...]) -> bool:
    """True when the axes larger than 1 keep their order: the moved view is still contiguous."""
    big = [axis for axis in order if shape[axis] != 1]
    return big == sorted(big)


class ShapeKind(LayerKind):
    """A shape kind: no parameters, nothing saved for backward (a view's or a copy's backward
    needs only sizes), any layout."""
    family = "reshape"
    layouts = None

    def saved(self, cfg, inputs, output, grad):
        return []

    def rf_steps(self, cfg, inputs):
        return None  # positions merged, split or reordered: no window per dim

    def is_identity(self, cfg, inputs):
        return tuple(self.output_shape(cfg, inputs)) == tuple(inputs[0]) and \
            self.aliases_input(cfg, inputs, False)


# ---- flatten -----------------------------------------------------------------------------

class FlattenConfig(LayerConfig):
    type: Literal["flatten"]
    start_dim: int = Field(1, description="First dim merged (nn.Flatten's; " + DIM_DOC + ")")
    end_dim: int = Field(-1, description="Last dim merged (nn.Flatten's).")


@register
class Flatten(ShapeKind):
    """nn.Flatten(start_dim, end_dim): [C, H, W] -> [C*H*W] by default; start_dim 2 gives
    [C, H*W] (ViT's patches). Merging the feature axis makes the merged axis the features."""
    name = "flatten"
    Config = FlattenConfig

    def span(self, cfg, shape) -> tuple[int, int]:
        start = axis_of(cfg.start_dim, shape, "start_dim", "flatten from")
        end = axis_of(cfg.end_dim, shape, "end_dim", "flatten to")
        if end < start:
            raise ShapeProblem(f"end_dim {cfg.end_dim} comes before start_dim {cfg.start_dim} "
                               f"on a batch of {fmt_shape(shape)}", field="end_dim",
                               hint=f"give an end_dim from {start + 1} to {len(shape)} (or -1)")
        return start, end

    def output_shape(self, cfg, inputs):
        shape = inputs[0]
        start, end = self.span(cfg, shape)
        return shape[:start] + (shapes.product(shape[start:end + 1]),) + shape[end + 1:]

    def output_layout(self, cfg, inputs, layouts, output):
        start, end = self.span(cfg, inputs[0])
        axis = feature_axis(layouts[0], len(inputs[0]))
        if axis is not None:
            axis = start if start <= axis <= end else axis - (end - start) * (axis > end)
        return placed_layout(layouts[0], axis, len(output), "start_dim", "flatten")

    def rf_steps(self, cfg, inputs):
        start, end = self.span(cfg, inputs[0])
        return [RFStep(1, 1, 0)] * (len(inputs[0]) - 1) if start == end else None

    def aliases_input(self, cfg, inputs, training):
        return True  # a view of its (contiguous) input

    def label(self, cfg, inputs):
        if (cfg.start_dim, cfg.end_dim) == (1, -1):
            return "flatten"
        return f"flatten {cfg.start_dim}..{cfg.end_dim}"


# ---- permute and transpose -----------------------------------------------------------------

class PermuteConfig(LayerConfig):
    type: Literal["permute"]
    dims: list[int] = Field(min_length=2, max_length=6, description=(
        "The new order of the dims, with the batch (torch.permute's): [0, 2, 3, 1] makes a "
        "[C, H, W] map channels last. dims[0] must be 0."))

    field_hints: ClassVar[dict[str, str]] = {
        "dim": "permute takes dims: the new order of every dim, 0 (the batch) first"}


class Reorder(ShapeKind):
    """Moves axes: the result is contiguous (a copy when axes larger than 1 change order)."""
    field = "dims"

    def order(self, cfg, shape) -> tuple[int, ...]:
        """The per-sample axes in their new order."""
        raise NotImplementedError

    def output_shape(self, cfg, inputs):
        return tuple(inputs[0][axis] for axis in self.order(cfg, inputs[0]))

    def output_layout(self, cfg, inputs, layouts, output):
        order = self.order(cfg, inputs[0])
        axis = feature_axis(layouts[0], len(inputs[0]))
        return placed_layout(layouts[0], None if axis is None else order.index(axis),
                             len(output), self.field, self.name, order)

    def rf_steps(self, cfg, inputs):
        """Fields are per positional axis, so they hold while those keep their order: the
        identity, or the feature axis moved from first to last or back (any other order of a
        valid result reorders positions)."""
        order, rank = self.order(cfg, inputs[0]), len(inputs[0])
        kept = (tuple(range(rank)), (*range(1, rank), 0), (rank - 1, *range(rank - 1)))
        return [RFStep(1, 1, 0)] * (rank - 1) if rank > 1 and order in kept else None

    def aliases_input(self, cfg, inputs, training):
        return keeps_order(inputs[0], self.order(cfg, inputs[0]))


@register
class Permute(Reorder):
    name = "permute"
    Config = PermuteConfig

    def order(self, cfg, shape):
        rank = len(shape) + 1
        if len(cfg.dims) != rank:
            raise ShapeProblem(f"dims {cfg.dims} has {len(cfg.dims)} entries but a batch of "
                               f"{fmt_shape(shape)} has {rank} dims", field="dims",
                               hint=f"give a permutation of 0..{rank - 1}, with 0 (the batch) "
                                    "first")
        dims = [d % rank if -rank <= d < rank else d for d in cfg.dims]
        if sorted(dims) != list(range(rank)):
            raise ShapeProblem(f"dims {cfg.dims} is not a permutation of 0..{rank - 1}",
                               field="dims", hint=f"name each dim from 0 to {rank - 1} once "
                                                  "(PyTorch's numbering, 0 is the batch)")
        if dims[0] != 0:
            raise ShapeProblem(f"dims {cfg.dims} moves the batch dim (0) away from the front",
                               notes=("Keras' Permute counts from 1 without the batch; here "
                                      "dims are torch.permute's, with the batch",),
                               field="dims", hint="keep 0 first: dims count as in PyTorch, and "
                                                  "a layer permutes the dims of each sample")
        return tuple(d - 1 for d in dims[1:])

    def label(self, cfg, inputs):
        return f"permute {','.join(map(str, cfg.dims))}"


class TransposeConfig(LayerConfig):
    type: Literal["transpose"]
    dims: list[int] = Field(min_length=2, max_length=2, description=(
        "The two dims swapped (torch.transpose's dim0, dim1; 0 is the batch): [1, 2] turns a "
        "[C, L] map into a token sequence [L, C]."))

    field_hints: ClassVar[dict[str, str]] = {
        "dim0": "write the two dims as one list: dims: [dim0, dim1]",
        "dim1": "write the two dims as one list: dims: [dim0, dim1]"}


@register
class Transpose(Reorder):
    name = "transpose"
    Config = TransposeConfig

    def order(self, cfg, shape):
        a, b = (axis_of(d, shape, "dims", "transpose along") for d in cfg.dims)
        order = list(range(len(shape)))
        order[a], order[b] = b, a
        return tuple(order)

    def label(self, cfg, inputs):
        return f"transpose {cfg.dims[0]},{cfg.dims[1]}"


# ---- slice and index -----------------------------------------------------------------------

class SliceConfig(LayerConfig):
    type: Literal["slice"]
    dim: int = Field(1, description="The dim sliced. " + DIM_DOC)
    start: int | None = Field(None, description="First position kept (Python's; negative "
                                                "counts from the end); default: 0.")
    stop: int | None = Field(None, description="Position after the last kept (negative counts "
                                               "from the end); default: the end.")
    step: int = Field(1, ge=1, le=10 ** 9, description="Keep every step-th position.")


def position(value: int, size: int, field: str, dim: int, end: bool = False) -> int:
    """A Python index on an axis of `size`, negative from the end; out of range: an error."""
    top = size if end else size - 1
    if not -size <= value <= top:
        allowed = f"-{size} to {top}"
        raise ShapeProblem(f"{field} {value} is out of range for dim {dim} of size {size}",
                           field=field, hint=f"give {field} a value from {allowed}")
    return value + size if value < 0 else value


@register
class Slice(ShapeKind):
    """x[:, start:stop:step] along `dim` (a copy of that part)."""
    name = "slice"
    Config = SliceConfig

    def window(self, cfg, shape) -> tuple[int, int, int]:
        axis = axis_of(cfg.dim, shape, "dim", "slice along")
        size = shape[axis]
        start = 0 if cfg.start is None else position(cfg.start, size, "start", cfg.dim)
        stop = size if cfg.stop is None else position(cfg.stop, size, "stop", cfg.dim, True)
        if stop <= start:
            raise ShapeProblem(f"slice {start}:{stop} of dim {cfg.dim} (size {size}) keeps "
                               "nothing", field="stop",
                               hint=f"give a stop after the start ({start + 1} to {size})")
        return axis, start, stop

    def output_shape(self, cfg, inputs):
        axis, start, stop = self.window(cfg, inputs[0])
        kept = -(-(stop - start) // cfg.step)
        return inputs[0][:axis] + (kept,) + inputs[0][axis + 1:]

    def output_layout(self, cfg, inputs, layouts, output):
        return "vector" if len(output) == 1 and layouts[0] != "ids" else layouts[0]

    def size_period(self, cfg, inputs):
        return cfg.step  # ceil((stop - start) / step) grows by one every step positions

    def label(self, cfg, inputs):
        _, start, stop = self.window(cfg, inputs[0])
        step = f":{cfg.step}" if cfg.step != 1 else ""
        return f"slice dim {cfg.dim} [{start}:{stop}{step}]"


class IndexConfig(LayerConfig):
    type: Literal["index"]
    dim: int = Field(1, description="The dim indexed, dropped from the result. " + DIM_DOC)
    index: int = Field(description="The position taken (negative counts from the end): "
                                   "x[:, 0] is ViT's class token.")


@register
class Index(ShapeKind):
    """x.select(dim, index): one position of `dim`, the dim dropped (a copy)."""
    name = "index"
    Config = IndexConfig

    def taken(self, cfg, shape) -> int:
        axis = axis_of(cfg.dim, shape, "dim", "index along")
        if len(shape) == 1:
            raise ShapeProblem(f"index would leave no dims of a {fmt_shape(shape)} sample but the "
                               "batch", field="dim", hint="take a slice of one position instead: "
                               f"{{type: slice, dim: {cfg.dim}, start: {cfg.index}, stop: ...}}")
        position(cfg.index, shape[axis], "index", cfg.dim)
        return axis

    def output_shape(self, cfg, inputs):
        axis = self.taken(cfg, inputs[0])
        return inputs[0][:axis] + inputs[0][axis + 1:]

    def output_layout(self, cfg, inputs, layouts, output):
        axis = self.taken(cfg, inputs[0])
        features = feature_axis(layouts[0], len(inputs[0]))
        if features is not None and features != axis:
            features -= features > axis
        elif features is not None:
            features = None
        return placed_layout(layouts[0], features, len(output), "dim", "index")

    def label(self, cfg, inputs):
        return f"index dim {cfg.dim} [{cfg.index}]"


# ---- reshape, squeeze and unsqueeze ------------------------------------------------------

LAYOUT_FIELD = Field(None, description=(
    "The result's layout: channels_first, channels_last (or tokens); default: the input's (a "
    "vector reshaped to a map: channels_first)."))


class ReshapeConfig(LayerConfig):
    type: Literal["reshape"]
    shape: list[int] = Field(min_length=1, max_length=6, description=(
        "The shape of each sample, without the batch (x.reshape(N, *shape)); one entry may be "
        "-1, inferred."))
    layout: Literal["channels_first", "channels_last", "tokens"] | None = LAYOUT_FIELD

    field_hints: ClassVar[dict[str, str]] = {
        "target_shape": "Keras' target_shape is shape here (each sample's shape, no batch)"}


@register
class Reshape(ShapeKind):
    """x.reshape(N, *shape): a view of its contiguous input."""
    name = "reshape"
    Config = ReshapeConfig

    def output_shape(self, cfg, inputs):
        shape, size = inputs[0], shapes.product(inputs[0])
        if any(n == 0 or n < -1 for n in cfg.shape) or cfg.shape.count(-1) > 1:
            raise ShapeProblem(f"shape {cfg.shape} may hold sizes of 1 or more and a single -1",
                               field="shape", hint="give each dim's size; -1 once for the one "
                                                   "to infer")
        known = shapes.product(n for n in cfg.shape if n != -1)
        target = tuple(size // known if n == -1 else n for n in cfg.shape)
        if shapes.product(target) != size:
            wanted = "a multiple of " + str(known) if -1 in cfg.shape else str(known)
            raise ShapeProblem(f"reshape to {fmt_shape(tuple(cfg.shape))} needs {wanted} values "
                               f"per sample but the input {fmt_shape(shape)} has {size}",
                               field="shape", hint=f"give a shape whose sizes multiply to {size} "
                                                   f"(e.g. [{', '.join(map(str, shape))}]), or "
                                                   "-1 for one of them")
        return target

    def output_layout(self, cfg, inputs, layouts, output):
        given = {"tokens": "channels_last"}.get(cfg.layout, cfg.layout)
        if given and (layouts[0] == "ids" or len(output) == 1):
            what = "token ids" if layouts[0] == "ids" else "a vector"
            raise ShapeProblem(f"layout: {cfg.layout} does not fit the result, {what} of "
                               f"{fmt_shape(output)}", field="layout", hint="remove layout")
        if layouts[0] == "ids" or len(output) == 1:
            return placed_layout(layouts[0], 0, len(output), "shape", "reshape")
        return given or ("channels_first" if layouts[0] == "vector" else layouts[0])

    def rf_steps(self, cfg, inputs):
        same = self.output_shape(cfg, inputs) == tuple(inputs[0]) and len(inputs[0]) > 1
        return [RFStep(1, 1, 0)] * (len(inputs[0]) - 1) if same else None

    def aliases_input(self, cfg, inputs, training):
        return True

    def label(self, cfg, inputs):
        return f"reshape {fmt_shape(self.output_shape(cfg, inputs))}"


class SqueezeConfig(LayerConfig):
    type: Literal["squeeze"]
    dim: int | None = Field(None, description=(
        "The size-1 dim removed; default: every size-1 dim of a sample. " + DIM_DOC))


@register
class Squeeze(ShapeKind):
    """x.squeeze(dim): a view of its input without a size-1 dim."""
    name = "squeeze"
    Config = SqueezeConfig

    def removed(self, cfg, shape) -> tuple[int, ...]:
        if cfg.dim is None:
            gone = tuple(axis for axis, n in enumerate(shape) if n == 1)
        else:
            axis = axis_of(cfg.dim, shape, "dim", "squeeze")
            if shape[axis] != 1:
                raise ShapeProblem(f"squeeze of dim {cfg.dim} of {fmt_shape(shape)}, of size "
                                   f"{shape[axis]}: only a dim of size 1 can go",
                                   field="dim", hint="name a dim of size 1, or reshape (a "
                                                     "flatten merges dims)")
            gone = (axis,)
        if len(gone) == len(shape):
            raise ShapeProblem(f"squeeze would leave no dims of a {fmt_shape(shape)} sample but "
                               "the batch", field="dim",
                               hint="keep one dim: name the dim to remove")
        return gone

    def output_shape(self, cfg, inputs):
        gone = self.removed(cfg, inputs[0])
        return tuple(n for axis, n in enumerate(inputs[0]) if axis not in gone)

    def output_layout(self, cfg, inputs, layouts, output):
        gone = self.removed(cfg, inputs[0])
        axis = feature_axis(layouts[0], len(inputs[0]))
        if axis is not None:
            axis = None if axis in gone else axis - sum(a < axis for a in gone)
        return placed_layout(layouts[0], axis, len(output), "dim", "squeeze")

    def rf_steps(self, cfg, inputs):
        kept = not self.removed(cfg, inputs[0]) and len(inputs[0]) > 1
        return [RFStep(1, 1, 0)] * (len(inputs[0]) - 1) if kept else None

    def aliases_input(self, cfg, inputs, training):
        return True

    def label(self, cfg, inputs):
        return "squeeze" if cfg.dim is None else f"squeeze dim {cfg.dim}"


class UnsqueezeConfig(LayerConfig):
    type: Literal["unsqueeze"]
    dim: int = Field(description="Where the new size-1 dim goes, in the result's dims "
                                 "(x.unsqueeze(dim)). " + DIM_DOC)


@register
class Unsqueeze(ShapeKind):
    """x.unsqueeze(dim): a view of its input with a new size-1 dim."""
    name = "unsqueeze"
    Config = UnsqueezeConfig

    def inserted(self, cfg, shape) -> int:
        return axis_of(cfg.dim, shape, "dim", "unsqueeze at", extra=1)

    def output_shape(self, cfg, inputs):
        axis = self.inserted(cfg, inputs[0])
        return inputs[0][:axis] + (1,) + inputs[0][axis:]

    def output_layout(self, cfg, inputs, layouts, output):
        axis, features = self.inserted(cfg, inputs[0]), feature_axis(layouts[0], len(inputs[0]))
        if features is not None:
            features += axis <= features
        try:
            return placed_layout(layouts[0], features, len(output), "dim", "unsqueeze")
        except ShapeProblem as problem:
            problem.hint = (f"{problem.hint}; to make the channels a positional axis of a map "
                            f"with one channel, reshape with layout: channels_first")
            raise

    def aliases_input(self, cfg, inputs, training):
        return True

    def label(self, cfg, inputs):
        return f"unsqueeze dim {cfg.dim}"
