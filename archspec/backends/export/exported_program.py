"""`archspec export --to torch-export`: the compiled model as a torch.export ExportedProgram
(.pt2), traced in eval mode with a dynamic batch dimension; torch.export.load reads it back."""
from __future__ import annotations

import io
import os
import warnings

import torch

from ...analysis import Analysis
from ...fileio import write_output
from ..pytorch.compiler import compile_network, example_input

EXAMPLE_BATCH = 2  # torch.export specialises sizes 0 and 1, so the example batch is 2


def exported_program(analysis: Analysis, *, model=None, max_memory: int | None = None):
    """The model (by default compiled anew, freshly initialised) traced by torch.export in eval
    mode; the batch size is a dynamic dimension, every other size is the spec's input shape."""
    if model is None:
        model = compile_network(analysis, max_memory=max_memory)
    model.eval()
    example = example_input(analysis, EXAMPLE_BATCH)
    batch = torch.export.Dim("batch", min=1)
    axes = {0: batch}
    axes.update({axis + 1: dim for axis, dim in open_dims(analysis).items()})
    with warnings.catch_warnings():  # nn.LSTM/GRU rebuild their list of weights as they run
        warnings.filterwarnings("ignore", r"The tensor attributes .*_flat_weights")
        if len(axes) > 1:
            try:
                return torch.export.export(model, (example,), dynamic_shapes=(axes,))
            except RuntimeError as exc:  # a size the model fixes (a strided same conv's pads)
                warnings.warn(f"the open sizes stay fixed at the example size: torch.export "
                              f"refused them dynamic ({type(exc).__name__})", stacklevel=2)
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def open_dims(analysis: Analysis) -> dict:
    """{input axis (no batch): torch.export Dim} for the spec's open sizes whose valid set is
    'any n >= a' (Dim(min=a)) or 'multiples of m' (m * Dim): the exported program accepts
    those sizes (torch.export specialises a size of 1: the smallest multiple is 2 m). Others
    stay at the example size."""
    network = analysis.network
    if not network.open_sizes:
        return {}
    from ...sizes import scan_open_sizes
    found = {}
    for name, result in scan_open_sizes(network).items():
        size = network.open_sizes[name]
        low = max(result.start, result.lo)
        if result.extra and any(result.valid(n) for n in result.extra):
            continue
        if result.period == 1 and result.classes:
            dim = torch.export.Dim(name, min=max(low, 2), max=result.hi or 2 ** 31 - 2)
        elif result.classes == (0,) and result.start <= result.period:
            m = result.period
            dim = m * torch.export.Dim(f"{name}_over_{m}", min=max(-(-low // m), 2),
                                       max=(result.hi or 2 ** 31 - 2) // m)
        else:
            continue
        for axis in size.axes:
            found[axis] = dim
    return found


def save_exported_program(analysis: Analysis, output: str | os.PathLike, *,
                          max_memory: int | None = None, model=None) -> int:
    return save_program(exported_program(analysis, model=model, max_memory=max_memory), output)


def save_program(program, output: str | os.PathLike) -> int:
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 path or a buffer, not a file object
    torch.export.save(program, buffer)
    data = buffer.getvalue()
    return write_output(output, lambda f: f.write(data), size=len(data))
