"""torchvision's models as measured by PyTorch (tests/data/torchvision/<model>.json): input and
output shapes, parameter, buffer, MAC and FLOP counts, and the state_dict layout (every key with
its shape, in order). The figures are independent of archspec: see tests/data/torchvision/README.md.

    from torchvision_layouts import MODELS, ZOO, layout, random_state_dict
    ref = layout("resnet50")
    ref.params, ref.macs, ref.keys()[:2], ref.shapes()["fc.weight"]   # 25557032, ..., (1000, 2048)
    spec, params = ZOO["resnext50_32x4d"]   # "specs/resnet.yaml", {"depth": 50, "groups": 32, ...}
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data" / "torchvision"
MODELS = tuple(sorted(p.stem for p in DATA.glob("*.json")))

# The zoo spec and --set values that make each model (issue 12's acceptance commands).
_RESNETS = {"resnet18": {"depth": 18}, "resnet34": {"depth": 34}, "resnet50": {"depth": 50},
            "resnet101": {"depth": 101}, "resnet152": {"depth": 152},
            "resnext50_32x4d": {"depth": 50, "groups": 32, "width_per_group": 4},
            "resnext101_32x8d": {"depth": 101, "groups": 32, "width_per_group": 8},
            "wide_resnet50_2": {"depth": 50, "width_per_group": 128},
            "wide_resnet101_2": {"depth": 101, "width_per_group": 128}}
ZOO: dict[str, tuple[str, dict]] = {
    **{name: ("specs/resnet.yaml", params) for name, params in _RESNETS.items()},
    **{f"vgg{d}{bn}": ("specs/vgg.yaml", {"depth": d, "batch_norm": bool(bn)})
       for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    **{f"densenet{d}": ("specs/densenet.yaml", {"depth": d}) for d in (121, 161, 169, 201)},
    **{name: (f"specs/{name}.yaml", {}) for name in (
        "squeezenet1_0", "squeezenet1_1", "inception_v3", "googlenet", "mobilenet_v2", "alexnet",
        "efficientnet_b0", "convnext_tiny", "vit_b_16")},
}


@dataclass(frozen=True)
class Layout:
    name: str
    model: str  # the torchvision call that was measured
    input: tuple[int, ...]  # without the batch dimension
    output: tuple[int, ...]
    params: int
    buffers: int
    macs: int  # FlopCounterMode's FLOPs / 2, batch 1
    flops: int
    state_dict: tuple[tuple[str, tuple[int, ...]], ...]  # (key, shape) in torchvision's order

    def keys(self) -> list[str]:
        return [key for key, _ in self.state_dict]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return dict(self.state_dict)


@cache
def layout(name: str) -> Layout:
    """The measured figures of torchvision's model `name` (e.g. "resnet50", "vgg16_bn")."""
    if name not in MODELS:
        raise KeyError(f"no torchvision data for {name!r}; known: {', '.join(MODELS)}")
    doc = json.loads((DATA / f"{name}.json").read_text())
    return Layout(name=name, model=doc["model"], input=tuple(doc["input"]),
                  output=tuple(doc["output"]), params=doc["params"], buffers=doc["buffers"],
                  macs=doc["macs"], flops=doc["flops"],
                  state_dict=tuple((key, tuple(shape)) for key, shape in doc["state_dict"]))


def random_state_dict(name: str, seed: int = 0) -> dict:
    """A state_dict with torchvision's keys, shapes and order for `name` and random values, as a
    file of pretrained weights would hold (BatchNorm's num_batches_tracked is an int64 counter).
    Stands in for the real download, which tests must not make."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout(name).state_dict:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state
