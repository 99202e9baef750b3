"""Every back end lowers every registered layer kind: a new kind that a back end forgot is a
failing test here, not a KeyError in a user's run."""
from __future__ import annotations

import pytest

from archspec.layers import REGISTRY


def diagram_table():
    from archspec.backends.diagram import LOWERING
    return LOWERING


def pytorch_table():
    from archspec.backends.pytorch.lowering import LOWERING
    return LOWERING


def python_source_table():
    from archspec.backends.export.python_source import CALLS
    return CALLS


# back end -> its lowering table (keyed by layer kind)
TABLES = {
    "diagram": diagram_table,
    "pytorch": pytorch_table,
    "python source": python_source_table,
}


@pytest.mark.parametrize("backend", sorted(TABLES))
def test_every_back_end_lowers_every_registered_kind(backend):
    table = TABLES[backend]()
    assert sorted(set(REGISTRY) - set(table)) == [], f"{backend} cannot lower these kinds"
    assert sorted(set(table) - set(REGISTRY)) == [], f"{backend} lowers kinds that do not exist"


def test_the_diagram_fuses_only_norms_and_activations_into_convs_and_dense_layers():
    table = diagram_table()
    absorbing = {kind for kind, row in table.items() if row.absorbs}
    fused = {kind for kind, row in table.items() if row.fused}
    assert absorbing == {k for k in REGISTRY if REGISTRY[k].family in ("conv", "dense")
                         and k != "projection"} | {"conv_transpose"}
    assert fused <= {k for k in REGISTRY if REGISTRY[k].family in ("norm", "activation")}
    assert {"batch_norm", "relu", "tanh"} <= fused


def test_layer_kinds_no_longer_build_torch_modules_themselves():
    from archspec.layers.base import LayerKind
    assert not any(hasattr(kind, "build_torch") for kind in REGISTRY.values())
    assert not hasattr(LayerKind, "build_torch")
