"""Weights from elsewhere (torchvision's pretrained files, another run's state_dict) loaded into a
compiled spec, strictly: every missing, unexpected, mis-shaped or mis-typed tensor is found
before any is copied, and reported together (WeightsError), each at the spec line of the layer
it belongs to, with a did-you-mean for renamed layers. `skip` leaves layers out of loading
(a new head for fine-tuning): they keep their fresh weights, and the file's tensors for them
are ignored."""
from __future__ import annotations

import difflib
import os
from collections.abc import Mapping

import torch
import torch.nn as nn

from ..errors import MAX_KEPT, CheckpointError, Diagnostic, InternalError, WeightsError
from ..ir import Network
from .checkpoint import FORMAT, read_untrusted

COUNTER = "num_batches_tracked"  # BatchNorm's counter: files saved before PyTorch 0.4.1 lack it
SAVE_ONE = "save a model's weights with torch.save(model.state_dict(), FILE)"
NEAR = 500  # candidates compared per key for a did-you-mean (bounded time for huge models)


def read_weights(source) -> tuple[dict[str, torch.Tensor], str]:
    """(state_dict, name for messages) of a path, a mapping, or an archspec checkpoint's file."""
    if isinstance(source, Mapping):
        name, data = "the state_dict given", source
    else:
        name = os.fspath(source)
        data = read_untrusted(source, name, "weights file", "a weights file (a state_dict "
                              "saved with torch.save)", SAVE_ONE)
        if isinstance(data, dict) and data.get("format") == FORMAT:
            data = data.get("state_dict")  # an archspec checkpoint: its weights
    if not isinstance(data, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise CheckpointError(f"{_quoted(name).replace('the weights ', '')} is not a state_dict (a mapping of names to "
                              "tensors)", "if it is a training checkpoint, save its model's "
                              "part alone: torch.save(checkpoint['model'], FILE)")
    return dict(data), name


def load_weights(model: nn.Module, net: Network, source, skip=()) -> dict[str, int]:
    """Copy the weights of `source` (a path or a state_dict) into the compiled model, except the
    layers under the `skip` prefixes. Raises WeightsError (nothing copied) listing every problem.
    A model on the meta device is only checked. Returns {'loaded': n, 'fresh': m} tensors."""
    state, name = read_weights(source)
    expected = model.state_dict()
    skip = tuple(skip)
    problems = _unknown_skips(net, skip, expected) + weight_problems(net, expected, state, name,
                                                                      skip)
    if problems:
        raise WeightsError(problems[:MAX_KEPT], omitted=max(len(problems) - MAX_KEPT, 0))
    wanted = {k: v for k, v in state.items() if k in expected and not _skipped(k, skip)}
    if not any(t.is_meta for t in expected.values()):
        try:
            with torch.no_grad():
                model.load_state_dict(wanted, strict=False)
        except (RuntimeError, ValueError, TypeError) as exc:  # the checks above should catch it
            raise InternalError(f"{_quoted(name)} passed the checks but did not load: "
                                f"{exc}") from exc
    return {"loaded": len(wanted), "fresh": len(expected) - len(wanted)}


def weight_problems(net: Network, expected: dict, given: dict, name: str,
                    skip: tuple[str, ...] = ()) -> list[Diagnostic]:
    """Every way `given` fails to fit `expected` (the compiled model's state_dict), located. A
    missing key and an unexpected one that are each other's nearest (a renamed layer) are one
    problem, reported once with both names."""
    where = _quoted(name)
    absent = [k for k in expected if k not in given and not _skipped(k, skip)]
    extra = [k for k in given if k not in expected and not _skipped(k, skip)]
    near_absent = _near(absent, extra, given, expected)
    near_extra = _near(extra, absent, expected, given)
    paired = {k: n for k, n in near_absent.items() if near_extra.get(n) == k}
    problems = []
    for key in absent:
        near = paired.get(key)
        if near is not None:
            same = "the same shape" if given[near].shape == expected[key].shape else \
                f"shape {_shape(given[near])}"
            problems.append(_at_layer(net, key, f"the weights have no '{key}' "
                                      f"{_shape(expected[key])}; they have '{near}' ({same}), "
                                      "which no layer of the spec has", f"did you mean "
                                      f"'{near}'? name the layer so that its tensors are named "
                                      "as in the file (or rename the key in the file)"))
        elif not key.endswith("." + COUNTER):  # a file from before the counter starts it at 0
            near = near_absent.get(key)
            problems.append(_at_layer(net, key, f"the weights have no '{key}' "
                                      f"{_shape(expected[key])}", _fresh_hint(key) if near is
                                      None else f"did you mean '{near}' (in the file)?"))
    for key in extra:
        if key in paired.values():
            continue
        near = near_extra.get(key)
        hint = (f"did you mean '{near}'?" if near else "the spec has no layer of that name; "
                "leave it out of loading with --skip " f"{key.rsplit('.', 1)[0]} if it is not "
                "needed")
        problems.append(_at_layer(net, near or key, f"'{key}' {_shape(given[key])} in {where} "
                                  "belongs to no layer of the spec", hint))
    for key, want in expected.items():
        got = given.get(key)
        if got is None or _skipped(key, skip):
            continue
        if tuple(got.shape) != tuple(want.shape):
            problems.append(_at_layer(net, key, f"'{key}' is {_shape(got)} in {where} but "
                                      f"{_shape(want)} in the spec", _fresh_hint(key)))
        elif got.is_meta or got.layout != torch.strided or got.is_complex() or \
                got.is_floating_point() != want.is_floating_point():
            held = "no values (saved from the meta device)" if got.is_meta else \
                f"{got.dtype} values ({got.layout})"
            problems.append(_at_layer(net, key, f"'{key}' holds {held} in {where} where the "
                                      f"spec has {want.dtype}", _fresh_hint(key)))
    return sorted(problems, key=lambda d: (d.line is None, d.line or 0, d.column or 0))


def _fresh_hint(key: str) -> str:
    layer = key.rsplit(".", 1)[0]
    return (f"to keep this layer's fresh weights (e.g. a new head), leave it out of loading: "
            f"--skip {layer} (skip=['{layer}'])")


def _near(keys: list[str], candidates: list[str], cand_state: dict, key_state: dict) -> dict:
    """For each key, the unmatched candidate it most likely is: same parameter name and, first
    choice, the same shape (a renamed layer keeps its tensors), the closest spelling."""
    groups: dict[tuple, list[str]] = {}
    for c in candidates:
        groups.setdefault((c.rsplit(".", 1)[-1], tuple(cand_state[c].shape)), []).append(c)
        groups.setdefault((c.rsplit(".", 1)[-1], None), []).append(c)
    found = {}
    for key in keys[:MAX_KEPT]:
        leaf = key.rsplit(".", 1)[-1]
        for group, cutoff in (((leaf, tuple(key_state[key].shape)), 0.5), ((leaf, None), 0.75)):
            close = difflib.get_close_matches(key, groups.get(group, [])[:NEAR], n=1,
                                              cutoff=cutoff)
            if close:
                found[key] = close[0]
                break
    return found


def _at_layer(net: Network, key: str, message: str, hint: str) -> Diagnostic:
    """A diagnostic at the spec line of the layer whose module holds `key` (the longest node
    name that prefixes it), else of its innermost block, else at the spec's layer list."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        owner = ".".join(parts[:cut])
        node = net.nodes.get(owner)
        if node is not None:
            return net.source.diagnostic(node.path, message, hint=hint, layer=node.name,
                                         notes=node.context)
        block = net.blocks.get(owner)
        if block is not None:
            return net.source.diagnostic(block.path, message, hint=hint, layer=block.name)
    return net.source.diagnostic(("layers",), message, hint=hint, at_key=True)


def _unknown_skips(net: Network, skip: tuple[str, ...], expected: dict) -> list[Diagnostic]:
    """A skip prefix must name a layer or block that has weights, or it would silently skip
    nothing (a typo loading the old head)."""
    problems = []
    for prefix in skip:
        if any(_skipped(k, (prefix,)) for k in expected):
            continue
        names = sorted({k.rsplit(".", 1)[0] for k in expected} | set(net.blocks))
        close = difflib.get_close_matches(prefix, names, n=1)
        problems.append(Diagnostic(
            f"skip '{prefix}' names no layer or block with weights in the spec",
            file=net.source.file, hint=f"did you mean '{close[0]}'?" if close else
            "give a layer or block name as the state_dict has it, e.g. fc or layer4"))
    return problems


def _skipped(key: str, skip: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in skip)


def _shape(tensor: torch.Tensor) -> str:
    return str(list(tensor.shape))


def _quoted(name: str) -> str:
    return name if name.startswith("the ") else f"the weights '{name}'"
