"""The torchvision reference data is whole: each file's state_dict layout adds up to its own
parameter and buffer counts (BatchNorm's running statistics and counters are the buffers)."""
import math

import pytest
from torchvision_layouts import MODELS, ZOO, layout, random_state_dict

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def test_every_model_of_the_shared_data_is_here():
    assert len(MODELS) == 30
    assert set(ZOO) == set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_the_layout_adds_up_to_the_measured_counts(name):
    ref = layout(name)
    sizes = [(key, math.prod(shape)) for key, shape in ref.state_dict]
    assert sum(n for key, n in sizes if not key.endswith(BUFFERS)) == ref.params
    assert sum(n for key, n in sizes if key.endswith(BUFFERS)) == ref.buffers
    assert ref.macs * 2 == ref.flops
    assert len(set(ref.keys())) == len(ref.keys())


def test_resnet50_figures_from_the_torchvision_docs():
    ref = layout("resnet50")  # torchvision's model card: 25,557,032 parameters, 4.09 GFLOPS
    assert ref.params == 25_557_032
    assert round(ref.macs / 1e9, 2) == 4.09
    assert ref.keys()[:2] == ["conv1.weight", "bn1.weight"]
    assert ref.shapes()["fc.weight"] == (1000, 2048)
    assert (ref.input, ref.output) == ((3, 224, 224), (1000,))


def test_random_state_dict_has_the_layout_in_order():
    state = random_state_dict("resnet18", seed=1)
    assert [(k, tuple(v.shape)) for k, v in state.items()] == list(layout("resnet18").state_dict)
    assert str(state["bn1.num_batches_tracked"].dtype) == "torch.int64"


def test_unknown_model_names_the_known_ones():
    with pytest.raises(KeyError, match="resnet50"):
        layout("resnet51")
