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
import torch.nn as nn
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
