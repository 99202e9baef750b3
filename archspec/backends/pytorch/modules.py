"""Small torch modules and class lookups the layer builders use. Imports torch: load lazily."""
from __future__ import annotations

from functools import cache

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_class(ndim: int) -> type[nn.Module]:
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]


def conv_transpose_class(ndim: int) -> type[nn.Module]:
    return {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[ndim]


@cache
def tight(base: type[nn.Module]) -> type[nn.Module]:
    """Subclass whose output never sits in a larger buffer: PyTorch's native 3-D transposed
    conv (every dtype but float32, and float32 on one thread) returns its output inside a
    buffer as large as its input; a copy keeps the layer's output memory its own size."""

    def forward(self, *args):
        out = base.forward(self, *args)
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            return out  # a traced graph has no storages to measure (and plans its own buffers)
        return out.clone() if out.untyped_storage().nbytes() > out.nbytes else out

    return type(base.__name__, (base,), {"forward": forward})


def pool_class(op: str, ndim: int) -> type[nn.Module]:
    return getattr(nn, {"maxpool": "MaxPool", "avgpool": "AvgPool"}[op] + f"{ndim}d")


def adaptive_pool_class(op: str, ndim: int) -> type[nn.Module]:
    return getattr(nn, {"max": "AdaptiveMaxPool", "avg": "AdaptiveAvgPool"}[op] + f"{ndim}d")


def constant_pad_class(ndim: int) -> type[nn.Module]:
    return getattr(nn, f"ConstantPad{ndim}d")


def pad_class(mode: str, ndim: int) -> type[nn.Module]:
    """nn.ReflectionPad / ReplicationPad / CircularPad of that many spatial dims."""
    return getattr(nn, {"reflect": "ReflectionPad", "replicate": "ReplicationPad",
                        "circular": "CircularPad"}[mode] + f"{ndim}d")


@cache
def _padded_class(base: type[nn.Module]) -> type[nn.Module]:
    """Subclass of a conv/pool that pads explicitly first (asymmetric 'same' padding), keeping
    the base's parameter names so state dicts stay plain."""

    def pad(self, x):
        if self.explicit_pad_mode == "constant":
            return F.pad(x, self.explicit_padding, value=self.explicit_pad_value)
        return F.pad(x, self.explicit_padding, mode=self.explicit_pad_mode)

    def forward(self, x):
        out = base.forward(self, pad(self, x))
        if self.explicit_exclude_pad:  # average over real inputs only: divide by their share
            out = out / base.forward(self, pad(self, torch.ones_like(x[:1, :1])))
        return out

    def extra_repr(self):
        return base.extra_repr(self) + f", explicit_padding={self.explicit_padding}"

    return type(f"Padded{base.__name__}", (base,), {"forward": forward, "extra_repr": extra_repr})


def padded(module: nn.Module, pads: tuple[int, ...], padding_mode: str,
           value: float = 0.0, exclude_pad: bool = False) -> nn.Module:
    """Pad explicitly before the module; exclude_pad: an average pool that ignores the zeros."""
    module.__class__ = _padded_class(type(module))
    module.explicit_exclude_pad = exclude_pad
    module.explicit_padding = pads
    module.explicit_pad_mode = "constant" if padding_mode == "zeros" else padding_mode
    module.explicit_pad_value = value
    return module


class GlobalPool(nn.Module):
    """[N, C, ...] -> [N, C]: mean or max over every spatial position."""

    def __init__(self, op: str, ndim: int):
        super().__init__()
        self.op, self.dims = op, tuple(range(2, 2 + ndim))

    def forward(self, x):
        return x.mean(self.dims) if self.op == "avg" else x.amax(self.dims)

    def extra_repr(self):
        return self.op


class Concat(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, *xs):
        return torch.cat(xs, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Add(nn.Module):
    """The sum of the inputs; inplace: into the first (the analysis decides where that is
    safe), else into a new tensor."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, *xs):
        out = xs[0] if self.inplace else xs[0] + xs[1]
        for x in xs[1 if self.inplace else 2:]:
            out += x
        return out

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Multiply(nn.Module):
    def forward(self, *xs):
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Projection(nn.Module):
    """Residual shortcut; the second input (body output) only fixed the shape at compile time."""

    def __init__(self, c_in: int, c_out: int, strides: tuple[int, ...] | None, norm: bool):
        super().__init__()
        if strides is None:
            self.conv = None
            return
        self.conv = conv_class(len(strides))(c_in, c_out, 1, stride=strides, bias=not norm)
        self.bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[len(strides)](c_out) \
            if norm else None

    def forward(self, x, _shape_reference=None):
        if self.conv is None:
            return x
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x


class Attention(nn.MultiheadAttention):
    """nn.MultiheadAttention (batch_first) called as layer(query[, key[, value]]): keys and values
    default to the query (self-attention), the value to the key; returns the output alone (no
    weights, so PyTorch may take its fused kernels). The state_dict is nn.MultiheadAttention's."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 kdim: int | None = None, vdim: int | None = None, causal: bool = False):
        super().__init__(embed_dim, num_heads, dropout=dropout, bias=bias, kdim=kdim, vdim=vdim,
                         batch_first=True)
        self.bias, self.add_bias_kv, self.causal = bias, False, causal  # constructor arguments

    def forward(self, query, key=None, value=None):
        key = query if key is None else key
        value = key if value is None else value
        mask = causal_mask(query.shape[1], query.device) if self.causal else None
        output = super().forward(query, key, value, need_weights=False, attn_mask=mask,
                                 is_causal=self.causal)[0]
        # PyTorch's output is a batch-first view of a sequence-first [L, N, E] storage: a layer
        # reading it twice (two attentions, or a query and a memory) would share one "copy" of
        # it. Contiguous, every later layer sees the layout its memory rule states.
        return output.contiguous()

    def extra_repr(self):
        return "causal=True" if self.causal else ""


def causal_mask(length: int, device) -> torch.Tensor:
    """True above the diagonal: position i may not attend to j > i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


class EncoderLayer(nn.TransformerEncoderLayer):
    """nn.TransformerEncoderLayer (batch_first) called as layer(x), with the causal mask made
    for the input's length when causal; keeps its constructor arguments for the export."""

    def __init__(self, causal: bool = False, **arguments):
        super().__init__(**arguments, batch_first=True)
        self.causal, self.arguments = causal, arguments

    def forward(self, src):
        mask = causal_mask(src.shape[1], src.device) if self.causal else None
        return super().forward(src, src_mask=mask, is_causal=self.causal)

    def extra_repr(self):
        return "causal=True" if self.causal else ""


class _RecurrentMixin:
    """nn.LSTM / nn.GRU (batch_first) called as layer(x) on [N, L, D]: hands on every step's
    output [N, L, H * directions] or, with `last`, h_n of the last layer with both directions
    concatenated [N, H * directions]; the state_dict is PyTorch's."""

    def forward(self, x):
        if torch.is_grad_enabled() and not (torch.compiler.is_compiling()
                                            or torch.compiler.is_exporting()):
            # oneDNN's LSTM keeps a workspace whose size depends on the processor: ATen's own
            # CPU kernel keeps what archspec's memory rule states (oneDNN still runs inference)
            enabled = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
            try:
                output, state = super().forward(x)
            finally:
                torch.backends.mkldnn.enabled = enabled
        else:
            output, state = super().forward(x)
        if not self.last:
            return output.contiguous()  # the kernel works sequence-first: [L, N, H] underneath
        h_n = state[0] if isinstance(state, tuple) else state
        directions = 2 if self.bidirectional else 1
        return torch.cat([h_n[i] for i in range(-directions, 0)], dim=1)

    def extra_repr(self):
        return super().extra_repr() + (", steps=last" if self.last else "")


class LSTM(_RecurrentMixin, nn.LSTM):
    def __init__(self, *args, last: bool = False, **kwargs):
        super().__init__(*args, batch_first=True, **kwargs)
        self.last = last


class GRU(_RecurrentMixin, nn.GRU):
    def __init__(self, *args, last: bool = False, **kwargs):
        super().__init__(*args, batch_first=True, **kwargs)
        self.last = last


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """Layer norm over dim 1 of [N, C, ...] (ConvNeXt's LayerNorm2d): channels moved last,
    normalized, moved back; weight and bias [C] as nn.LayerNorm's."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class DirectOp(nn.Module):
    """The op of a layer whose one learned tensor is registered on the enclosing block's module
    under the layer's name (the compiler moves `tensor` there and passes it as the second
    argument). Built alone (a test, one layer) it holds the tensor itself."""

    def __init__(self, op: str, tensor: torch.Tensor, dim: int = 1):
        super().__init__()
        self.op, self.dim = op, dim
        self.tensor: torch.Tensor | None = tensor  # taken by the compiler

    def forward(self, x, tensor=None):
        tensor = self.tensor if tensor is None else tensor
        if self.op == "add":
            return x + tensor
        if self.op == "scale":
            return tensor * x
        return torch.cat([tensor.expand(x.shape[0], *tensor.shape[1:]), x], self.dim)

    def extra_repr(self):
        return self.op


class StochasticDepth(nn.Module):
    """Drop path as torchvision.ops.StochasticDepth(p, mode) computes it (same random draws):
    in training, input * a Bernoulli(1 - p) noise of shape [N, 1, ...] (row) or [1, 1, ...]
    (batch), divided by 1 - p; the input itself in eval or with p = 0."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0] if self.mode == "row" else 1] + [1] * (x.dim() - 1)
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode}"


class Reorder(nn.Module):
    """x.permute(dims) (a transpose is one); `copy`: into a new contiguous tensor, as the
    analysis counts it when axes larger than 1 change order."""

    def __init__(self, dims: tuple[int, ...], copy: bool):
        super().__init__()
        self.dims, self.copy = dims, copy

    def forward(self, x):
        x = x.permute(self.dims)
        return x.clone(memory_format=torch.contiguous_format) if self.copy else x

    def extra_repr(self):
        return f"dims={self.dims}" + (", copy=True" if self.copy else "")


class Reshape(nn.Module):
    """x.reshape to a per-sample shape (-1 resolved), the batch kept."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self):
        return f"shape={self.shape}"


class Squeeze(nn.Module):
    """x.squeeze(dims) (unsqueeze: x.unsqueeze(dim)); dims count the batch, which a squeeze
    never names (a batch of one stays a batch)."""

    def __init__(self, dim: int | tuple[int, ...], unsqueeze: bool = False):
        super().__init__()
        self.dim, self.unsqueeze = dim, unsqueeze

    def forward(self, x):
        return x.unsqueeze(self.dim) if self.unsqueeze else x.squeeze(self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Take(nn.Module):
    """x[:, ..., start:stop:step] along dim (index: x.select(dim, index)), copied into a new
    contiguous tensor whatever the batch size, as the analysis counts it."""

    def __init__(self, dim: int, start: int, stop: int | None = None, step: int = 1):
        super().__init__()
        self.dim, self.start, self.stop, self.step = dim, start, stop, step

    def forward(self, x):
        if self.stop is None:
            part = x.select(self.dim, self.start)
        else:
            part = x[(slice(None),) * self.dim + (slice(self.start, self.stop, self.step),)]
        return part.clone(memory_format=torch.contiguous_format)

    def extra_repr(self):
        return f"dim={self.dim}, start={self.start}, stop={self.stop}, step={self.step}"
