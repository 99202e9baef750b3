"""The PyTorch lowering of every layer kind: one function per kind (LOWERING, keyed by the
kind's name) that builds the torch module from the layer's config and the shapes the analysis
resolved, with the kind's own geometry helpers (per-dim kernel, strides, paddings). Layer kinds
know nothing of torch; another back end keeps a table like this one."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from ...layers.base import Shape, per_dim, sample_axis
from ...layers.conv import is_symmetric, torch_pad_args
from . import modules as tm

# (kind, config, input shapes, output shape) -> the layer's torch module
Lowering = Callable[[Any, Any, list[Shape], Shape], nn.Module]
LOWERING: dict[str, Lowering] = {}


def lowers(*names: str):
    def add(function: Lowering) -> Lowering:
        for name in names:
            LOWERING[name] = function
        return function
    return add


def lower(kind, cfg, inputs: list[Shape], output: Shape) -> nn.Module:
    """The torch module of one layer."""
    return LOWERING[kind.name](kind, cfg, inputs, output)


def load_literals(module: nn.Module, cfg) -> nn.Module:
    """Copy literal weight/bias values written in the spec into a freshly built module."""
    with torch.no_grad():
        if getattr(cfg, "weight", None) is not None:
            module.weight.copy_(torch.tensor(cfg.weight, dtype=module.weight.dtype)
                                .reshape(module.weight.shape))
        if isinstance(getattr(cfg, "bias", None), list):
            module.bias.copy_(torch.tensor(cfg.bias, dtype=module.bias.dtype))
    return module


@lowers("conv", "depthwise_conv")
def conv(kind, cfg, inputs, output):
    if kind.name == "depthwise_conv":
        cfg = kind.as_conv(cfg, inputs)
    shape = inputs[0]
    kernel, stride, dilation, pads = kind.geometry(cfg, shape)
    symmetric = is_symmetric(pads)
    module = tm.conv_class(len(kernel))(
        shape[0], cfg.out_channels, kernel, stride=stride,
        padding=tuple(lo for lo, _ in pads) if symmetric else 0, dilation=dilation,
        groups=cfg.groups, bias=cfg.bias is not False,
        padding_mode=cfg.padding_mode if symmetric else "zeros")
    if not symmetric:
        module = tm.padded(module, torch_pad_args(pads), cfg.padding_mode)
    return load_literals(module, cfg)


@lowers("conv_transpose")
def conv_transpose(kind, cfg, inputs, output):
    kernel, stride, pad, out_pad, dilation = kind.geometry(cfg, inputs[0])
    module = tm.tight(tm.conv_transpose_class(len(kernel)))(
        inputs[0][0], cfg.out_channels, kernel, stride=stride, padding=pad,
        output_padding=out_pad, groups=cfg.groups, bias=cfg.bias is not False, dilation=dilation)
    return load_literals(module, cfg)


@lowers("dense")
def dense(kind, cfg, inputs, output):
    return load_literals(nn.Linear(inputs[0][-1], cfg.out_features, bias=cfg.bias is not False),
                         cfg)


@lowers("flatten")
def flatten(kind, cfg, inputs, output):
    return nn.Flatten(cfg.start_dim, cfg.end_dim)


@lowers("permute", "transpose")
def reorder(kind, cfg, inputs, output):
    order = kind.order(cfg, inputs[0])
    return tm.Reorder((0, *(a + 1 for a in order)), copy=not kind.aliases_input(cfg, inputs, True))


@lowers("reshape")
def reshape(kind, cfg, inputs, output):
    return tm.Reshape(tuple(output))


@lowers("squeeze")
def squeeze(kind, cfg, inputs, output):
    gone = tuple(axis + 1 for axis in kind.removed(cfg, inputs[0]))
    return tm.Squeeze(gone[0] if len(gone) == 1 else gone)


@lowers("unsqueeze")
def unsqueeze(kind, cfg, inputs, output):
    return tm.Squeeze(kind.inserted(cfg, inputs[0]) + 1, unsqueeze=True)


@lowers("slice")
def take_slice(kind, cfg, inputs, output):
    axis, start, stop = kind.window(cfg, inputs[0])
    return tm.Take(axis + 1, start, stop, cfg.step)


@lowers("index")
def index(kind, cfg, inputs, output):
    axis = kind.taken(cfg, inputs[0])
    return tm.Take(axis + 1, cfg.index % inputs[0][axis])


@lowers("max_pool", "avg_pool")
def pool(kind, cfg, inputs, output):
    kernel, stride, dilation, pads = kind.geometry(cfg, inputs[0])
    pads_itself = kind.pads_itself(cfg, inputs[0])
    extra = {"dilation": dilation} if kind.op == "maxpool" else \
        {"count_include_pad": cfg.count_include_pad or not pads_itself}
    module = tm.pool_class(kind.op, len(kernel))(
        kernel, stride=stride, padding=tuple(lo for lo, _ in pads) if pads_itself else 0,
        ceil_mode=cfg.ceil_mode, **extra)
    if pads_itself:
        return module
    fill = float("-inf") if kind.op == "maxpool" else 0.0
    exclude = kind.op == "avgpool" and not cfg.count_include_pad
    return tm.padded(module, torch_pad_args(pads), "zeros", fill, exclude_pad=exclude)


@lowers("adaptive_avg_pool", "adaptive_max_pool")
def adaptive_pool(kind, cfg, inputs, output):
    return tm.adaptive_pool_class(kind.op, len(output) - 1)(tuple(output[1:]))


@lowers("global_avg_pool", "global_max_pool")
def global_pool(kind, cfg, inputs, output):
    return tm.GlobalPool(kind.op, len(inputs[0]) - 1)


@lowers("batch_norm")
def batch_norm(kind, cfg, inputs, output):
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d, 4: nn.BatchNorm3d}
    return cls[len(inputs[0])](inputs[0][0], eps=cfg.eps, momentum=cfg.momentum,
                               affine=cfg.affine, track_running_stats=cfg.track_running_stats)


@lowers("prelu")
def prelu(kind, cfg, inputs, output):
    return nn.PReLU(cfg.num_parameters, init=cfg.init)


@lowers("group_norm")
def group_norm(kind, cfg, inputs, output):
    return nn.GroupNorm(cfg.num_groups, inputs[0][0], eps=cfg.eps, affine=cfg.affine)


@lowers("instance_norm")
def instance_norm(kind, cfg, inputs, output):
    cls = {2: nn.InstanceNorm1d, 3: nn.InstanceNorm2d, 4: nn.InstanceNorm3d}[len(inputs[0])]
    return cls(inputs[0][0], eps=cfg.eps, momentum=cfg.momentum, affine=cfg.affine,
               track_running_stats=cfg.track_running_stats)


@lowers("pad")
def pad(kind, cfg, inputs, output):
    """Every spatial dim listed (F.pad's order, last dim first), so every mode takes it."""
    pads = tuple(v for lo_hi in reversed(kind.pairs(cfg, inputs[0])) for v in lo_hi)
    nd = len(inputs[0]) - 1
    if cfg.mode == "constant":
        return tm.constant_pad_class(nd)(pads, float(cfg.value or 0.0))
    return tm.pad_class(cfg.mode, nd)(pads)


@lowers("pixel_shuffle")
def pixel_shuffle(kind, cfg, inputs, output):
    return nn.PixelShuffle(cfg.upscale_factor)


@lowers("pixel_unshuffle")
def pixel_unshuffle(kind, cfg, inputs, output):
    return nn.PixelUnshuffle(cfg.downscale_factor)


@lowers("channel_shuffle")
def channel_shuffle(kind, cfg, inputs, output):
    return nn.ChannelShuffle(cfg.groups)


@lowers("local_response_norm")
def local_response_norm(kind, cfg, inputs, output):
    return nn.LocalResponseNorm(cfg.size, alpha=cfg.alpha, beta=cfg.beta, k=cfg.k)


@lowers("dropout")
def dropout(kind, cfg, inputs, output):
    return nn.Dropout(cfg.p)


@lowers("stochastic_depth")
def stochastic_depth(kind, cfg, inputs, output):
    return tm.StochasticDepth(cfg.p, cfg.mode)


@lowers("upsample")
def upsample(kind, cfg, inputs, output):
    if cfg.size is not None:
        return nn.Upsample(size=tuple(output[1:]), mode=cfg.mode, align_corners=cfg.align_corners)
    scale = per_dim(cfg.scale_factor, len(inputs[0]) - 1, "scale_factor")
    return nn.Upsample(scale_factor=tuple(float(s) for s in scale), mode=cfg.mode,
                       align_corners=cfg.align_corners)


@lowers("relu", "leaky_relu", "relu6", "elu", "gelu", "silu", "swish", "mish", "softplus",
        "hardswish", "hardsigmoid", "sigmoid", "tanh", "softmax", "log_softmax", "identity")
def activation(kind, cfg, inputs, output):
    extra = cfg.model_dump(exclude={"type", "name", "from_", "trainable"})
    return getattr(nn, kind.torch_name)(**extra)  # dim counts as in PyTorch


@lowers("concat")
def concat(kind, cfg, inputs, output):
    return tm.Concat(sample_axis(cfg.dim, inputs[0], "concat", "") + 1)


@lowers("add")
def add(kind, cfg, inputs, output):
    return tm.Add()


@lowers("multiply")
def multiply(kind, cfg, inputs, output):
    return tm.Multiply()


@lowers("projection")
def projection(kind, cfg, inputs, output):
    return tm.Projection(inputs[0][0], output[0], kind.strides(inputs), cfg.norm)


@lowers("multi_head_attention")
def multi_head_attention(kind, cfg, inputs, output):
    _, _, embed, kdim, vdim = kind.dims(cfg, inputs)
    return tm.Attention(embed, cfg.num_heads, dropout=cfg.dropout, bias=cfg.bias, kdim=kdim,
                        vdim=vdim, causal=cfg.causal)


@lowers("transformer_encoder_layer")
def transformer_encoder_layer(kind, cfg, inputs, output):
    return tm.EncoderLayer(
        causal=cfg.causal, d_model=inputs[0][-1], nhead=cfg.nhead,
        dim_feedforward=cfg.dim_feedforward, dropout=cfg.dropout, activation=cfg.activation,
        layer_norm_eps=cfg.layer_norm_eps, norm_first=cfg.norm_first, bias=cfg.bias)


@lowers("lstm", "gru")
def recurrent(kind, cfg, inputs, output):
    cls = tm.LSTM if kind.name == "lstm" else tm.GRU
    extra = {"proj_size": cfg.proj_size} if kind.name == "lstm" else {}
    return cls(inputs[0][-1], cfg.hidden_size, num_layers=cfg.num_layers, bias=cfg.bias,
               dropout=cfg.dropout, bidirectional=cfg.bidirectional, last=cfg.steps == "last",
               **extra)


@lowers("layer_norm")
def layer_norm(kind, cfg, inputs, output):
    cls = tm.ChannelsFirstLayerNorm if cfg.channels_first else nn.LayerNorm
    return cls(kind.normalized(cfg, inputs[0]), eps=cfg.eps,
               elementwise_affine=cfg.elementwise_affine, bias=cfg.bias)


@lowers("parameter")
def parameter(kind, cfg, inputs, output):
    tensor = torch.zeros((1,) + kind.tensor_shape(cfg, inputs[0]))
    if cfg.init == "normal":
        nn.init.normal_(tensor, std=cfg.std)
    dim = sample_axis(cfg.dim, inputs[0], "prepend", "") + 1 if cfg.mode == "prepend" else 1
    return tm.DirectOp(cfg.mode, nn.Parameter(tensor), dim)


@lowers("layer_scale")
def layer_scale(kind, cfg, inputs, output):
    return tm.DirectOp("scale", nn.Parameter(torch.full(kind.tensor_shape(cfg, inputs[0]),
                                                        float(cfg.init))))


@lowers("embedding")
def embedding(kind, cfg, inputs, output):
    return nn.Embedding(cfg.num_embeddings, cfg.embedding_dim, padding_idx=cfg.padding_idx)
