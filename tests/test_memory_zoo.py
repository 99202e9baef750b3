"""The zoo's memory figures against PyTorch running the compiled models: saved-for-backward
per layer against torch.autograd.graph.saved_tensors_hooks (train mode), the inference peak
against the layer outputs alive while the model runs (eval mode)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import archspec
from archspec.backends.memory_probe import measure_inference_peak, measure_saved_bytes

SPECS = Path(__file__).resolve().parent.parent / "specs"
ZOO = sorted(p.stem for p in SPECS.glob("*.yaml"))
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
# fc_400x600's 9.6 GB of weights run on the meta device (no batch norm there, whose half
# statistics are the one thing the meta kernels size differently from the CPU's)
DEVICE = {"fc_400x600": "meta"}
# The large models run in float32 always and in the other dtypes with ARCHSPEC_SLOW=1 (half
# precision on the CPU takes minutes each); every kind's rule runs in every dtype in
# test_memory_rules.py. PyTorch's CPU has no half avg_pool3d, which GoogLeNet's LRN uses.
LARGE = {"alexnet", "vgg16", "resnet18", "resnet50", "googlenet", "googlenet_paper", "mobilenet_v2",
         "inception_v3", "squeezenet1_0", "squeezenet1_1", "vgg", "resnet", "densenet",
         "efficientnet_b0", "convnext_tiny", "vit_b_16"}
NO_HALF_KERNELS = {"googlenet_paper"}


@pytest.fixture(autouse=True, scope="module")
def torch_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def zoo_cases():
    for name in ZOO:
        for dtype in DTYPE_BYTES:
            marks = []
            if DTYPE_BYTES[dtype] == 2 and name in NO_HALF_KERNELS:
                marks = [pytest.mark.skip(reason="PyTorch's CPU lacks avg_pool3d in half types")]
            elif dtype != "float32" and name in LARGE and not os.environ.get("ARCHSPEC_SLOW"):
                marks = [pytest.mark.skip(reason="a large model in another dtype: "
                                                 "ARCHSPEC_SLOW=1 runs it")]
            yield pytest.param(name, dtype, marks=marks, id=f"{name}-{dtype}")


@pytest.mark.parametrize("name, dtype", list(zoo_cases()))
def test_zoo_memory_equals_pytorch(name, dtype):
    analysis = archspec.analyze(SPECS / f"{name}.yaml", batch_size=2,
                                dtype_bytes=DTYPE_BYTES[dtype])
    device = DEVICE.get(name, "cpu")
    assert analysis.saved_bytes == measure_saved_bytes(analysis, dtype, device)
    assert analysis.inference_peak_bytes == measure_inference_peak(analysis, dtype, device)


def running_stat_bytes(name: str) -> int:
    """Batch norm's running mean and variance: autograd saves them too, but they are model
    state (buffers), which archspec counts with the parameters, not as saved activations."""
    model = archspec.compile(SPECS / f"{name}.yaml", device="meta")
    return sum(b.numel() * b.element_size() for n, b in model.named_buffers()
               if n.endswith(("running_mean", "running_var")))


@pytest.mark.parametrize("name, measured", [
    ("lenet5", 72_864), ("resnet18", 44_436_480), ("vgg16", 146_509_824),
    ("mobilenet_v2", 156_691_968)])
def test_saved_bytes_reproduce_the_measured_table(name, measured):
    """Figures measured by a user with saved_tensors_hooks (batch 2, float32, parameters
    excluded, buffers included)."""
    analysis = archspec.analyze(SPECS / f"{name}.yaml", batch_size=2)
    assert analysis.total_saved_bytes == measured - running_stat_bytes(name)


def test_a_relu_output_kept_by_the_next_conv_counts_once():
    """conv -> relu -> conv, batch 1, float32, written out: conv1 keeps the 1x8x8 input (256 B),
    the relu keeps its 4x6x6 output (576 B) and conv2 keeps that same tensor (counted once)."""
    spec = """
name: chain
input: [1, 8, 8]
layers:
  - {type: conv, out_channels: 4, kernel_size: 3}
  - relu
  - {type: conv, out_channels: 2, kernel_size: 3}
"""
    analysis = archspec.analyze(archspec.loads(spec))
    assert analysis.saved_bytes == {"conv1": 256, "relu1": 576, "conv2": 0}


def test_frozen_layers_keep_only_what_gradients_need():
    """A frozen conv reading the input needs no gradient at all: it keeps nothing; a frozen
    dense after trainable layers keeps nothing either (its input's gradient needs only the
    weight), while a frozen conv after trainable layers still keeps its input."""
    spec = """
name: frozen
input: [1, 8, 8]
layers:
  - {type: conv, out_channels: 2, kernel_size: 3, trainable: false}
  - {type: conv, out_channels: 2, kernel_size: 3}
  - {type: conv, out_channels: 2, kernel_size: 3, trainable: false}
  - flatten
  - {type: dense, out_features: 3, trainable: false}
"""
    analysis = archspec.analyze(archspec.loads(spec))
    # conv2 keeps conv1's 2x6x6 output; conv3 keeps conv2's 2x4x4 output
    assert analysis.saved_bytes == {"conv1": 0, "conv2": 2 * 36 * 4, "conv3": 2 * 16 * 4,
                                    "flatten1": 0, "dense1": 0}
    assert analysis.saved_bytes == measure_saved_bytes(analysis)


def test_identity_layers_are_not_new_activations():
    """A flatten (a view), a projection that is not needed and dropout in eval share their
    input's storage: they add nothing to the inference memory."""
    spec = """
name: identities
input: [2, 4, 4]
layers:
  - {type: residual, shortcut: projection, layers: [{type: conv, out_channels: 2, kernel_size: 3, padding: 1}]}
  - {type: dropout, p: 0.5}
  - flatten
  - {type: dense, out_features: 3}
"""
    analysis = archspec.analyze(archspec.loads(spec))
    zero = {name for name, info in analysis.layers.items() if analysis.output_bytes(info) == 0}
    # and the residual add runs in place, into the conv's output that nothing else reads
    assert zero == {"res1.shortcut", "drop1", "flatten1", "res1.add"}
    # input and conv output (32 values each; the add's sum is written into the latter) and
    # the 3 outputs, 4 bytes each
    assert analysis.activation_bytes == (2 * 32 + 3) * 4
    assert analysis.inference_peak_bytes == measure_inference_peak(analysis)


def test_check_json_carries_the_memory_figures():
    import json

    from click.testing import CliRunner

    from archspec.cli import main
    result = CliRunner().invoke(main, ["check", str(SPECS / "lenet5.yaml"), "--json",
                                       "--batch-size", "2"])
    doc = json.loads(result.output)
    assert doc["saved_bytes"] == 72_864  # measured with saved_tensors_hooks (batch 2, float32)
    assert sum(layer["saved_bytes"] for layer in doc["layers"]) == 72_864
    analysis = archspec.analyze(SPECS / "lenet5.yaml", batch_size=2)
    assert doc["inference_peak_bytes"] == measure_inference_peak(analysis)


@pytest.mark.parametrize("name", ["lenet5", "edges", "resnet1d_audio", "unet_small"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_gradients_and_optimizer_state_equal_a_real_training_step(name, optimizer):
    from archspec.backends.memory_probe import measure_training_state
    analysis = archspec.analyze(SPECS / f"{name}.yaml", batch_size=2, optimizer=optimizer)
    training = analysis.training
    assert (training.gradient_bytes, training.optimizer_state_bytes) == \
        measure_training_state(analysis, optimizer)


def test_backward_peak_follows_the_liveness_derivation():
    """dense 8->4, relu, dense 4->2; batch 1, float32. Saved: the input x (32 B, by dense1) and
    relu's output (16 B, by relu and dense2). Parameter gradients: dense2 40 B, dense1 144 B.
    Backward, in reverse: at dense2, saved 48 + grads of its output (8) and input (16) + 40 =
    112; at relu, saved 48 + grads of relu's output and input (16 + 16) + 40 = 120; at dense1,
    x alone is still saved (32) + the grad of its output (16) + 184 = 232."""
    spec = """
name: mlp
input: [8]
layers:
  - {type: dense, out_features: 4}
  - relu
  - {type: dense, out_features: 2}
"""
    training = archspec.analyze(archspec.loads(spec), optimizer="adam").training
    assert training.backward_peak_bytes == 232
    assert training.saved_bytes == 48
    # Adam: two copies of the 46 parameters and a 4-byte step count for each of 4 tensors
    assert training.optimizer_state_bytes == 2 * 46 * 4 + 4 * 4
    assert training.step_peak_bytes == 46 * 4 + (2 * 46 * 4 + 16) + 232
