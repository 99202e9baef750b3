"""archspec: neural-network architectures as YAML, checked statically, compiled to PyTorch.

    net = archspec.load("specs/vgg16.yaml")      # parse + expand a file (SpecError on bad input)
    net = archspec.loads(yaml_text)              # the same from YAML text
    net = archspec.load("specs/resnet.yaml", params={"depth": 50})  # set the spec's params
    report = archspec.analyze(net)               # shapes, params, MACs, receptive fields
    model = archspec.compile(net)                # a trainable torch.nn.Module
    model = archspec.compile(net, state_dict="w.pt", skip=["fc"])  # pretrained, fresh head
    archspec.render(net, "vgg16.svg")            # a block diagram (graphviz)
    archspec.export(net, "vgg16.py", to="python")  # also to="onnx", to="torch-export"

Torch is imported only by compile(): checking and drawing stay fast.
"""
from __future__ import annotations

import os
from typing import Any

from . import layers as _layers  # noqa: F401  (registers every layer kind)
from .analysis import Analysis
from .analysis import analyze as _analyze
from .errors import (ArchspecError, CheckpointError, Diagnostic, FileError, InternalError,
                     SpecError, TorchMissing, WeightsError)
from .ir import Network
from .frontend import Limits
from .frontend import load as _load
from .frontend import loads as _loads

__all__ = ["load", "loads", "analyze", "compile", "render", "export", "load_checkpoint", "save_checkpoint",
           "Analysis", "Network", "Diagnostic", "ArchspecError", "SpecError", "FileError",
           "CheckpointError", "WeightsError", "TorchMissing", "InternalError", "Limits"]
__version__ = "0.1.0"


def load(path: str | os.PathLike, *, params: dict[str, Any] | None = None,
         limits: Limits = Limits(), input_shape: list | None = None) -> Network:
    """The spec file at path (a str is always a path, whatever its suffix), expanded into the IR,
    with its `params:` set from `params` (as --set does) and its input shape replaced by
    `input_shape` (as --input does; names such as 'H' leave sizes open). Raises SpecError. For
    YAML text, use loads()."""
    return _load(path, limits=limits, params=params, input_shape=input_shape)


def loads(text: str | bytes, *, params: dict[str, Any] | None = None, limits: Limits = Limits(),
          filename: str = "<string>", input_shape: list | None = None) -> Network:
    """A spec given as YAML text (never read as a path), expanded into the IR, with its params
    set from `params` (and its input shape from `input_shape`, as load). Raises SpecError;
    `filename` names the text in diagnostics."""
    return _loads(text, limits=limits, filename=filename, params=params,
                  input_shape=input_shape)


def _network(spec: Network | str | os.PathLike) -> Network:
    return spec if isinstance(spec, Network) else load(spec)


def analyze(spec: Network | str | os.PathLike, *, batch_size: int = 1,
            dtype_bytes: int = 4, optimizer: str = "adam") -> Analysis:
    """Static shapes, counts, MACs, receptive fields and memory; no torch. Raises SpecError.
    spec: a Network (from load/loads) or a spec file path; optimizer (sgd, momentum, adam)
    sizes the training-step estimate."""
    return _analyze(_network(spec), batch_size=batch_size, dtype_bytes=dtype_bytes,
                    optimizer=optimizer)


def compile(spec: Network | str | os.PathLike, *, device: Any = "cpu",
            max_memory: int | None = None, max_param_bytes: int | None = None,
            state_dict: Any = None, skip: tuple[str, ...] | list[str] = ()):
    """A torch.nn.Module computing the spec, ready to train (each block a module class with a
    generated straight-line forward; model.code shows the source).

    device="meta" builds without allocating memory. Refuses (SpecError) a model whose
    parameters and buffers would not fit in memory unless max_memory allows it (max_param_bytes
    is its older name). Raises TorchMissing when PyTorch is not installed.

    state_dict (a mapping of names to tensors, or the path of a file saved with torch.save,
    read with weights_only=True) loads those weights strictly: WeightsError lists every missing,
    unexpected and mis-shaped tensor at its layer's spec line. skip names layers or blocks
    (state_dict prefixes, e.g. ["fc"]) left out of loading: they keep fresh weights and the
    file's tensors for them are ignored. On device="meta" the weights are checked, not loaded."""
    from .backends import require_torch
    require_torch()
    from .backends.pytorch.compiler import compile_network
    limit = max_memory if max_memory is not None else max_param_bytes
    if skip and state_dict is None:
        raise TypeError("skip= leaves layers out of loading weights: it needs state_dict=")
    if isinstance(skip, str):
        raise TypeError("skip= is a list of layer or block names, e.g. skip=['fc']")
    analysis = analyze(spec)
    model = compile_network(analysis, device=device, max_memory=limit)
    if state_dict is not None:
        from .backends.weights import load_weights
        load_weights(model, analysis.network, state_dict, skip)
    return model


def render(spec: Analysis | Network | str | os.PathLike, output: str | os.PathLike | None = None, **options):
    """Draw a block diagram; see archspec.backends.diagram.render for options."""
    from .backends.diagram import render as _render
    return _render(spec if isinstance(spec, Analysis) else analyze(spec), output, **options)


def export(spec: Network | str | os.PathLike, output: str | os.PathLike, *, to: str = "python",
           max_memory: int | None = None, state_dict: Any = None,
           skip: tuple[str, ...] | list[str] = ()) -> int:
    """Write the spec in a format that runs without archspec; returns the bytes written.
    to="python": standalone PyTorch source whose state_dict keys are compile()'s; "onnx": an ONNX
    model (needs the onnx extra); "torch-export": a torch.export program (.pt2). Raises SpecError
    for a spec with errors, TorchMissing without PyTorch. state_dict and skip load weights into
    the ONNX or .pt2 model as compile() does (Python source holds none)."""
    from .backends import require_torch
    from .backends.export import export_analysis
    analysis = analyze(spec)
    require_torch()
    spec_file = None if isinstance(spec, Network) else os.fspath(spec)
    return export_analysis(analysis, to, output, spec_file=spec_file, max_memory=max_memory,
                           weights=state_dict, skip=skip)


def save_checkpoint(model, path: str | os.PathLike) -> int:
    """Save a model made by compile() or load_checkpoint() (trained or not) as 'archspec build'
    does: its spec text and state_dict, readable with torch.load(weights_only=True). The file is
    written atomically after checking the free space; returns the bytes written."""
    from .backends import require_torch
    require_torch()
    from .backends.checkpoint import save_checkpoint as _save_checkpoint
    return _save_checkpoint(model, path)


def load_checkpoint(path: str | os.PathLike, *, device: Any = "cpu",
                    max_memory: int | None = None):
    """The model saved by 'archspec build' or save_checkpoint(): rebuilt from its spec text,
    weights restored. A checkpoint is untrusted: anything wrong with it raises CheckpointError
    (no code in it ever runs), and nothing is allocated before its tensors match its spec."""
    from .backends import require_torch
    require_torch()
    from .backends.checkpoint import load_checkpoint as _load_checkpoint
    return _load_checkpoint(path, device=device, max_memory=max_memory)
