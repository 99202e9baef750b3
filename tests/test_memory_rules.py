"""Every layer kind's memory rule (LayerKind.saved, aliases_input) against PyTorch: the kind's
own torch module runs alone under torch.autograd.graph.saved_tensors_hooks, and each tensor it
saves is matched to its inputs, its output or a new storage (parameters and buffers aside).
Every combination of inputs requiring grad and of frozen/trainable parameters is run, in every
dtype of --dtype, so the rule is PyTorch's own behaviour, not a guess."""
from __future__ import annotations

import itertools

import pytest
import torch

from archspec.backends.pytorch.lowering import lower
from archspec.layers.base import REGISTRY, GradFlow, LayerConfig, LayerKind, register
from archspec.memory import Storages, storage_of

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}

# kind -> [(config fields, input shapes without batch)]: each kind's lowering paths
SAMPLES: dict[str, list[tuple[dict, list[tuple[int, ...]]]]] = {
    "conv": [({"out_channels": 4, "kernel_size": 3}, [(3, 7, 7)]),
             ({"out_channels": 4, "kernel_size": 3, "stride": 2, "padding": "same"}, [(3, 8, 8)]),
             ({"out_channels": 4, "kernel_size": 3, "padding": 1, "padding_mode": "reflect"},
              [(3, 6, 6)]),
             ({"out_channels": 2, "kernel_size": 3, "padding": 1, "padding_mode": "replicate"},
              [(3, 6)]),
             ({"out_channels": 2, "kernel_size": 3, "padding": 1, "padding_mode": "circular"},
              [(2, 5, 5)]),
             ({"out_channels": 2, "kernel_size": 3, "padding": 0, "padding_mode": "reflect"},
              [(2, 5, 5)]),
             ({"out_channels": 2, "kernel_size": 2, "padding": "same", "padding_mode": "reflect"},
              [(2, 5, 5)]),
             ({"out_channels": 2, "kernel_size": 3, "bias": False}, [(2, 4, 4, 4)])],
    "depthwise_conv": [({"kernel_size": 3}, [(3, 6, 6)]),
                       ({"kernel_size": 2, "padding": "same", "depth_multiplier": 2}, [(2, 7)])],
    "conv_transpose": [({"out_channels": 4, "kernel_size": 2, "stride": 2}, [(3, 5, 5)]),
                       ({"out_channels": 1, "kernel_size": 3, "padding": 1}, [(2, 3, 3, 3)]),
                       ({"out_channels": 2, "kernel_size": 1, "groups": 2}, [(4, 3, 3, 3)])],
    "dense": [({"out_features": 4}, [(6,)]), ({"out_features": 4, "bias": False}, [(6,)])],
    "flatten": [({}, [(3, 4, 4)]), ({"start_dim": 2}, [(3, 4, 4)])],
    "permute": [({"dims": [0, 2, 3, 1]}, [(3, 4, 5)]), ({"dims": [0, 2, 3, 1]}, [(3, 1, 1)])],
    "transpose": [({"dims": [1, 2]}, [(3, 4)]), ({"dims": [1, 2]}, [(1, 4)])],
    "slice": [({"start": 1, "stop": 3}, [(4, 5)]), ({"dim": -1, "step": 2}, [(4, 5)])],
    "index": [({"index": 0}, [(4, 5)]), ({"dim": -1, "index": -1}, [(3, 4, 5)])],
    "reshape": [({"shape": [4, 5]}, [(20,)]), ({"shape": [-1]}, [(3, 4, 5)])],
    "squeeze": [({"dim": 2}, [(4, 1, 5)]), ({}, [(4, 1, 1)])],
    "unsqueeze": [({"dim": 1}, [(6,)]), ({"dim": -1}, [(3, 4)])],
    "batch_norm": [({}, [(3, 5, 5)]), ({}, [(6,)]), ({"affine": False}, [(3, 5)]),
                   ({"track_running_stats": False}, [(2, 3, 3, 3)])],
    "group_norm": [({"num_groups": 2}, [(4, 5, 5)]), ({"num_groups": 3, "affine": False}, [(6, 7)]),
                   ({"num_groups": 1}, [(4,)])],
    "instance_norm": [({}, [(3, 5, 5)]), ({"affine": True}, [(3, 6)]),
                      ({"track_running_stats": True}, [(2, 4, 4)]),
                      ({"affine": True, "track_running_stats": True}, [(2, 3, 3, 3)])],
    "pad": [({"padding": 1}, [(3, 5, 5)]), ({"padding": [1, 2], "mode": "reflect"}, [(2, 6)]),
            ({"padding": [1, 0, 2, 1], "mode": "replicate"}, [(2, 4, 4)]),
            ({"padding": 2, "mode": "circular"}, [(2, 4, 4)]),
            ({"padding": [0, 1], "value": 1.5}, [(2, 3, 3, 3)])],
    "pixel_shuffle": [({"upscale_factor": 2}, [(8, 3, 3)])],
    "pixel_unshuffle": [({"downscale_factor": 2}, [(2, 4, 6)])],
    "channel_shuffle": [({"groups": 2}, [(4, 3, 3)]), ({"groups": 3}, [(6, 5)])],
    "prelu": [({}, [(3, 4, 4)]), ({"num_parameters": 3}, [(3, 4, 4)]), ({}, [(5, 6)])],
    "local_response_norm": [({"size": 3}, [(5, 4, 4)]), ({"size": 2}, [(4, 6)])],
    "dropout": [({"p": 0.5}, [(3, 4, 4)]), ({"p": 0.0}, [(6,)]), ({"p": 1.0}, [(6,)])],
    "stochastic_depth": [({"p": 0.5}, [(3, 4, 4)]), ({"p": 0.2, "mode": "batch"}, [(3, 4)]),
                         ({"p": 0.0}, [(6,)]), ({"p": 1.0}, [(6,)])],
    "max_pool": [({"kernel_size": 2}, [(3, 6, 6)]), ({"kernel_size": 3, "stride": 2,
                                                      "padding": "same"}, [(2, 8, 8)]),
                 ({"kernel_size": 2, "dilation": 2}, [(2, 9)]), ({"kernel_size": 2}, [(2, 4, 4, 4)])],
    "avg_pool": [({"kernel_size": 2}, [(3, 6, 6)]),
                 ({"kernel_size": 2, "stride": 1, "padding": "same"}, [(2, 5, 5)]),
                 ({"kernel_size": 2, "stride": 1, "padding": "same", "count_include_pad": False},
                  [(2, 5)]),
                 ({"kernel_size": 2}, [(2, 4, 4, 4)])],
    "adaptive_avg_pool": [({"output_size": 1}, [(3, 5, 5)]), ({"output_size": 2}, [(3, 5, 5)]),
                          ({"output_size": [1, 3]}, [(3, 5, 5)]), ({"output_size": 1}, [(3, 5)])],
    "adaptive_max_pool": [({"output_size": 2}, [(3, 5, 5)]), ({"output_size": 1}, [(3, 6)])],
    "global_avg_pool": [({}, [(3, 5, 5)])],
    "global_max_pool": [({}, [(3, 5, 5)]), ({}, [(3, 5)])],
    "upsample": [({"scale_factor": 2}, [(3, 4, 4)]), ({"size": 7, "mode": "linear"}, [(3, 4)])],
    "concat": [({}, [(2, 4, 4), (3, 4, 4)])],
    "add": [({}, [(2, 4, 4)] * 2), ({}, [(2, 4)] * 3)],
    "multiply": [({}, [(2, 4, 4)] * 2), ({}, [(2, 4, 4), (2, 1, 1)]),
                 ({}, [(2, 4, 4), (2, 1, 1), (2, 4, 4)])],
    "multi_head_attention": [({"num_heads": 2}, [(5, 8)]),
                             ({"num_heads": 2, "dropout": 0.1}, [(5, 8)]),
                             ({"num_heads": 2, "causal": True, "bias": False}, [(5, 8)]),
                             ({"num_heads": 4}, [(5, 8), (7, 8)]),
                             ({"num_heads": 2, "dropout": 0.2}, [(5, 8), (7, 8)]),
                             ({"num_heads": 2}, [(5, 8), (7, 6)]),
                             ({"num_heads": 1, "dropout": 0.5}, [(5, 8), (7, 6)])],
    "transformer_encoder_layer": [
        ({"nhead": 2, "dim_feedforward": 12}, [(5, 8)]),
        ({"nhead": 2, "dim_feedforward": 12, "dropout": 0.0}, [(5, 8)]),
        ({"nhead": 4, "dim_feedforward": 6, "dropout": 0.0, "activation": "gelu"}, [(5, 8)]),
        ({"nhead": 2, "dim_feedforward": 12, "activation": "gelu", "norm_first": True},
         [(5, 8)]),
        ({"nhead": 1, "dim_feedforward": 4, "dropout": 0.0, "norm_first": True, "bias": False,
          "causal": True}, [(3, 6)])],
    "lstm": [({"hidden_size": 5}, [(3, 4)]), ({"hidden_size": 3, "steps": "last"}, [(1, 4)]),
             ({"hidden_size": 4, "num_layers": 3, "dropout": 0.5, "bidirectional": True},
              [(3, 2)]),
             ({"hidden_size": 4, "num_layers": 2, "dropout": 1.0, "steps": "last"}, [(2, 3)]),
             ({"hidden_size": 5, "proj_size": 2, "num_layers": 2, "bidirectional": True,
               "bias": False}, [(3, 4)])],
    "gru": [({"hidden_size": 5}, [(3, 4)]), ({"hidden_size": 3, "steps": "last"}, [(1, 4)]),
            ({"hidden_size": 4, "num_layers": 3, "dropout": 0.5, "bidirectional": True,
              "bias": False}, [(3, 2)]),
            ({"hidden_size": 2, "num_layers": 2, "bidirectional": True, "steps": "last"},
             [(4, 3)])],
    "layer_norm": [({}, [(5, 6)]), ({"normalized_shape": [4, 6]}, [(3, 4, 6)]),
                   ({"channels_first": True}, [(3, 4, 4)]), ({"bias": False}, [(6,)]),
                   ({"elementwise_affine": False}, [(2, 5)])],
    "parameter": [({}, [(5, 6)]), ({"mode": "prepend"}, [(5, 6)]),
                  ({"shape": [1, 6]}, [(5, 6)])],
    "layer_scale": [({}, [(3, 4, 4)]), ({"dim": -1}, [(5, 6)])],
    "embedding": [({"num_embeddings": 10, "embedding_dim": 4}, [(7,)]),
                  ({"num_embeddings": 10, "embedding_dim": 4, "padding_idx": 0}, [(2, 3)])],
    "projection": [({}, [(3, 6, 6), (3, 6, 6)]), ({}, [(3, 6, 6), (4, 3, 3)]),
                   ({"norm": False}, [(3, 6, 6), (4, 3, 3)])],
}
ACTIVATION_SHAPE = [(3, 4, 4)]
TOKEN_IDS = {"embedding"}  # kinds whose input is int64 token ids (no gradient)


def samples():
    for name, kind in sorted(REGISTRY.items()):
        cases = SAMPLES.get(name) or ([({}, ACTIVATION_SHAPE)] if kind.family == "activation"
                                      else [])
        for number, (fields, shapes) in enumerate(cases):
            yield pytest.param(name, fields, shapes, id=f"{name}-{number}")


def grad_cases(kind, n_inputs: int):
    """(inputs requiring grad, trainable): every combination (one shape-only input never)."""
    data = getattr(kind, "data_inputs", n_inputs)
    for flags in itertools.product([False, True], repeat=data):
        for trainable in (False, True):
            yield flags + (False,) * (n_inputs - data), trainable


def measured(module, xs, params_state) -> list[tuple[str, int]]:
    """(role, bytes) of each storage the module saves (in0, in1, ..., out or new), and the
    output's storage bytes as the last entry."""
    saved: dict[int, tuple[int, torch.Tensor]] = {}

    def pack(t):
        key = t.untyped_storage()._cdata
        if key not in params_state and t.untyped_storage().nbytes():
            saved.setdefault(key, (t.untyped_storage().nbytes(), t))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(*xs)
    roles = {x.untyped_storage()._cdata: f"in{i}" for i, x in enumerate(xs)}
    roles.setdefault(out.untyped_storage()._cdata, "out")
    return sorted((roles.get(key, "new"), nbytes) for key, (nbytes, _) in saved.items()) + [
        ("output storage", out.untyped_storage().nbytes())]


def declared(kind, cfg, shapes, output, grad, dtype_bytes, batch) -> list[tuple[str, int]]:
    """The rule's storages in the same (role, bytes) form, through archspec.memory's lookup."""
    names = [f"in{i}" for i in range(len(shapes))]
    out_key = "in0" if kind.aliases_input(cfg, shapes, True) else "out"
    of = dict(zip(names, names), out=out_key)
    in_bytes = 8 if kind.name in TOKEN_IDS else dtype_bytes  # int64 ids
    nbytes = {n: torch.Size((batch,) + s).numel() * in_bytes for n, s in zip(names, shapes)}
    nbytes["out"] = torch.Size((batch,) + tuple(output)).numel() * dtype_bytes

    class Sizes:
        batch_size = batch
    Sizes.dtype_bytes = dtype_bytes
    found = {}
    for index, item in enumerate(kind.saved(cfg, shapes, output, grad)):
        key, size = storage_of(item, index, "out", names, Storages(of, nbytes), Sizes)
        if size:  # a tensor kept only in other dtypes
            found[key] = size
    return sorted(("new" if "#" in key else key, size) for key, size in found.items()) + [
        ("output storage", nbytes[out_key])]


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("name, fields, shapes", list(samples()))
def test_kind_saves_what_its_rule_declares(name, fields, shapes, dtype):
    kind = REGISTRY[name]
    cfg = kind.Config.model_validate({"type": name, **fields})
    output = tuple(kind.output_shape(cfg, shapes))
    batch, torch_dtype = 2, DTYPES[dtype]
    size = torch.empty(0, dtype=torch_dtype).element_size()
    for flags, trainable in grad_cases(kind, len(shapes)):
        torch.manual_seed(0)
        module = lower(kind, cfg, shapes, output).to(torch_dtype).train()
        module.requires_grad_(trainable)
        state = {t.untyped_storage()._cdata for t in [*module.parameters(), *module.buffers()]}
        if name in TOKEN_IDS:
            if any(flags):
                continue
            xs = [torch.randint(0, cfg.num_embeddings, (batch,) + s) for s in shapes]
        else:
            xs = [torch.randn((batch,) + s, dtype=torch_dtype).requires_grad_(f)
                  for s, f in zip(shapes, flags)]
        try:
            got = measured(module, xs, state)
        except (NotImplementedError, RuntimeError) as exc:
            if torch_dtype in (torch.float16, torch.bfloat16) and "not implemented for" in str(exc):
                pytest.skip(f"PyTorch on the CPU lacks this op in {dtype}: {exc}")
            raise
        has_params = any(True for _ in module.parameters())
        grad = GradFlow(flags, params=trainable and has_params)
        assert declared(kind, cfg, shapes, output, grad, size, batch) == got, (flags, trainable)


def test_every_kind_has_a_memory_sample():
    """A new kind must come with a sample here, so its rule is checked against PyTorch."""
    missing = [n for n, k in REGISTRY.items() if n not in SAMPLES and k.family != "activation"]
    assert missing == []


def test_a_kind_without_a_memory_rule_cannot_register():
    from typing import Literal

    class NoRuleConfig(LayerConfig):
        type: Literal["no_rule_kind"]

    class NoRule(LayerKind):
        name = "no_rule_kind"
        family = "activation"
        Config = NoRuleConfig

    with pytest.raises(ValueError, match="must declare its memory rule"):
        register(NoRule)
    assert "no_rule_kind" not in REGISTRY


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("threads", [1, 2])
def test_a_transposed_conv_output_takes_its_own_size(dtype, threads):
    """PyTorch's native 3-D transposed conv (taken for every dtype but float32, and for float32
    on one thread) returns its output inside a buffer the size of its input; the compiled
    layer hands on an output whose storage is exactly its size, as the memory figures assume."""
    kind = REGISTRY["conv_transpose"]
    cfg = kind.Config.model_validate({"type": "conv_transpose", "out_channels": 1,
                                      "kernel_size": 1})
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        module = lower(kind, cfg, [(4, 3, 3, 3)], (1, 3, 3, 3)).to(DTYPES[dtype])
        out = module(torch.randn(2, 4, 3, 3, 3, dtype=DTYPES[dtype]))
    finally:
        torch.set_num_threads(before)
    assert out.untyped_storage().nbytes() == 2 * 27 * out.element_size()
