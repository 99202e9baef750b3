"""Export a checked spec to a format that runs without archspec: standalone PyTorch source
(python_source), a torch.export program (exported_program), ONNX (onnx_model).

Every target reads the spec's input shape from the analysis; each writes its file through
archspec.fileio's output rule (atomic, never a half-written file)."""
from __future__ import annotations

import os

from ...analysis import Analysis
from ...errors import ArchspecError
from ...fileio import write_output

TARGETS = ("python", "onnx", "torch-export")


def export_analysis(analysis: Analysis, target: str, output: str | os.PathLike, *,
                    spec_file: str | None = None, max_memory: int | None = None,
                    weights=None, skip=()) -> int:
    """Write the analysed spec as target to output; the bytes written. weights (a state_dict or
    its file) are loaded first (archspec.backends.weights, strictly), so the ONNX or .pt2 file
    carries them; Python source holds no weights and refuses them."""
    if target == "python":
        if weights is not None:
            raise ArchspecError("Python source holds no weights, so --weights cannot go into it",
                                "export the source without --weights and load the file into "
                                "its module: model.load_state_dict(torch.load(FILE, "
                                "weights_only=True)); or export --to torch-export or onnx")
        from .python_source import python_source
        data = python_source(analysis, spec_file).encode("utf-8")
        return write_output(output, lambda f: f.write(data), size=len(data))
    model = None
    if weights is not None:
        from ..pytorch.compiler import compile_network
        from ..weights import load_weights
        model = compile_network(analysis, max_memory=max_memory)
        load_weights(model, analysis.network, weights, skip)
    if target == "torch-export":
        from .exported_program import save_exported_program
        return save_exported_program(analysis, output, max_memory=max_memory, model=model)
    if target == "onnx":
        from .onnx_model import save_onnx
        return save_onnx(analysis, output, max_memory=max_memory, model=model)
    raise ValueError(f"unknown export target '{target}' (one of {', '.join(TARGETS)})")
