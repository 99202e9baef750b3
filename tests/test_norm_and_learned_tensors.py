"""layer_norm, parameter and layer_scale against PyTorch's own modules: each spec is
compiled and compared with a module written here from PyTorch (nn.LayerNorm,
ViT's class token and position embedding, ConvNeXt's LayerNorm2d and layer scale as torchvision
defines them): state_dict keys and shapes, outputs on the same weights, parameter counts, and
MACs as FlopCounterMode counts them on both."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archspec
from archspec.backends.verify import mismatches


def spec(input_, *layers: str) -> archspec.Analysis:
    text = f"name: t\ninput: {input_}\nlayers:\n" + "".join(f"  - {layer}\n" for layer in layers)
    return archspec.analyze(archspec.loads(text))


def flop_macs(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2 // x.shape[0]


def same_as(analysis: archspec.Analysis, reference: nn.Module, x: torch.Tensor) -> None:
    """Keys, shapes, params, output (on the reference's weights) and MACs agree."""
    model = archspec.compile(analysis.network)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in theirs.items()]
    assert analysis.params == sum(p.numel() for p in reference.parameters())
    with torch.no_grad():
        for tensor in theirs.values():
            tensor.normal_()
    model.load_state_dict(theirs)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-5)
    assert analysis.macs == flop_macs(reference, x) == flop_macs(model, x)
    assert mismatches(analysis) == []


class Named(nn.Module):
    """One PyTorch module under a layer name, as the compiled model holds it."""

    def __init__(self, name: str, module: nn.Module):
        super().__init__()
        self.add_module(name, module)
        self.name = name

    def forward(self, x):
        return getattr(self, self.name)(x)


# ---- layer_norm ---------------------------------------------------------------------------

@pytest.mark.parametrize("fields, shape, normalized", [
    ({}, (7, 12), (12,)),
    ({"normalized_shape": [7, 12]}, (7, 12), (7, 12)),
    ({"normalized_shape": 12, "eps": 0.001}, (3, 7, 12), (12,)),
    ({"bias": False}, (5, 6), (6,)),
    ({"elementwise_affine": False}, (5, 6), (6,)),
    ({}, (10,), (10,)),
])
def test_layer_norm_is_nn_layer_norm(fields, shape, normalized):
    analysis = spec(json.dumps({"shape": list(shape), "layout": "channels_last"}),
                    json.dumps({"type": "layer_norm", "name": "ln", **fields}))
    options = {k: v for k, v in fields.items() if k != "normalized_shape"}
    same_as(analysis, Named("ln", nn.LayerNorm(normalized, **options)), torch.randn(2, *shape))
    tensors = (1 + options.get("bias", True)) * options.get("elementwise_affine", True)
    assert analysis.params == tensors * torch.Size(normalized).numel()


class LayerNorm2d(nn.LayerNorm):
    """torchvision's ConvNeXt LayerNorm2d: permute to channels last, layer_norm, permute back."""

    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def test_layer_norm_channels_first_is_convnexts_layer_norm_2d():
    analysis = spec([8, 5, 6], "{type: layer_norm, name: ln, channels_first: true, eps: 1.0e-6}")
    same_as(analysis, Named("ln", LayerNorm2d(8, eps=1e-6)), torch.randn(2, 8, 5, 6))
    assert analysis.layers["ln"].receptive_field.size == (1, 1)


def the_error(input_, layer: str):
    with pytest.raises(archspec.SpecError) as info:
        spec(input_, layer)
    (diagnostic,) = info.value.diagnostics
    return diagnostic


def test_a_declared_normalized_shape_must_be_the_inputs_last_dims():
    d = the_error("{shape: [7, 12], layout: tokens}", "{type: layer_norm, normalized_shape: [12, 7]}")
    assert "normalized_shape is [12, 7] but the input's last dims are [7, 12]" in d.message
    assert (d.line, d.column) == (4, 42) and "set it to [7, 12]" in d.hint


# ---- parameter: ViT's class token and position embedding ------------------------------------

class VitStem(nn.Module):
    """As torchvision's VisionTransformer holds them: class_token [1, 1, D] on the model,
    pos_embedding [1, L + 1, D] on its encoder; the token is expanded over the batch and
    concatenated before the sequence, then the embedding added."""

    def __init__(self, length: int, dim: int):
        super().__init__()
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder = nn.Module()
        self.encoder.pos_embedding = nn.Parameter(torch.empty(1, length + 1, dim).normal_(std=0.02))

    def forward(self, x):
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.encoder.pos_embedding


def test_class_token_and_position_embedding_are_torchvisions_vit_tensors():
    analysis = spec([196, 24], "{type: parameter, mode: prepend, name: class_token}",
                    "{type: sequential, name: encoder, layers: [{type: parameter, "
                    "name: pos_embedding, init: normal}]}")
    same_as(analysis, VitStem(196, 24), torch.randn(2, 196, 24))
    assert analysis.output_shape == (197, 24)
    model = archspec.compile(analysis.network)
    assert model.encoder.pos_embedding.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.class_token.abs().sum().item() == 0


def test_a_parameter_added_broadcasts_its_size_one_dims():
    analysis = spec([5, 6], "{type: parameter, shape: [1, 6], name: bias}")
    reference = nn.Module()
    reference.bias = nn.Parameter(torch.zeros(1, 1, 6))
    reference.forward = lambda x: x + reference.bias
    same_as(analysis, reference, torch.randn(3, 5, 6))


def test_several_tokens_prepend_along_the_dim_given():
    analysis = spec([4, 5, 6], "{type: parameter, mode: prepend, shape: [4, 2, 6], dim: 2, "
                    "name: registers}")
    assert analysis.output_shape == (4, 7, 6) and analysis.params == 48
    model = archspec.compile(analysis.network)
    x = torch.randn(3, 4, 5, 6)
    assert torch.equal(model(x)[:, :, 2:], x)
    assert torch.equal(model(x)[:, :, :2], model.registers.expand(3, -1, -1, -1))


def test_a_parameter_that_does_not_fit_its_input_is_located():
    d = the_error([5, 6], "{type: parameter, shape: [5, 4]}")
    assert "a parameter of shape 5x4 cannot be added to a 5x6 input" in d.message
    assert (d.line, d.column) == (4, 30) and "shape: [5, 6]" in d.hint


# ---- layer_scale: ConvNeXt's gamma -----------------------------------------------------------

class ScaledBlock(nn.Module):
    """torchvision's CNBlock keeps layer_scale [C, 1, 1] (init 1e-6) beside its block and
    multiplies the block's output by it."""

    def __init__(self, channels: int):
        super().__init__()
        self.layer_scale = nn.Parameter(torch.ones(channels, 1, 1) * 1e-6)
        self.block = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x):
        return self.layer_scale * self.block(x)


def test_layer_scale_is_registered_on_its_block_before_the_blocks_layers():
    analysis = spec([6, 5, 5], "{type: sequential, name: blk, layers: [{type: sequential, "
                    "name: block, numbered: true, layers: [{type: conv, out_channels: 6, "
                    "kernel_size: 3, padding: 1}]}, {type: layer_scale, name: layer_scale}]}")
    same_as(analysis, Named("blk", ScaledBlock(6)), torch.randn(2, 6, 5, 5))
    model = archspec.compile(analysis.network)
    assert list(model.state_dict()) == ["blk.layer_scale", "blk.block.0.weight", "blk.block.0.bias"]
    assert torch.all(model.blk.layer_scale == 1e-6)


def test_layer_scale_on_the_last_dim_holds_one_value_per_feature():
    analysis = spec([5, 6], "{type: layer_scale, dim: -1, init: 0.1, name: gamma}")
    model = archspec.compile(analysis.network)
    assert model.gamma.shape == (6,) and analysis.params == 6
    x = torch.randn(2, 5, 6)
    assert torch.allclose(model(x), x * 0.1)


def test_a_frozen_direct_tensor_does_not_train():
    analysis = spec([5, 6], "{type: parameter, name: pos, trainable: false}")
    model = archspec.compile(analysis.network)
    assert not model.pos.requires_grad
    assert (analysis.params, analysis.trainable_params) == (30, 0)
    assert mismatches(analysis) == []


# ---- embedding, and token inputs ---------------------------------------------------------------


@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_embedding_is_nn_embedding(padding_idx):
    extra = "" if padding_idx is None else f", padding_idx: {padding_idx}"
    analysis = spec("{shape: [12], layout: ids}",
                    f"{{type: embedding, name: emb, num_embeddings: 30, embedding_dim: 8{extra}}}")
    reference = Named("emb", nn.Embedding(30, 8, padding_idx=padding_idx))
    model = archspec.compile(analysis.network)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert analysis.output_shape == (12, 8) and analysis.params == 240
    assert analysis.layers["emb"].layout == "channels_last"
    if padding_idx is not None:  # PyTorch zeroes the padding row, as compiled
        assert torch.count_nonzero(model.emb.weight[padding_idx]) == 0
    ids = torch.randint(0, 30, (3, 12))
    model.load_state_dict(reference.state_dict())
    with torch.no_grad():
        assert torch.equal(model(ids), reference(ids))
    assert analysis.macs == flop_macs(reference, ids) == 0
    assert mismatches(analysis) == []


class TinyTokenModel(nn.Module):
    """Token ids -> nn.Embedding -> class token + position embedding -> nn.LayerNorm ->
    nn.Linear on every position (the last axis), as a ViT/BERT-style stem writes it."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.class_token = nn.Parameter(torch.zeros(1, 1, 16))
        self.pos_embedding = nn.Parameter(torch.zeros(1, 11, 16))
        self.ln = nn.LayerNorm(16)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.embed(x)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.head(self.ln(x + self.pos_embedding))


def test_a_token_model_is_pytorchs_with_dense_on_the_last_axis():
    analysis = spec("{shape: [10], layout: ids}",
                    "{type: embedding, name: embed, num_embeddings: 50, embedding_dim: 16}",
                    "{type: parameter, mode: prepend, name: class_token}",
                    "{type: parameter, name: pos_embedding}",
                    "{type: layer_norm, name: ln}", "{type: dense, name: head, out_features: 5}")
    same_as(analysis, TinyTokenModel(), torch.randint(0, 50, (2, 10)))
    assert analysis.layers["head"].macs == 11 * 16 * 5  # nn.Linear on each of 11 positions
    assert analysis.input_bytes == 10 * 8  # int64 ids


def test_a_token_sequence_input_feeds_dense_and_layer_norm_and_keeps_a_field():
    analysis = spec("{shape: [7, 12], layout: tokens}", "{type: layer_norm, name: ln}",
                    "{type: dense, name: fc, out_features: 4}")
    reference = nn.Sequential()
    reference.add_module("ln", nn.LayerNorm(12))
    reference.add_module("fc", nn.Linear(12, 4))
    same_as(analysis, reference, torch.randn(2, 7, 12))
    assert analysis.input_layout == "channels_last"
    assert analysis.layers["fc"].receptive_field.size == (1,)  # each token on its own
    assert archspec.analyze(archspec.loads(
        "name: t\ninput: {shape: [7, 12], layout: channels_last}\nlayers: [layer_norm]")
    ).input_layout == "channels_last"


def test_dense_still_refuses_a_channels_first_map():
    d = the_error([3, 8, 8], "{type: dense, out_features: 4}")
    assert "dense needs a feature vector but its input is a 3x8x8 map" in d.message
    assert "flatten" in d.hint


def test_check_json_reports_layouts():
    analysis = spec("{shape: [10], layout: ids}",
                    "{type: embedding, num_embeddings: 50, embedding_dim: 16}", "flatten")
    doc = analysis.to_json()
    assert doc["input_layout"] == "ids"
    assert [layer["layout"] for layer in doc["layers"]] == ["channels_last", "vector"]
