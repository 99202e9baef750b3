"""The shape kinds (flatten, permute, transpose, slice, index, reshape, squeeze, unsqueeze)
against the same torch op applied directly: output shape and values, no parameters, no MACs,
the layout each result takes, and the located errors; ConvNeXt's and ViT's patterns against
the same blocks written here in PyTorch, MACs as FlopCounterMode counts them."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.backends.verify import mismatches


def spec_text(input_, *layers) -> str:
    return f"name: t\ninput: {json.dumps(input_)}\nlayers:\n" + "".join(
        f"  - {json.dumps(layer) if isinstance(layer, dict) else layer}\n" for layer in layers)


def analyze(input_, *layers) -> archspec.Analysis:
    return archspec.analyze(archspec.loads(spec_text(input_, *layers)))


def the_error(input_, *layers):
    with pytest.raises(archspec.SpecError) as info:
        analyze(input_, *layers)
    (diagnostic,) = info.value.diagnostics
    return diagnostic


def runs_as(input_, layer: dict, op, shape, layout: str) -> archspec.Analysis:
    """One layer: its analysis gives op's output shape, 0 params and 0 MACs, and the layout;
    the compiled model computes op's values, on a batch of 3."""
    analysis = analyze(input_, layer)
    x = torch.randn(3, *shape)
    want = op(x)
    (info,) = analysis.layers.values()
    assert (3, *info.output_shape) == tuple(want.shape)
    assert (info.params, info.buffers, info.macs) == (0, 0, 0)
    assert info.layout == layout
    model = archspec.compile(analysis.network)
    with torch.no_grad():
        got = model(x)
    assert torch.equal(got, want)
    assert got.is_contiguous()
    assert mismatches(analysis) == []
    return analysis


def value_column(input_, layer: dict, field: str) -> int:
    """The 1-based column of a field's value on the layer's line (line 4) of spec_text."""
    line = spec_text(input_, layer).splitlines()[3]
    return line.index(f'"{field}": ') + len(field) + 5


def tokens(*shape):
    return {"shape": list(shape), "layout": "tokens"}


# ---- flatten -------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, input_, layout", [
    ({}, [4, 3, 5], "vector"),
    ({"start_dim": 2}, [4, 3, 5], "channels_first"),             # ViT's x.flatten(2)
    ({"start_dim": 1, "end_dim": 2}, [4, 3, 5], "channels_first"),
    ({"start_dim": -2}, [4, 3, 5], "channels_first"),
    ({"start_dim": 2, "end_dim": 3}, [2, 4, 3, 5], "channels_first"),
    ({"start_dim": 1, "end_dim": 1}, [4, 3, 5], "channels_first"),
    ({"start_dim": 2}, tokens(6, 4, 3), "channels_last"),         # the features merged: last
    ({}, tokens(6, 4), "vector"),
])
def test_flatten_is_nn_flatten(fields, input_, layout):
    shape = input_["shape"] if isinstance(input_, dict) else input_
    flatten = nn.Flatten(fields.get("start_dim", 1), fields.get("end_dim", -1))
    runs_as(input_, {"type": "flatten", **fields}, flatten, shape, layout)


def test_flatten_of_ids_keeps_ids():
    analysis = analyze({"shape": [3, 4], "layout": "ids"}, "flatten")
    assert analysis.layers["flatten1"].layout == "ids"
    assert analysis.layers["flatten1"].output_shape == (12,)


@pytest.mark.parametrize("fields, field, message", [
    ({"start_dim": 0}, "start_dim", "flatten from dim 0, the batch dim"),
    ({"start_dim": 4}, "start_dim", "start_dim 4 is out of range for a batch of 4x3x5"),
    ({"start_dim": 3, "end_dim": 2}, "end_dim", "end_dim 2 comes before start_dim 3"),
])
def test_flatten_dims_out_of_range_are_located(fields, field, message):
    d = the_error([4, 3, 5], {"type": "flatten", **fields})
    assert message in d.message and d.hint
    assert (d.line, d.column) == (4, value_column([4, 3, 5], {"type": "flatten", **fields}, field))


# ---- permute and transpose -----------------------------------------------------------------

@pytest.mark.parametrize("dims, input_, layout", [
    ([0, 2, 3, 1], [4, 3, 5], "channels_last"),      # ConvNeXt: channels last
    ([0, 3, 1, 2], tokens(3, 5, 4), "channels_first"),
    ([0, 2, 1], [4, 6], "channels_last"),
    ([0, 1, 2, 3], [4, 3, 5], "channels_first"),
    ([0, 1, 3, 2], [4, 3, 5], "channels_first"),     # positions swapped, channels stay
    ([0, 2, 3, 4, 1], [4, 2, 3, 5], "channels_last"),
    ([0, 2, 1, 3], tokens(3, 5, 4), "channels_last"),
    ([0, 2, 3, 1], [4, 1, 1], "channels_last"),      # a view: no axis larger than 1 moves
    ([0, -1, 1, 2], tokens(3, 5, 4), "channels_first"),
])
def test_permute_is_torch_permute(dims, input_, layout):
    shape = input_["shape"] if isinstance(input_, dict) else input_
    runs_as(input_, {"type": "permute", "dims": dims}, lambda x: x.permute(dims).contiguous(),
            shape, layout)


@pytest.mark.parametrize("dims, input_, layout", [
    ([1, 2], [4, 6], "channels_last"),               # a [C, L] map to tokens [L, C]
    ([2, 1], tokens(6, 4), "channels_first"),
    ([-1, -2], [4, 6], "channels_last"),
    ([2, 3], [4, 3, 5], "channels_first"),
    ([1, 3], [4, 3, 5], "channels_last"),
])
def test_transpose_is_torch_transpose(dims, input_, layout):
    shape = input_["shape"] if isinstance(input_, dict) else input_
    runs_as(input_, {"type": "transpose", "dims": dims},
            lambda x: x.transpose(*dims).contiguous(), shape, layout)


def test_moving_the_channels_last_and_back_keeps_the_receptive_field():
    analysis = analyze([4, 9, 9], {"type": "conv", "out_channels": 4, "kernel_size": 3},
                       {"type": "permute", "dims": [0, 2, 3, 1]},
                       {"type": "permute", "dims": [0, 3, 1, 2]},
                       {"type": "permute", "dims": [0, 1, 3, 2]})
    fields = [i.receptive_field for i in analysis.layers.values()]
    assert fields[0].size == fields[1].size == fields[2].size == (3, 3)
    assert fields[3] is None  # H and W swapped: no field per dim


def test_a_view_that_keeps_the_order_shares_its_input_a_reordering_copies():
    kept = analyze([4, 1, 1], {"type": "permute", "dims": [0, 2, 3, 1]})
    moved = analyze([4, 2, 1], {"type": "permute", "dims": [0, 2, 3, 1]})
    assert kept.layers["permute1"].output_bytes == 0
    assert moved.layers["permute1"].output_bytes == 4 * 8


def test_permute_that_puts_the_features_in_the_middle_is_located():
    layer = {"type": "permute", "dims": [0, 2, 1, 3]}
    d = the_error([4, 3, 5], layer)
    assert "puts the features of a channels-first input on dim 2 of 4" in d.message
    assert "[0, 2, 3, 1]" in d.hint
    assert (d.line, d.column) == (4, value_column([4, 3, 5], layer, "dims"))


@pytest.mark.parametrize("dims, message", [
    ([0, 2, 1], "has 3 entries but a batch of 4x3x5 has 4 dims"),
    ([0, 1, 1, 2], "is not a permutation of 0..3"),
    ([1, 0, 2, 3], "moves the batch dim (0) away from the front"),
])
def test_bad_permutations_are_located(dims, message):
    layer = {"type": "permute", "dims": dims}
    d = the_error([4, 3, 5], layer)
    assert message in d.message and d.hint
    assert (d.line, d.column) == (4, value_column([4, 3, 5], layer, "dims"))


def test_transpose_of_the_batch_is_located():
    layer = {"type": "transpose", "dims": [0, 1]}
    d = the_error([4, 6], layer)
    assert "the batch dim" in d.message
    assert (d.line, d.column) == (4, value_column([4, 6], layer, "dims"))


# ---- slice and index -----------------------------------------------------------------------

@pytest.mark.parametrize("fields, input_, index, layout", [
    ({"dim": 1, "start": 1, "stop": 3}, [4, 3, 5], (slice(None), slice(1, 3)), "channels_first"),
    ({"dim": 2, "start": -2}, [4, 3, 5], (slice(None), slice(None), slice(-2, None)),
     "channels_first"),
    ({"dim": -1, "stop": -1, "step": 2}, [4, 3, 6], (..., slice(None, -1, 2)), "channels_first"),
    ({"dim": 1, "start": 0, "stop": 1}, tokens(7, 4), (slice(None), slice(0, 1)),
     "channels_last"),
    ({"dim": 1, "step": 3}, [8], (slice(None), slice(None, None, 3)), "vector"),
    ({"dim": 1, "start": -3, "stop": 3}, [4, 3, 5], (slice(None), slice(-3, 3)),
     "channels_first"),
])
def test_slice_is_python_slicing(fields, input_, index, layout):
    shape = input_["shape"] if isinstance(input_, dict) else input_
    runs_as(input_, {"type": "slice", **fields}, lambda x: x[index].contiguous(), shape, layout)


@pytest.mark.parametrize("fields, input_, index, layout", [
    ({"dim": 1, "index": 0}, tokens(7, 4), (slice(None), 0), "vector"),   # ViT's class token
    ({"dim": 1, "index": -1}, tokens(7, 4), (slice(None), -1), "vector"),
    ({"dim": 2, "index": 2}, [4, 3, 5], (slice(None), slice(None), 2), "channels_first"),
    ({"dim": 1, "index": 1}, tokens(3, 7, 4), (slice(None), 1), "channels_last"),
    ({"dim": -1, "index": 0}, tokens(7, 4), (..., 0), "vector"),
])
def test_index_takes_one_position_and_drops_the_dim(fields, input_, index, layout):
    shape = input_["shape"] if isinstance(input_, dict) else input_
    runs_as(input_, {"type": "index", **fields}, lambda x: x[index].contiguous(), shape, layout)


@pytest.mark.parametrize("layer, field, message", [
    ({"type": "slice", "dim": 2, "start": 3}, "start", "start 3 is out of range for dim 2"),
    ({"type": "slice", "dim": 2, "stop": -4}, "stop", "stop -4 is out of range"),
    ({"type": "slice", "dim": 1, "start": 2, "stop": 2}, "stop", "keeps nothing"),
    ({"type": "slice", "dim": 4}, "dim", "dim 4 is out of range for a batch of 4x3x5"),
    ({"type": "index", "dim": 3, "index": 5}, "index", "index 5 is out of range for dim 3"),
    ({"type": "index", "dim": 0, "index": 0}, "dim", "the batch dim"),
])
def test_slice_and_index_out_of_range_are_located(layer, field, message):
    d = the_error([4, 3, 5], layer)
    assert message in d.message and d.hint
    assert (d.line, d.column) == (4, value_column([4, 3, 5], layer, field))


# ---- reshape, squeeze and unsqueeze --------------------------------------------------------

@pytest.mark.parametrize("fields, input_, layout", [
    ({"shape": [4, 15]}, [4, 3, 5], "channels_first"),
    ({"shape": [4, -1]}, [4, 3, 5], "channels_first"),
    ({"shape": [2, 2, -1]}, [4, 3, 5], "channels_first"),
    ({"shape": [-1]}, [4, 3, 5], "vector"),
    ({"shape": [3, 4]}, [12], "channels_first"),                       # a vector to a map
    ({"shape": [3, 4], "layout": "tokens"}, [12], "channels_last"),
    ({"shape": [6, 2, 4]}, tokens(6, 8), "channels_last"),
    ({"shape": [4, 3, 5], "layout": "channels_last"}, [4, 15], "channels_last"),
])
def test_reshape_is_torch_reshape(fields, input_, layout):
    shape = input_["shape"] if isinstance(input_, dict) else input_
    runs_as(input_, {"type": "reshape", **fields}, lambda x: x.reshape(3, *fields["shape"]),
            shape, layout)


def test_a_reshape_of_the_wrong_size_names_both_shapes():
    layer = {"type": "reshape", "shape": [4, 16]}
    d = the_error([4, 3, 5], layer)
    assert d.message == "reshape to 4x16 needs 64 values per sample but the input 4x3x5 has 60"
    assert "multiply to 60" in d.hint
    assert (d.line, d.column) == (4, value_column([4, 3, 5], layer, "shape"))
    d = the_error([4, 3, 5], {"type": "reshape", "shape": [7, -1]})
    assert "needs a multiple of 7 values per sample but the input 4x3x5 has 60" in d.message


@pytest.mark.parametrize("input_, layer, field, message", [
    ([4, 3, 5], {"type": "reshape", "shape": [-1, -1]}, "shape", "a single -1"),
    ([4, 3, 5], {"type": "reshape", "shape": [0, 60]}, "shape", "sizes of 1 or more"),
    ([4, 3, 5], {"type": "reshape", "shape": [60], "layout": "tokens"}, "layout",
     "does not fit the result, a vector of 60"),
    ({"shape": [4, 3], "layout": "ids"}, {"type": "reshape", "shape": [12], "layout": "tokens"},
     "layout", "token ids"),
    ([4, 3, 5], {"type": "squeeze", "dim": 2}, "dim", "of size 3: only a dim of size 1 can go"),
    ([1], {"type": "squeeze"}, "dim", "would leave no dims"),
    ([4, 3, 5], {"type": "unsqueeze", "dim": 1}, "dim", "features of a channels-first input on dim 2"),
    ([4, 3, 5], {"type": "unsqueeze", "dim": 0}, "dim", "the batch dim"),
    ([4, 3, 5], {"type": "unsqueeze", "dim": 5}, "dim", "dim 5 is out of range"),
])
def test_reshape_squeeze_and_unsqueeze_errors_are_located(input_, layer, field, message):
    d = the_error(input_, layer)
    assert message in d.message and d.hint
    if field in layer:
        assert (d.line, d.column) == (4, value_column(input_, layer, field))
    else:
        assert d.line == 4


@pytest.mark.parametrize("fields, input_, layout", [
    ({"dim": 2}, [4, 1, 5], "channels_first"),
    ({"dim": -1}, [4, 5, 1], "channels_first"),
    ({}, [4, 1, 1], "vector"),
    ({"dim": 1}, tokens(1, 8), "vector"),
    ({}, [4, 3, 5], "channels_first"),                  # nothing of size 1: the input itself
    ({"dim": 1}, [1, 5, 5], "channels_first"),          # the one channel taken away
])
def test_squeeze_is_torch_squeeze_of_sample_dims(fields, input_, layout):
    shape = input_["shape"] if isinstance(input_, dict) else input_
    if "dim" in fields:
        def op(x):
            return x.squeeze(fields["dim"])
    else:
        def op(x):
            return x.squeeze(tuple(d for d in range(1, x.dim()) if x.shape[d] == 1))
    runs_as(input_, {"type": "squeeze", **fields}, op, shape, layout)


def test_squeeze_keeps_a_batch_of_one():
    analysis = analyze([1, 1, 6], "squeeze")
    assert analysis.layers["squeeze1"].output_shape == (6,)
    assert archspec.compile(analysis.network)(torch.randn(1, 1, 1, 6)).shape == (1, 6)


@pytest.mark.parametrize("dim, input_, layout", [
    (1, [8], "channels_last"),                          # [1, 8]: one token of 8 features
    (2, [8], "channels_first"),                         # [8, 1]: 8 channels at one position
    (-1, [8], "channels_first"),
    (2, [4, 3, 5], "channels_first"),
    (-1, [4, 3, 5], "channels_first"),
    (1, tokens(6, 8), "channels_last"),
])
def test_unsqueeze_is_torch_unsqueeze(dim, input_, layout):
    shape = input_["shape"] if isinstance(input_, dict) else input_
    runs_as(input_, {"type": "unsqueeze", "dim": dim}, lambda x: x.unsqueeze(dim), shape, layout)


def test_views_share_their_input_and_save_nothing():
    analysis = analyze([4, 3, 5], {"type": "reshape", "shape": [12, 5]},
                       {"type": "unsqueeze", "dim": 2}, {"type": "squeeze", "dim": 2},
                       {"type": "flatten"})
    assert [i.output_bytes for i in analysis.layers.values()] == [0, 0, 0, 0]
    assert sum(analysis.saved_bytes.values()) == 0


# ---- ConvNeXt's and ViT's patterns ---------------------------------------------------------

class Permute(nn.Module):
    """torchvision.ops.misc.Permute, as ConvNeXt's CNBlock uses it."""

    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


def flop_macs(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2 // x.shape[0]


def same_as(analysis, reference: nn.Module, x: torch.Tensor) -> None:
    model = archspec.compile(analysis.network)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in theirs.items()]
    assert analysis.params == sum(p.numel() for p in reference.parameters())
    model.load_state_dict(theirs)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    assert analysis.macs == flop_macs(reference, x) == flop_macs(model, x)
    assert mismatches(analysis) == []


CONVNEXT_BLOCK = [
    {"type": "depthwise_conv", "name": "0", "kernel_size": 7, "padding": 3},
    {"type": "permute", "name": "1", "dims": [0, 2, 3, 1]},
    {"type": "layer_norm", "name": "2", "eps": 1e-6},
    {"type": "dense", "name": "3", "out_features": 32},
    {"type": "gelu", "name": "4"},
    {"type": "dense", "name": "5", "out_features": 8},
    {"type": "permute", "name": "6", "dims": [0, 3, 1, 2]},
]


def test_convnexts_block_is_its_pytorch_sequence():
    analysis = analyze([8, 9, 9], *CONVNEXT_BLOCK)
    reference = nn.Sequential(nn.Conv2d(8, 8, 7, padding=3, groups=8), Permute([0, 2, 3, 1]),
                              nn.LayerNorm(8, eps=1e-6), nn.Linear(8, 32), nn.GELU(),
                              nn.Linear(32, 8), Permute([0, 3, 1, 2]))
    same_as(analysis, reference, torch.randn(2, 8, 9, 9))
    # nn.Linear at every position of the channels-last map: H x W x in x out, derived
    assert analysis.layers["3"].macs == 9 * 9 * 8 * 32
    assert [analysis.layers[n].layout for n in "0123456"] == \
        ["channels_first"] + ["channels_last"] * 5 + ["channels_first"]
    assert analysis.layers["6"].receptive_field.size == (7, 7)


class VitEnds(nn.Module):
    """torchvision's VisionTransformer around its encoder: conv_proj, x.reshape(n, d, h*w) as
    x.flatten(2), x.permute(0, 2, 1), a layer norm for the encoder, x[:, 0], the head."""

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.conv_proj = nn.Conv2d(3, dim, 16, stride=16)
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).permute(0, 2, 1)
        return self.head(self.ln(x)[:, 0])


def test_vits_patches_and_class_token_are_its_pytorch_code():
    analysis = analyze([3, 64, 48], {"type": "conv", "name": "conv_proj", "out_channels": 24,
                                     "kernel_size": 16, "stride": 16},
                       {"type": "flatten", "start_dim": 2}, {"type": "transpose", "dims": [1, 2]},
                       {"type": "layer_norm", "name": "ln", "eps": 1e-6},
                       {"type": "index", "dim": 1, "index": 0},
                       {"type": "dense", "name": "head", "out_features": 5})
    assert [i.output_shape for i in analysis.layers.values()] == \
        [(24, 4, 3), (24, 12), (12, 24), (12, 24), (24,), (5,)]
    assert [i.layout for i in analysis.layers.values()] == \
        ["channels_first", "channels_first", "channels_last", "channels_last", "vector",
         "vector"]
    same_as(analysis, VitEnds(24, 5), torch.randn(2, 3, 64, 48))


@pytest.mark.parametrize("input_, layer", [
    (tokens(16, 32), {"type": "conv", "out_channels": 4, "kernel_size": 3}),
    (tokens(6, 7, 8), {"type": "conv", "out_channels": 4, "kernel_size": 3}),
    ([8, 6, 7], {"type": "layer_norm"}),
    ([8, 6], {"type": "lstm", "hidden_size": 4}),
    ([8, 6, 7], {"type": "multi_head_attention", "num_heads": 2}),
])
def test_the_layout_hints_insert_a_shape_kind_that_fixes_the_spec(input_, layer):
    """The hint of a wrong layout names a permute, transpose, reshape or flatten; inserting the
    kinds it names (as YAML flow mappings), in order, makes the spec check."""
    import re

    import yaml
    d = the_error(input_, layer)
    fixes = [yaml.safe_load(m) for m in re.findall(r"\{type: (?:permute|transpose|reshape|flatten)[^}]*\}",
                                                   d.hint)]
    assert fixes, d.hint
    analysis = analyze(input_, *fixes, layer)
    assert len(analysis.layers) == len(fixes) + 1


def test_transpose_written_as_torch_transpose_arguments_is_told_the_list():
    with pytest.raises(archspec.SpecError) as info:
        analyze([4, 6], "{type: transpose, dim0: 1, dim1: 2}")
    assert [d.message for d in info.value.diagnostics] == [
        "unknown field 'dim0' for transpose", "unknown field 'dim1' for transpose"]
    assert all("dims: [dim0, dim1]" in d.hint for d in info.value.diagnostics)


@pytest.mark.parametrize("spelling, kind", [
    ("crop", "slice"), ("Cropping2D", "slice"), ("narrow", "slice"), ("select", "index"),
    ("movedim", "permute"), ("view", "reshape")])
def test_other_frameworks_names_of_the_shape_kinds_are_pointed_to_them(spelling, kind):
    with pytest.raises(archspec.SpecError) as info:
        archspec.loads(f"name: t\ninput: [3, 8, 8]\nlayers:\n  - {{type: {spelling}}}\n")
    (d,) = info.value.diagnostics
    assert d.message == f"unknown layer type '{spelling}'"
    assert d.hint == f"did you mean '{kind}'?" and (d.line, d.column) == (4, 12)
