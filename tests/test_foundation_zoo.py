"""Issue 3's zoo against outside figures (REFERENCE.md, the lecture notes) and against PyTorch."""
from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

import archspec

SPECS = Path(__file__).resolve().parent.parent / "specs"


def analysis(name: str) -> archspec.Analysis:
    return archspec.analyze(SPECS / f"{name}.yaml")


def test_lenet5_layer_by_layer_matches_seed_004():
    a = analysis("lenet5")
    convs = [i for i in a.layers.values() if i.type == "conv"]
    pools = [i for i in a.layers.values() if i.type == "avg_pool"]
    dense = [i for i in a.layers.values() if i.type == "dense"]
    assert [(c.output_shape, c.params) for c in convs] == [((6, 28, 28), 156), ((16, 10, 10), 2416)]
    assert [p.output_shape for p in pools] == [(6, 14, 14), (16, 5, 5)]
    assert [d.params for d in dense] == [48_120, 10_164, 850]
    assert a.params == 61_706 and a.output_shapes == [(10,)]


def test_lenet5_padded_is_seed_001s_sequential():
    a = analysis("lenet5_padded")
    assert a.params == 61_706 and a.output_shapes == [(10,)]


def test_convnet1_seed_000_with_flatten():
    a = analysis("convnet1")
    assert a.layers["m3"].output_shape == (40, 1, 1)
    assert a.params == 14_420


def test_alexnet_params_and_receptive_fields():
    a = analysis("alexnet")
    assert a.params == 61_100_840
    convs = [i for i in a.layers.values() if i.type == "conv"]
    # Seed 004: 51x51 after the second conv, 99x99 after the third.
    assert convs[1].receptive_field.size == (51, 51)
    assert convs[2].receptive_field.size == (99, 99)


def test_vgg16_params_and_receptive_fields():
    a = analysis("vgg16")
    assert a.params == 138_357_544
    assert a.layers["block5.conv3"].receptive_field.size == (196, 196)
    assert a.layers["block5.pool1"].receptive_field.size == (212, 212)
    assert a.layers["block5.pool1"].receptive_field.stride == (32, 32)


def test_fc_400x600_counts_billions_instantly_without_allocating():
    tracemalloc.start()
    a = analysis("fc_400x600")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert a.params == 2_405_025_000  # seed 003
    assert peak < 20 * 2**20          # nothing near the 9.6 GB the weights would take


def test_edges_filter_bank_is_frozen():
    a = analysis("edges")
    assert a.layers["filters"].params == 27 and a.layers["filters"].trainable_params == 0
    assert a.trainable_params == 4  # the 1x1 mixing conv: 3 weights + 1 bias


def test_signal1d_is_one_dimensional():
    a = analysis("signal1d")
    assert a.layers["conv1"].output_shape == (32, 128)   # 'same' at stride 2: ceil(256 / 2)
    assert a.layers["conv2"].output_shape == (64, 64)
    assert a.output_shapes == [(6,)]


SMALL = ["lenet5", "lenet5_padded", "convnet1", "signal1d", "edges", "alexnet", "vgg16"]


@pytest.mark.parametrize("name", SMALL)
def test_analysis_equals_pytorch_on_cpu(name):
    from archspec.backends.verify import mismatches
    batch = 1 if name in ("alexnet", "vgg16") else 3
    assert mismatches(analysis(name), batch_size=batch) == []


def test_fc_400x600_compiles_on_meta_only():
    from archspec.backends.verify import mismatches
    a = analysis("fc_400x600")
    assert mismatches(a, device="meta") == []
    with pytest.raises(archspec.SpecError) as err:
        archspec.compile(a.network, max_param_bytes=2**30)
    assert "GiB" in err.value.diagnostics[0].message
    assert "meta" in err.value.diagnostics[0].hint


def test_check_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys; from archspec.cli import main\n"
            "try:\n main(['check', sys.argv[1]])\n"
            "except SystemExit as e: assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(SPECS / "vgg16.yaml")], check=True,
                   capture_output=True)
    assert time.perf_counter() - started < 30  # generous: only catches a hang


def test_activation_memory_for_a_batch():
    a = archspec.analyze(SPECS / "lenet5.yaml", batch_size=64, dtype_bytes=4)
    # every distinct output, none freed: input 1x32x32, conv1+tanh1 2 x 6x28x28, pool1 6x14x14,
    # conv2+tanh2 2 x 16x10x10, pool2 400 (the flatten is a view of it: nothing new),
    # dense/tanh 2 x 120, 2 x 84, logits 10
    elements = 1024 + 2 * 4704 + 1176 + 2 * 1600 + 400 + 2 * 120 + 2 * 84 + 10
    assert a.activation_bytes == elements * 64 * 4
    assert a.param_bytes == 61_706 * 4
