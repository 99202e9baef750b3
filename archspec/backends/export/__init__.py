"""Export a checked spec to a format that runs without archspec: standalone PyTorch source
(python_source), a torch.export program (exported_program), ONNX (onnx_model).

Every target reads the spec's input shape from the analysis; each writes its file through
archspec.fileio's output rule (atomic, never a half-written file)."""
from __future__ import annotations

import os

from ...analysis import Analysis
from ...fileio import write_output

TARGETS = ("python", "onnx", "torch-export")


def export_analysis(analysis: Analysis, target: str, output: str | os.PathLike, *,
                    spec_file: str | None = None, max_memory: int | None = None) -> int:
    """Write the analysed spec as target to output; the bytes written."""
    if target == "python":
        from .python_source import python_source
        data = python_source(analysis, spec_file).encode("utf-8")
        return write_output(output, lambda f: f.write(data), size=len(data))
    if target == "torch-export":
        from .exported_program import save_exported_program
        return save_exported_program(analysis, output, max_memory=max_memory)
    if target == "onnx":
        from .onnx_model import save_onnx
        return save_onnx(analysis, output, max_memory=max_memory)
    raise ValueError(f"unknown export target '{target}' (one of {', '.join(TARGETS)})")
