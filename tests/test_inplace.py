"""The compiler runs a ReLU and a residual add in place (as torchvision writes them: in-place
ReLU, `out += identity`) exactly where no one else needs the overwritten tensor, autograd
included; the results and gradients equal the out-of-place model's."""
from __future__ import annotations

import pytest
import torch

import archspec

# Each layer's comment says whether it may overwrite its input, and why.
CASES = """
name: inplace_cases
input: [4, 8, 8]
layers:
  - {type: relu, name: on_input}             # no: the caller's input
  - {type: conv, name: c1, out_channels: 4, kernel_size: 3, padding: 1}
  - {type: batch_norm, name: bn1}
  - {type: relu, name: after_bn}             # yes: the norm keeps its input, not its output
  - {type: relu, name: after_relu}           # no: a ReLU keeps its output for its backward
  - {type: conv, name: c2, out_channels: 4, kernel_size: 3, padding: 1}
  - {type: relu, name: shared, from: c2}     # no: c2 is read by the concat too
  - {type: concat, name: cat, from: [c2, shared]}
  - {type: conv, name: c3, out_channels: 4, kernel_size: 1}
  - {type: add, name: add_first, from: [c3, after_relu]}   # yes: c3 is read only here
  - {type: add, name: add_second, from: [after_relu, add_first]}  # no: after_relu is a ReLU's
  - flatten                                  # a view of add_second
  - {type: relu, name: after_view}           # yes: add_second is read only through the view
"""


def test_relu_and_add_run_in_place_exactly_where_nothing_else_needs_the_input():
    analysis = archspec.analyze(archspec.loads(CASES))
    assert analysis.inplace_layers == {"after_bn", "add_first", "after_view"}


def test_a_value_that_is_a_network_output_is_never_overwritten():
    spec = """
name: two_outputs
input: [4, 8, 8]
layers:
  - {type: conv, name: c, out_channels: 4, kernel_size: 1}
  - {type: relu, name: r}
outputs: [c, r]
"""
    assert archspec.analyze(archspec.loads(spec)).inplace_layers == set()


def test_the_residual_add_writes_into_the_body_not_into_the_identity_shortcut():
    analysis = archspec.analyze(archspec.loads(RESIDUAL))
    # the identity shortcut is the block input, which the body reads too
    assert {n for n in analysis.inplace_layers if n.endswith("add")} == {"res1.add", "res2.add"}
    model = archspec.compile(analysis.network)
    assert model.res1.add.inplace and model.res1.relu2.inplace


RESIDUAL = """
name: residual_net
input: [3, 12, 12]
layers:
  - {type: conv, name: stem, out_channels: 8, kernel_size: 3, padding: 1, bias: false}
  - {type: batch_norm}
  - relu
  - type: residual
    activation: relu
    shortcut: projection
    layers:
      - {type: conv, out_channels: 8, kernel_size: 3, padding: 1, bias: false}
      - {type: batch_norm}
      - relu
      - {type: conv, out_channels: 8, kernel_size: 3, padding: 1, bias: false}
      - {type: batch_norm}
  - type: residual
    activation: relu
    shortcut: projection
    layers:
      - {type: conv, out_channels: 16, kernel_size: 3, stride: 2, padding: 1, bias: false}
      - {type: batch_norm}
      - relu
      - {type: conv, out_channels: 16, kernel_size: 3, padding: 1, bias: false}
      - {type: batch_norm}
  - {type: dropout, p: 0.3}
  - relu
  - global_avg_pool
  - {type: dense, out_features: 5}
"""


def out_of_place_copy(model):
    copy = archspec.compile(archspec.loads(RESIDUAL)).double()
    copy.load_state_dict(model.state_dict())
    for module in copy.modules():
        if hasattr(module, "inplace"):
            module.inplace = False
    return copy


def step(run, model, x):
    """A train-mode forward and backward: output, input gradient, parameter gradients."""
    torch.manual_seed(3)  # the same dropout mask
    x = x.clone().requires_grad_(True)
    out = run(x)
    (out * torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    return out.detach(), x.grad, {k: p.grad for k, p in model.named_parameters()}


@pytest.mark.parametrize("mode", ["eager", "torch.compile"])
def test_in_place_gradients_equal_the_out_of_place_models(mode):
    torch.manual_seed(0)
    model = archspec.compile(archspec.loads(RESIDUAL)).double()
    assert sum(getattr(m, "inplace", False) for m in model.modules()) >= 6
    reference = out_of_place_copy(model)
    assert not any(getattr(m, "inplace", False) for m in reference.modules())
    x = torch.randn(3, 3, 12, 12, dtype=torch.float64)
    if mode == "torch.compile":
        torch._dynamo.reset()
        run = torch.compile(model, fullgraph=True, backend="aot_eager")
    else:
        run = model
    out, x_grad, grads = step(run, model, x)
    want_out, want_x_grad, want_grads = step(reference, reference, x)
    torch.testing.assert_close(out, want_out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x_grad, want_x_grad, rtol=1e-12, atol=1e-12)
    assert grads.keys() == want_grads.keys()
    for key in grads:
        torch.testing.assert_close(grads[key], want_grads[key], rtol=1e-10, atol=1e-12, msg=key)
    # the running statistics of batch norm saw the same batches
    for (key, buffer), want in zip(model.named_buffers(), reference.buffers()):
        torch.testing.assert_close(buffer, want, rtol=1e-12, atol=1e-12, msg=key)


def test_torch_export_of_the_in_place_model_computes_the_out_of_place_outputs():
    torch.manual_seed(0)
    model = archspec.compile(archspec.loads(RESIDUAL)).eval()
    reference = out_of_place_copy(model).float().eval()
    x = torch.randn(2, 3, 12, 12)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), reference(x), rtol=1e-5, atol=1e-5)

