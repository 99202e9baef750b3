"""archspec: neural-network architectures as YAML, checked statically, compiled to PyTorch.

    net = archspec.load("specs/vgg16.yaml")      # parse + expand (SpecError on bad input)
    report = archspec.analyze(net)               # shapes, params, MACs, receptive fields
    model = archspec.compile(net)                # a trainable torch.nn.Module
    archspec.render(net, "vgg16.svg")            # a block diagram (graphviz)

Torch is imported only by compile(): checking and drawing stay fast.
"""
from __future__ import annotations

import os
from typing import Any

from . import layers as _layers  # noqa: F401  (registers every layer kind)
from .analysis import Analysis
from .analysis import analyze as _analyze
from .errors import Diagnostic, InternalError, SpecError
from .ir import Network
from .spec import Limits
from .spec import load as _load

__all__ = ["load", "analyze", "compile", "render", "load_checkpoint", "Analysis", "Network", "Diagnostic",
           "SpecError", "InternalError", "Limits"]
__version__ = "0.1.0"


def load(source: str | os.PathLike, *, limits: Limits = Limits()) -> Network:
    """A spec from a file path or YAML text, expanded into the IR. Raises SpecError."""
    return _load(source, limits=limits)


def _network(spec: Network | str | os.PathLike) -> Network:
    return spec if isinstance(spec, Network) else load(spec)


def analyze(spec: Network | str | os.PathLike, *, batch_size: int = 1,
            dtype_bytes: int = 4) -> Analysis:
    """Static shapes, counts, MACs, receptive fields and memory; no torch. Raises SpecError."""
    return _analyze(_network(spec), batch_size=batch_size, dtype_bytes=dtype_bytes)


def compile(spec: Network | str | os.PathLike, *, device: Any = "cpu",
            max_param_bytes: int | None = None):
    """A torch.nn.Module (torch.fx.GraphModule) computing the spec, ready to train.

    device="meta" builds without allocating memory. Refuses (SpecError) a model whose
    parameters would not fit in memory unless max_param_bytes allows it."""
    from .backends.torch_backend import compile_network
    return compile_network(analyze(spec), device=device, max_param_bytes=max_param_bytes)


def render(spec: Analysis | Network | str | os.PathLike, output: str | os.PathLike | None = None, **options):
    """Draw a block diagram; see archspec.backends.diagram.render for options."""
    from .backends.diagram import render as _render
    return _render(spec if isinstance(spec, Analysis) else analyze(spec), output, **options)


def load_checkpoint(path: str | os.PathLike, *, device: Any = "cpu"):
    """The model saved by 'archspec build': rebuilt from its spec text, weights restored."""
    from .backends.torch_backend import load_checkpoint as _load_checkpoint
    return _load_checkpoint(path, device=device)
