"""Map kinds against PyTorch: stochastic_depth (torchvision's StochasticDepth, written here from
its documented algorithm: torchvision is not a dependency), group_norm, instance_norm, pad,
pixel_shuffle / pixel_unshuffle, channel_shuffle, and the activations mish, swish, softplus and
prelu. Each spec is compiled and compared with the PyTorch module of the same settings: output
shape, params, buffers, state_dict keys and shapes, outputs on the same weights, and MACs as
FlopCounterMode counts them."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.backends.verify import mismatches
from archspec.errors import SpecError


def spec(input_, *layers) -> archspec.Analysis:
    text = f"name: t\ninput: {json.dumps(input_)}\nlayers:\n" + \
        "".join(f"  - {json.dumps(layer)}\n" for layer in layers)
    return archspec.analyze(archspec.loads(text))


def only_error(text: str):
    with pytest.raises(SpecError) as caught:
        archspec.analyze(archspec.loads(text, filename="spec.yaml"))
    errors = [d for d in caught.value.diagnostics if d.severity == "error"]
    assert len(errors) == 1, [d.format() for d in errors]
    return errors[0]


def flop_macs(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2 // x.shape[0]


class Named(nn.Module):
    """One PyTorch module under a layer name, as the compiled model holds it."""

    def __init__(self, name: str, module: nn.Module):
        super().__init__()
        self.add_module(name, module)
        self.name = name

    def forward(self, x):
        return getattr(self, self.name)(x)


def same_as(analysis: archspec.Analysis, reference: nn.Module, x: torch.Tensor) -> None:
    """Output shape, state_dict keys and shapes, params, buffers, outputs on the reference's
    weights (eval and train) and MACs agree with the reference module."""
    model = archspec.compile(analysis.network)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in theirs.items()]
    assert analysis.params == sum(p.numel() for p in reference.parameters())
    assert analysis.buffers == sum(b.numel() for b in reference.buffers())
    with torch.no_grad():
        for tensor in theirs.values():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
    model.load_state_dict(theirs)
    for mode in ("eval", "train"):
        getattr(model, mode)(), getattr(reference, mode)()
        with torch.no_grad():
            want = reference(x)
            assert tuple(want.shape[1:]) == analysis.layers[list(analysis.layers)[-1]].output_shape
            torch.testing.assert_close(model(x), want)
    model.eval(), reference.eval()
    assert analysis.macs == flop_macs(reference, x) == flop_macs(model, x)
    assert mismatches(analysis) == []


# ---- stochastic_depth -------------------------------------------------------------------------

def drop_path(x: torch.Tensor, p: float, mode: str, training: bool) -> torch.Tensor:
    """torchvision.ops.stochastic_depth as its documentation and source describe it: a
    Bernoulli(1 - p) noise of shape [N, 1, ...] (row) or [1, ...] (batch), divided by the
    survival rate when that is not 0; the input itself in eval or with p = 0."""
    if not training or p == 0.0:
        return x
    survival = 1.0 - p
    size = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
    if survival > 0.0:
        noise.div_(survival)
    return x * noise


@pytest.mark.parametrize("p, mode, shape", [(0.2, "row", (4, 5, 5)), (0.5, "batch", (3, 6)),
                                            (0.0, "row", (8,)), (1.0, "row", (2, 3, 3)),
                                            (0.7, "batch", (2, 3, 3, 3))])
def test_stochastic_depth_draws_what_torchvision_draws_and_is_the_identity_in_eval(p, mode, shape):
    analysis = spec(list(shape), {"type": "stochastic_depth", "name": "sd", "p": p, "mode": mode})
    info = analysis.layers["sd"]
    assert (info.output_shape, info.params, info.buffers, info.macs) == (shape, 0, 0, 0)
    assert info.label == f"stochastic depth {p:g} ({mode})"
    model = archspec.compile(analysis.network)
    assert model.state_dict() == {}
    x = torch.randn(16, *shape)
    model.eval()
    assert model(x) is x or torch.equal(model(x), x)
    model.train()
    torch.manual_seed(3)
    got = model(x)
    torch.manual_seed(3)
    torch.testing.assert_close(got, drop_path(x, p, mode, training=True))
    assert mismatches(analysis) == []


def test_stochastic_depth_in_row_mode_keeps_or_drops_whole_samples():
    analysis = spec([3, 4, 4], {"type": "stochastic_depth", "p": 0.5})
    model = archspec.compile(analysis.network).train()
    x = torch.ones(64, 3, 4, 4)
    out = model(x)
    per_sample = out.flatten(1)
    assert all(len(set(row.tolist())) == 1 for row in per_sample)
    assert set(per_sample[:, 0].tolist()) == {0.0, 2.0}  # dropped, or scaled by 1 / (1 - p)


def test_stochastic_depth_p_out_of_range_is_located():
    d = only_error("name: t\ninput: [3, 8, 8]\nlayers:\n"
                   "  - {type: stochastic_depth, p: 1.5}\n")
    assert (d.line, d.column) == (4, 33) and "p" in d.message


def test_stochastic_depth_needs_p_and_a_known_mode():
    d = only_error("name: t\ninput: [3, 8, 8]\nlayers:\n  - {type: stochastic_depth}\n")
    assert "p" in d.message and d.line == 4
    d = only_error("name: t\ninput: [3, 8, 8]\nlayers:\n"
                   "  - {type: stochastic_depth, p: 0.1, mode: sample}\n")
    assert "mode" in d.message and (d.line, d.column) == (4, 44)  # at the value


# ---- group_norm and instance_norm --------------------------------------------------------------

@pytest.mark.parametrize("fields, shape", [
    ({"num_groups": 2}, (4, 5, 5)),
    ({"num_groups": 3, "eps": 0.001}, (6, 7)),
    ({"num_groups": 1, "affine": False}, (4, 3, 3, 3)),
    ({"num_groups": 8}, (8,)),
    ({"num_groups": 4, "num_channels": 8}, (8, 4, 4)),
])
def test_group_norm_is_nn_group_norm(fields, shape):
    analysis = spec(list(shape), {"type": "group_norm", "name": "gn", **fields})
    options = {k: v for k, v in fields.items() if k in ("eps", "affine")}
    reference = Named("gn", nn.GroupNorm(fields["num_groups"], shape[0], **options))
    same_as(analysis, reference, torch.randn(3, *shape))
    assert analysis.params == (2 * shape[0] if fields.get("affine", True) else 0)
    keys = list(archspec.compile(analysis.network).state_dict())
    assert keys == (["gn.weight", "gn.bias"] if fields.get("affine", True) else [])


INSTANCE_NORMS = {2: nn.InstanceNorm1d, 3: nn.InstanceNorm2d, 4: nn.InstanceNorm3d}


@pytest.mark.parametrize("fields, shape", [
    ({}, (3, 6, 6)),
    ({"affine": True}, (4, 9)),
    ({"track_running_stats": True}, (2, 5, 5)),
    ({"affine": True, "track_running_stats": True, "momentum": 0.3}, (3, 3, 4, 4)),
    ({"eps": 0.01, "num_features": 2}, (2, 4, 4)),
])
def test_instance_norm_is_nn_instance_norm_of_the_input_rank(fields, shape):
    analysis = spec(list(shape), {"type": "instance_norm", "name": "inorm", **fields})
    options = {k: v for k, v in fields.items() if k != "num_features"}
    reference = Named("inorm", INSTANCE_NORMS[len(shape)](shape[0], **options))
    same_as(analysis, reference, torch.randn(2, *shape))
    keys = [k.split(".", 1)[1] for k in archspec.compile(analysis.network).state_dict()]
    want = (["weight", "bias"] if fields.get("affine") else []) + \
        (["running_mean", "running_var", "num_batches_tracked"]
         if fields.get("track_running_stats") else [])
    assert keys == want
    c = shape[0]
    assert analysis.buffers == (2 * c + 1 if fields.get("track_running_stats") else 0)


def test_instance_norm_keeps_running_averages_as_pytorch_does_in_training():
    analysis = spec([3, 4, 4], {"type": "instance_norm", "name": "inorm",
                                "track_running_stats": True})
    model = archspec.compile(analysis.network).train()
    reference = Named("inorm", nn.InstanceNorm2d(3, track_running_stats=True)).train()
    x = torch.randn(5, 3, 4, 4)
    model(x), reference(x)
    for (k, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)


def test_norms_over_every_position_have_no_receptive_field_and_say_so():
    analysis = spec([4, 8, 8], {"type": "group_norm", "name": "gn", "num_groups": 2},
                    {"type": "instance_norm", "name": "inorm"},
                    {"type": "instance_norm", "name": "tracked", "track_running_stats": True})
    assert analysis.layers["gn"].receptive_field is None
    assert any("every position" in note for note in analysis.layers["gn"].notes)
    assert any("every position" in note for note in analysis.layers["inorm"].notes)
    # running averages in eval: per position, but the field above is already gone
    assert analysis.layers["tracked"].notes == []
    tracked = spec([4, 8, 8], {"type": "instance_norm", "name": "tracked",
                               "track_running_stats": True})
    assert tracked.layers["tracked"].receptive_field.size == (1, 1)


def test_group_norm_groups_must_divide_the_channels_located():
    d = only_error("name: t\ninput: [6, 8, 8]\nlayers:\n  - {type: group_norm, num_groups: 4}\n")
    assert d.message == "num_groups 4 does not divide the 6 channels"
    assert (d.line, d.column) == (4, 36) and "one of 1, 2, 3, 6" in d.hint


def test_instance_norm_on_a_vector_is_refused_located():
    d = only_error("name: t\ninput: [6]\nlayers:\n  - {type: instance_norm}\n")
    assert "instance_norm needs a [C, L], [C, H, W] or [C, D, H, W] input" in d.message
    assert d.line == 4 and d.hint


def test_instance_norm_num_features_is_checked():
    d = only_error("name: t\ninput: [6, 5]\nlayers:\n"
                   "  - {type: instance_norm, num_features: 4}\n")
    assert d.message == "num_features is 4 but the incoming tensor has 6 channels"
    assert (d.line, d.column) == (4, 41)


# ---- pad --------------------------------------------------------------------------------------

class FPad(nn.Module):
    def __init__(self, pads, mode, value=None):
        super().__init__()
        self.pads, self.mode, self.value = pads, mode, value

    def forward(self, x):
        if self.mode == "constant":
            return nn.functional.pad(x, self.pads, value=self.value or 0.0)
        return nn.functional.pad(x, self.pads, mode=self.mode)


@pytest.mark.parametrize("fields, shape, pads", [
    ({"padding": 1}, (3, 5, 5), (1, 1, 1, 1)),
    ({"padding": [1, 2]}, (3, 5, 5), (1, 2)),  # the last dim only, as F.pad
    ({"padding": [1, 2, 0, 3], "value": -1.5}, (2, 4, 6), (1, 2, 0, 3)),
    ({"padding": [2, 1], "mode": "reflect"}, (2, 6), (2, 1)),
    ({"padding": [1, 0, 2, 3], "mode": "reflect"}, (2, 4, 4), (1, 0, 2, 3)),
    ({"padding": 3, "mode": "replicate"}, (2, 1, 2), (3, 3, 3, 3)),
    ({"padding": [1, 1, 0, 0, 2, 2], "mode": "replicate"}, (1, 3, 3, 3), (1, 1, 0, 0, 2, 2)),
    ({"padding": [4, 4], "mode": "circular"}, (2, 3, 4), (4, 4, 0, 0)),  # last dim only
    ({"padding": 2, "mode": "circular"}, (2, 3, 3, 3), (2,) * 6),
])
def test_pad_is_f_pad(fields, shape, pads):
    analysis = spec(list(shape), {"type": "pad", "name": "pad", **fields})
    reference = FPad(pads, fields.get("mode", "constant"), fields.get("value"))
    x = torch.randn(2, *shape)
    assert analysis.layers["pad"].output_shape == tuple(reference(x).shape[1:])
    same_as(analysis, Named("pad", reference), x)
    info = analysis.layers["pad"]
    assert (info.params, info.buffers, info.macs) == (0, 0, 0)


def test_pad_shifts_the_receptive_field_start_as_a_conv_padding_does():
    """A constant pad then a 3-tap conv: unit i reads padded positions i..i+2, that is input
    positions i-2..i (left pad 2); the field of the pad alone is one position, 2 before."""
    analysis = spec([1, 12], {"type": "pad", "name": "pad", "padding": [2, 0]},
                    {"type": "conv", "name": "conv", "out_channels": 1, "kernel_size": 3})
    assert analysis.layers["pad"].receptive_field.to_json() == \
        {"size": [1], "stride": [1], "padding": [2]}
    rf = analysis.layers["conv"].receptive_field
    assert (rf.size, rf.stride, rf.padding) == ((3,), (1,), (2,))
    model = archspec.compile(analysis.network).double()
    with torch.no_grad():
        model.conv.weight.fill_(1.0)
    for unit in (2, 5, 11):
        x = torch.ones(1, 1, 12, dtype=torch.float64, requires_grad=True)
        model(x)[0, 0, unit].backward()
        support = x.grad[0, 0].nonzero().flatten().tolist()
        start = unit * rf.stride[0] - rf.padding[0]
        assert support == list(range(start, start + rf.size[0]))


def test_reflect_pad_as_large_as_the_input_is_refused_located():
    d = only_error("name: t\ninput: [3, 4, 16]\nlayers:\n"
                   "  - {type: pad, padding: [2, 2, 4, 4], mode: reflect}\n")
    assert d.message.startswith("reflect padding 4 is too large for dim 2 of the input 3x4x16")
    assert (d.line, d.column) == (4, 26) and "at most 3" in d.hint
    with pytest.raises(RuntimeError, match="less than the corresponding input dimension"):
        nn.functional.pad(torch.randn(1, 3, 4, 16), (2, 2, 4, 4), mode="reflect")


def test_circular_pad_may_wrap_once_not_twice():
    spec([2, 5], {"type": "pad", "padding": [5, 0], "mode": "circular"})
    d = only_error("name: t\ninput: [2, 5]\nlayers:\n"
                   "  - {type: pad, padding: [6, 0], mode: circular}\n")
    assert "at most the size" in d.message and (d.line, d.column) == (4, 26)


def column_of(layer: str, value: str) -> int:
    """1-based column of `value` in the line '  - {layer}'."""
    return f"  - {layer}".index(value) + 1


@pytest.mark.parametrize("layer, at, message", [
    ("{type: pad, padding: [1, 2, 3]}", "[1, 2, 3]",
     "padding has 3 values but a 2-D map takes two per spatial dim (at most 4)"),
    ("{type: pad, padding: [1, 1, 1, 1, 1, 1]}", "[1, 1",
     "padding has 6 values but a 2-D map takes two per spatial dim (at most 4)"),
    ("{type: pad, padding: 1, mode: reflect, value: 2}", "2}",
     "value applies to mode constant only, not to 'reflect'"),
    ("{type: pad, padding: -1}", "-1",
     "padding must be a non-negative integer or a list of 2 to 6 non-negative integers"),
    ("{type: pad, padding: 1, mode: zeros}", "zeros", "mode must be one of 'constant', "
     "'reflect', 'replicate', 'circular' (got 'zeros')"),
])
def test_pad_mistakes_are_located(layer, at, message):
    d = only_error(f"name: t\ninput: [3, 8, 8]\nlayers:\n  - {layer}\n")
    assert message in d.message and (d.line, d.column) == (4, column_of(layer, at)) and d.hint


def test_pad_of_a_vector_is_refused():
    d = only_error("name: t\ninput: [8]\nlayers:\n  - {type: pad, padding: 1}\n")
    assert d.message == "pad needs a [C, L], [C, H, W] or [C, D, H, W] input, got [8]"
    assert d.line == 4 and d.hint


# ---- pixel_shuffle, pixel_unshuffle, channel_shuffle ------------------------------------------

@pytest.mark.parametrize("kind, factor, module, shape", [
    ("pixel_shuffle", 2, nn.PixelShuffle, (8, 3, 5)),
    ("pixel_shuffle", 3, nn.PixelShuffle, (18, 2, 2)),
    ("pixel_unshuffle", 2, nn.PixelUnshuffle, (3, 4, 6)),
    ("pixel_unshuffle", 3, nn.PixelUnshuffle, (1, 9, 3)),
])
def test_pixel_shuffles_are_pytorch_s(kind, factor, module, shape):
    field = "upscale_factor" if kind == "pixel_shuffle" else "downscale_factor"
    analysis = spec(list(shape), {"type": kind, "name": "ps", field: factor})
    same_as(analysis, Named("ps", module(factor)), torch.randn(2, *shape))
    c, h, w = shape
    r = factor
    assert analysis.layers["ps"].output_shape == (
        (c // (r * r), h * r, w * r) if kind == "pixel_shuffle" else (c * r * r, h // r, w // r))


def test_pixel_unshuffle_field_is_an_r_window_at_stride_r_and_shuffle_has_none():
    analysis = spec([1, 12, 12], {"type": "pixel_unshuffle", "name": "down",
                                  "downscale_factor": 3},
                    {"type": "conv", "name": "conv", "out_channels": 1, "kernel_size": 2})
    down = analysis.layers["down"].receptive_field
    assert (down.size, down.stride, down.padding) == ((3, 3), (3, 3), (0, 0))
    rf = analysis.layers["conv"].receptive_field
    assert (rf.size, rf.stride) == ((6, 6), (3, 3))
    model = archspec.compile(analysis.network).double()
    with torch.no_grad():
        model.conv.weight.fill_(1.0)
    for unit in ((0, 0), (1, 2), (2, 2)):
        x = torch.ones(1, 1, 12, 12, dtype=torch.float64, requires_grad=True)
        model(x)[0, 0, unit[0], unit[1]].backward()
        support = x.grad[0, 0].nonzero()
        for d in range(2):
            start = unit[d] * rf.stride[d] - rf.padding[d]
            assert (int(support[:, d].min()), int(support[:, d].max())) == \
                (start, start + rf.size[d] - 1)
    up = spec([8, 4, 4], {"type": "pixel_shuffle", "name": "up", "upscale_factor": 2})
    assert up.layers["up"].receptive_field is None  # a jump of 1/2 is no integer window


@pytest.mark.parametrize("groups, shape", [(2, (4, 3, 3)), (3, (6, 5)), (4, (8, 2, 2, 2)),
                                           (1, (5, 4, 4))])
def test_channel_shuffle_is_nn_channel_shuffle(groups, shape):
    analysis = spec(list(shape), {"type": "channel_shuffle", "name": "cs", "groups": groups})
    same_as(analysis, Named("cs", nn.ChannelShuffle(groups)), torch.randn(2, *shape))
    assert analysis.layers["cs"].receptive_field.size == (1,) * (len(shape) - 1)


@pytest.mark.parametrize("input_, layer, at, message", [
    ("[6, 8, 8]", "{type: pixel_shuffle, upscale_factor: 2}", "2}",
     "pixel_shuffle with upscale_factor 2 needs channels divisible by 2x2 = 4, but the input "
     "has 6"),
    ("[4, 6, 9]", "{type: pixel_unshuffle, downscale_factor: 2}", "2}",
     "pixel_unshuffle with downscale_factor 2 needs height and width divisible by 2, but the "
     "input is 4x6x9"),
    ("[6, 8, 8]", "{type: channel_shuffle, groups: 4}", "4}",
     "channel_shuffle groups 4 does not divide the 6 channels"),
    ("[8, 16]", "{type: pixel_shuffle, upscale_factor: 2}", "{",
     "pixel_shuffle needs a [C, H, W] map, got 8x16"),
])
def test_shuffle_mistakes_are_located(input_, layer, at, message):
    d = only_error(f"name: t\ninput: {input_}\nlayers:\n  - {layer}\n")
    assert d.message == message and (d.line, d.column) == (4, column_of(layer, at)) and d.hint


# ---- activations: mish, swish, softplus, prelu ------------------------------------------------

@pytest.mark.parametrize("layer, module", [
    ({"type": "mish"}, nn.Mish()),
    ({"type": "swish"}, nn.SiLU()),
    ({"type": "softplus"}, nn.Softplus()),
    ({"type": "softplus", "beta": 2.5, "threshold": 3.0}, nn.Softplus(beta=2.5, threshold=3.0)),
    ({"type": "prelu"}, nn.PReLU()),
    ({"type": "prelu", "num_parameters": 3, "init": 0.1}, nn.PReLU(3, init=0.1)),
])
@pytest.mark.parametrize("shape", [(3, 4, 4), (3, 7)])
def test_activations_are_pytorch_s(layer, module, shape):
    analysis = spec(list(shape), {**layer, "name": "act"})
    same_as(analysis, Named("act", module), torch.randn(2, *shape) * 5)
    compiled = dict(archspec.compile(analysis.network).named_modules())["act"]
    assert type(compiled) is type(module)  # swish is nn.SiLU itself
    assert analysis.layers["act"].label == ("prelu (per channel)" if layer.get("num_parameters")
                                            else layer["type"])


def test_swish_is_silu_under_its_own_name():
    analysis = spec([3, 4, 4], {"type": "conv", "out_channels": 3, "kernel_size": 1,
                                "activation": "swish"}, "silu")
    assert list(analysis.layers) == ["conv1", "swish1", "silu1"]
    model = archspec.compile(analysis.network)
    assert isinstance(model.swish1, nn.SiLU) and isinstance(model.silu1, nn.SiLU)


def test_prelu_has_pytorch_s_state_dict_and_learns_its_slope():
    analysis = spec([4, 5, 5], {"type": "prelu", "name": "act", "num_parameters": 4})
    model = archspec.compile(analysis.network)
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == [("act.weight", (4,))]
    assert torch.equal(model.act.weight, torch.full((4,), 0.25))
    assert analysis.params == analysis.trainable_params == 4
    model(torch.randn(2, 4, 5, 5)).sum().backward()
    assert model.act.weight.grad is not None
    frozen = spec([4, 5, 5], {"type": "prelu", "trainable": False})
    assert (frozen.params, frozen.trainable_params) == (1, 0)


def test_prelu_as_a_conv_activation():
    analysis = spec([3, 6, 6], {"type": "conv", "name": "conv", "out_channels": 4,
                                "kernel_size": 3, "activation": "prelu"})
    assert [i.type for i in analysis.layers.values()] == ["conv", "prelu"]
    assert analysis.params == 3 * 4 * 9 + 4 + 1


def test_prelu_num_parameters_must_be_one_or_the_channels_located():
    d = only_error("name: t\ninput: [6, 8, 8]\nlayers:\n  - {type: prelu, num_parameters: 4}\n")
    assert d.message == "num_parameters is 4 but prelu takes 1 or the input's 6 channels"
    assert (d.line, d.column) == (4, 35) and "num_parameters: 6" in d.hint  # at the 4


def test_per_channel_prelu_on_tokens_is_a_layout_error():
    d = only_error("name: t\ninput: {shape: [5, 6], layout: tokens}\nlayers:\n"
                   "  - {type: prelu, num_parameters: 6}\n")
    assert "channels-first" in d.message and d.line == 4


def test_softplus_beta_must_be_positive_located():
    d = only_error("name: t\ninput: [6, 8, 8]\nlayers:\n  - {type: softplus, beta: 0}\n")
    assert d.message == "beta must be a positive number (got 0)" and (d.line, d.column) == (4, 28)


def test_pad_label_lists_every_side_in_f_pad_order():
    analysis = spec([2, 6, 6], {"type": "pad", "name": "a", "padding": [1, 2]},
                    {"type": "pad", "name": "b", "padding": 2, "mode": "reflect"},
                    {"type": "pad", "name": "c", "padding": [0, 1, 1, 0], "value": 0.5})
    assert [analysis.layers[n].label for n in "abc"] == [
        "pad [1, 2, 0, 0] (constant)", "pad 2 (reflect)", "pad [0, 1, 1, 0] (constant 0.5)"]
