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
    with warnings.catch_warnings():  # nn.LSTM/GRU rebuild their list of weights as they run
        warnings.filterwarnings("ignore", r"The tensor attributes .*_flat_weights")
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def save_exported_program(analysis: Analysis, output: str | os.PathLike, *,
                          max_memory: int | None = None, model=None) -> int:
    return save_program(exported_program(analysis, model=model, max_memory=max_memory), output)


def save_program(program, output: str | os.PathLike) -> int:
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 path or a buffer, not a file object
    torch.export.save(program, buffer)
    data = buffer.getvalue()
    return write_output(output, lambda f: f.write(data), size=len(data))
