"""Weights from elsewhere (torchvision's pretrained files, another run's state_dict) loaded into a
compiled spec, strictly: every missing, unexpected, mis-shaped or mis-typed tensor is found
before any is copied, and reported together (WeightsError), each at the spec line of the layer
it belongs to, with a did-you-mean for renamed layers. `skip` leaves layers out of loading
(a new head for fine-tuning): they keep their fresh weights, and the file's tensors for them
are ignored."""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping

import torch
import torch.nn as nn

from ..errors import MAX_KEPT, CheckpointError, Diagnostic, InternalError, WeightsError
from ..ir import Network
from ..frontend.messages import suggest
from .checkpoint import FORMAT, read_untrusted

COUNTER = "num_batches_tracked"  # BatchNorm's counter: files saved before PyTorch 0.4.1 lack it
SAVE_ONE = "save a model's weights with torch.save(model.state_dict(), FILE)"
COMPARISONS = 20_000  # name comparisons for did-you-means: bounded time for huge models


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
    skip = tuple(p.rstrip(".") for p in skip)  # "fc." means fc
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
    missing key and an unexpected one that look renamed are one problem, reported once with
    both names."""
    where = _quoted(name)
    absent = [k for k in expected if k not in given and not _skipped(k, skip)]
    extra = [k for k in given if k not in expected and not _skipped(k, skip)]
    paired = renamings(absent, extra, expected, given)
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
            problems.append(_at_layer(net, key, f"the weights have no '{key}' "
                                      f"{_shape(expected[key])}", _fresh_hint(key)))
    renamed = set(paired.values())
    for key in extra:
        if key not in renamed:
            problems.append(_at_layer(net, key, f"'{key}' {_shape(given[key])} in {where} "
                                      "belongs to no layer of the spec", "the spec has no layer "
                                      "of that name; leave it out of loading with --skip "
                                      f"{key.rsplit('.', 1)[0]} if it is not needed"))
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


def renamings(absent: list[str], extra: list[str], expected: dict, given: dict) -> dict:
    """{key the spec has: key the file has instead}, for tensors that look renamed: the same
    parameter name (weight, running_mean) under a similarly spelled layer path, a tensor of the
    same shape first. Each key is used once, the closest pairs first. Keys with the same
    numbers (copy indices) are compared first; then the rest, within a fixed budget of
    comparisons, so a wholly foreign file of a huge model is reported in bounded time."""
    pairs: dict[str, str] = {}
    budget = [COMPARISONS]

    def pair_up(candidates_of) -> None:
        scored = []
        for key in absent[:MAX_KEPT]:
            if key in pairs:
                continue
            path = key.rpartition(".")[0]
            matcher = difflib.SequenceMatcher(None, b=path)
            for other in candidates_of(key):
                if budget[0] <= 0:
                    break
                budget[0] -= 1
                matcher.set_seq1(other.rpartition(".")[0])
                if matcher.real_quick_ratio() < 0.35 or matcher.quick_ratio() < 0.35:
                    continue
                ratio = matcher.ratio()
                same = given[other].shape == expected[key].shape
                if ratio >= 0.5 or (same and ratio >= 0.35):
                    scored.append((ratio + (0.3 if same else 0), key, other))
        taken = set(pairs.values())
        for _, key, other in sorted(scored, key=lambda t: -t[0]):
            if key not in pairs and other not in taken:
                pairs[key] = other
                taken.add(other)

    by_numbers: dict[tuple, list[str]] = {}
    by_leaf: dict[str, list[str]] = {}
    for key in extra:
        by_numbers.setdefault(_signature(key), []).append(key)
        by_leaf.setdefault(key.rpartition(".")[2], []).append(key)
    pair_up(lambda key: by_numbers.get(_signature(key), ()))
    taken = set(pairs.values())
    pair_up(lambda key: (k for k in by_leaf.get(key.rpartition(".")[2], ()) if k not in taken))
    return pairs


def _signature(key: str) -> tuple:
    """The parameter name and the numbers in the layer path: what a renaming usually keeps."""
    path, _, leaf = key.rpartition(".")
    return (leaf, tuple(re.findall(r"\d+", path)))


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
        close = suggest(prefix, names)
        problems.append(Diagnostic(
            f"skip '{prefix}' names no layer or block with weights in the spec",
            file=net.source.file, hint=f"did you mean '{close}'?" if close else
            "give a layer or block name as the state_dict has it, e.g. fc or layer4"))
    return problems


def _skipped(key: str, skip: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in skip)


def _shape(tensor: torch.Tensor) -> str:
    return str(list(tensor.shape))


def _quoted(name: str) -> str:
    return name if name.startswith("the ") else f"the weights '{name}'"
