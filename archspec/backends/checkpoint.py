"""Checkpoints: a plain dict {format, spec text, state_dict} saved with torch.save, so that
torch.load(weights_only=True) reads it without running code, and the spec inside documents the
model. The spec is the resolved one (imports inlined), so the file reloads alone. A checkpoint is untrusted input: every way it can be wrong ends in CheckpointError, and
its spec is checked against its tensors on the meta device before a byte is allocated."""
from __future__ import annotations

import os
import pickle
import warnings

import torch
import torch.nn as nn

from ..errors import CheckpointError, InternalError, SpecError
from ..fileio import open_input, write_output
from ..frontend import Limits
from .pytorch.compiler import check_fits, compile_network, settle_allocator, usable_device

FORMAT = "archspec-checkpoint/1"
ZIP = b"PK\x03\x04"  # torch.save's format is a zip archive
MAKE_ONE = "make one with 'archspec build SPEC -o FILE' or archspec.save_checkpoint(model, FILE)"


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> int:
    """Save a model compiled by archspec (trained or not) with its spec text. Written by the
    output rule of archspec.fileio (atomic, free space checked first); returns the bytes written."""
    spec = getattr(model, "archspec_spec", None)
    if not isinstance(spec, str):
        raise CheckpointError("this model carries no archspec spec, so its checkpoint could not "
                              "be loaded back", "save a model made by archspec.compile or "
                              "archspec.load_checkpoint")
    state = model.state_dict()
    if any(t.is_meta for t in state.values()):
        raise CheckpointError("the model is on the meta device: its tensors hold no values to "
                              "save", "compile it on a real device (device='cpu') to save it")
    data = {"format": FORMAT, "spec": spec, "state_dict": state}
    size = checkpoint_bytes(sum(t.numel() * t.element_size() for t in state.values()),
                            len(state), spec)
    return write_output(path, lambda f: torch.save(data, f), size=size)


def checkpoint_bytes(tensor_bytes: int, tensors: int, spec: str) -> int:
    """An upper bound of a checkpoint's size: torch's zip format adds about 300 bytes per tensor
    (headers, 64-byte alignment) and under 2 KiB in all."""
    return tensor_bytes + len(spec.encode("utf-8")) + 1024 * tensors + 8192


def estimated_checkpoint_bytes(analysis) -> int:
    """checkpoint_bytes before building: at most 5 tensors per layer (batch norm), and 8-byte
    counters where the analysis counts dtype bytes."""
    return checkpoint_bytes(analysis.param_bytes + 8 * analysis.buffers, 5 * len(analysis.layers),
                            analysis.network.source.text or "")


def load_checkpoint(path: str | os.PathLike, *, device="cpu", max_memory: int | None = None,
                    limits: Limits = Limits()) -> torch.nn.Module:
    """The model saved in a checkpoint: its spec compiled, its weights restored. Raises
    CheckpointError for anything that is not a sound archspec checkpoint, FileError for a path
    that is not a readable regular file, SpecError when the model would not fit in memory."""
    name = os.fspath(path)
    spec, state = _read(path, name)
    from .. import analyze
    from ..frontend import loads
    try:  # the resolved spec stands alone: an import would read files beside the checkpoint
        analysis = analyze(loads(spec, limits=limits, filename=f"<spec in {name}>",
                                 imports=False))
    except SpecError as exc:
        raise CheckpointError(f"the spec inside '{name}' is not valid:\n{exc.message}",
                              MAKE_ONE) from exc
    skeleton = compile_network(analysis, device="meta")  # shapes only, nothing allocated
    _match(skeleton.state_dict(), state, name)
    device = usable_device(device)
    check_fits(analysis, device, max_memory)
    model = skeleton.to_empty(device=device)  # every tensor is overwritten just below
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:  # _match should have caught it
        raise InternalError(f"checkpoint '{name}' passed the checks but did not load: {exc}")
    if device.type == "cpu":
        settle_allocator()  # as compile does: built on meta, it did not
    return model


def _read(path, name: str) -> tuple[str, dict]:
    """The spec text and state_dict of the file, read without running code."""
    data = read_untrusted(path, name, "checkpoint", "an archspec checkpoint", MAKE_ONE,
                          zip_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"'{name}' is not an archspec checkpoint (no '{FORMAT}' marker)",
                              MAKE_ONE)
    spec, state = data.get("spec"), data.get("state_dict")
    if not isinstance(spec, str):
        raise CheckpointError(f"'{name}' has no spec text (its 'spec' is "
                              f"{type(spec).__name__}, not text)", MAKE_ONE)
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"'{name}' has no weights (its 'state_dict' is not a mapping of "
                              "names to tensors)", MAKE_ONE)
    return spec, state


def read_untrusted(path, name: str, what: str, kind: str, hint: str, *, zip_only: bool = False):
    """What torch.save wrote in the file, read by torch.load(weights_only=True): tensors and
    plain containers only, so no code in it runs. Every failure is a CheckpointError saying the
    file is not `kind` ("an archspec checkpoint"); zip_only refuses torch's legacy (pre-1.6)
    format, which archspec never writes."""
    with open_input(path, what) as handle:
        magic = handle.read(4)
        if not magic:
            raise CheckpointError(f"'{name}' is empty, not {kind}", hint)
        hostile = f"'{name}' is not {kind}, or it contains code; refusing to load it"
        if zip_only and magic != ZIP:  # a bare pickle is refused
            raise CheckpointError(hostile, hint)
        handle.seek(0)
        try:
            with warnings.catch_warnings():  # torch's advice about pickle protocols is not the user's
                warnings.simplefilter("ignore")
                source, mmap = _mappable(handle) if magic == ZIP else (handle, False)
                return torch.load(source, mmap=mmap, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointError(hostile, hint) from exc
        except Exception as exc:  # truncated, empty, or not a zip: torch's reader says many ways
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"'{name}' is damaged or not {kind} ({first})", hint) from exc


def _mappable(handle) -> tuple:
    """torch.load's source: the file we opened, by its /proc name so that torch can map it
    instead of reading every tensor into memory (load_state_dict then copies once)."""
    by_fd = f"/proc/self/fd/{handle.fileno()}"
    return (by_fd, True) if os.path.exists(by_fd) else (handle, False)


def _match(expected: dict, stored: dict, name: str) -> None:
    """The stored tensors are exactly the ones the spec makes: same names, shapes and kinds."""
    missing = [k for k in expected if k not in stored]
    extra = [k for k in stored if k not in expected]
    if missing or extra:
        parts = ([f"missing {_few(missing)}"] if missing else []) + \
                ([f"unexpected {_few(extra)}"] if extra else [])
        raise CheckpointError(f"the weights in '{name}' do not match its spec: "
                              f"{'; '.join(parts)}", MAKE_ONE)
    for key, want in expected.items():
        got = stored[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"the weights in '{name}' do not match its spec: '{key}' is "
                f"{list(got.shape)} in the file and {list(want.shape)} in the spec", MAKE_ONE)
        if got.is_meta:
            raise CheckpointError(f"the weights in '{name}' hold no values: '{key}' was saved "
                                  "from the meta device", MAKE_ONE)
        if got.layout != torch.strided or got.is_complex() or \
                got.is_floating_point() != want.is_floating_point():
            raise CheckpointError(
                f"the weights in '{name}' do not match its spec: '{key}' holds {got.dtype} "
                f"values where the spec has {want.dtype}", MAKE_ONE)


def _few(keys: list[str]) -> str:
    shown = ", ".join(f"'{k}'" for k in keys[:3])
    return shown + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

