"""The compiled module is an ordinary PyTorch module: torch.compile captures it whole
(fullgraph=True), it runs in channels_last and in other dtypes with the float32 results.
torch.export of every zoo spec is tested in test_export.py, DistributedDataParallel in
test_distributed_training.py.

torch.compile runs with the aot_eager back end: it traces through Dynamo (fullgraph=True fails
on any graph break) and AOTAutograd, forward and backward, like the default inductor back end,
but skips inductor's C++ code generation, which costs 40-170 s per model on a 2-core machine."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import archspec

SPECS = Path(__file__).resolve().parent.parent / "specs"
# small specs that cover the lowering's odd cases: explicit asymmetric padding, pooling, dropout
# and dense in 1-d (signal1d), frozen literal filters (edges), concat + transposed conv (unet_small),
# residual blocks with projection shortcuts (resnet1d_audio)
SMALL = ["signal1d", "edges", "unet_small", "resnet1d_audio"]


def model_and_input(name: str, batch: int = 2):
    analysis = archspec.analyze(SPECS / f"{name}.yaml")
    torch.manual_seed(0)
    return archspec.compile(analysis.network), torch.randn(batch, *analysis.input_shape)


@pytest.mark.parametrize("name", SMALL)
def test_torch_compile_captures_the_whole_model_forward_and_backward(name):
    model, x = model_and_input(name)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    model.train()
    torch.manual_seed(1)  # the same dropout masks for both runs
    want = model(x)
    want.sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    torch.manual_seed(1)
    got = compiled(x)
    got.sum().backward()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for k, p in model.named_parameters():
        if k in grads:
            torch.testing.assert_close(p.grad, grads[k], rtol=1e-4, atol=1e-5, msg=k)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["lenet5", "edges", "unet_small", "resnet18"])
def test_channels_last_gives_the_same_outputs(name):
    model, x = model_and_input(name)
    model.eval()
    with torch.no_grad():
        want = model(x)
        model.to(memory_format=torch.channels_last)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["lenet5", "signal1d", "edges", "unet_small", "resnet1d_audio"])
def test_float64_and_bfloat16_copies_compute_the_float32_results(name):
    model, x = model_and_input(name)
    model.eval()
    with torch.no_grad():
        want = model(x)
        double = model.to(torch.float64)(x.double())
        assert double.dtype == torch.float64
        torch.testing.assert_close(double.float(), want, rtol=1e-4, atol=1e-5)
        half = model.to(torch.bfloat16)(x.bfloat16())  # 8 bits of mantissa: about 2 digits
        assert half.dtype == torch.bfloat16
        torch.testing.assert_close(half.float(), want, rtol=0.1, atol=0.1)
