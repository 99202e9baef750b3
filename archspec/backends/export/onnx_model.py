"""`archspec export --to onnx`: the torch.export program of the model converted by PyTorch's
torch.export-based ONNX exporter (dynamo=True; the TorchScript exporter is deprecated), with a
dynamic batch axis. Needs the onnx extra: onnx and onnxscript (onnxruntime to run the file)."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings

from ...analysis import Analysis
from ...errors import ArchspecError, Diagnostic, SpecError
from ...fileio import write_output
from ...units import human_bytes
from .exported_program import exported_program

INSTALL_HINT = "install the onnx extra: pip install 'archspec[onnx]' (onnx, onnxscript, onnxruntime)"
PROTOBUF_LIMIT = 2 ** 31  # one ONNX protobuf message holds less than 2 GiB


class OnnxMissing(ArchspecError):
    """The ONNX exporter's packages (onnx, onnxscript) cannot be imported."""


def require_onnx() -> None:
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError as exc:
            raise OnnxMissing(f"exporting to ONNX needs the '{package}' package ({exc})",
                              INSTALL_HINT) from None


def save_onnx(analysis: Analysis, output: str | os.PathLike, *,
              max_memory: int | None = None, model=None) -> int:
    require_onnx()
    if analysis.param_bytes >= PROTOBUF_LIMIT:
        raise SpecError(Diagnostic(
            f"the model's {human_bytes(analysis.param_bytes)} of parameters and buffers do not "
            "fit in one ONNX file (at most 2 GiB)", file=analysis.network.source.file, line=1,
            column=1, hint="export with --to torch-export or --to python instead"))
    refuse_unexpressible(analysis)
    data = onnx_bytes(exported_program(analysis, model=model, max_memory=max_memory),
                      analysis)
    return write_output(output, lambda f: f.write(data), size=len(data))


def refuse_unexpressible(analysis: Analysis) -> None:
    """Layers PyTorch's exporter turns into an ONNX model that does not run: refused up front,
    all of them at once. ONNX's LSTM operator has no projection (PyTorch's proj_size)."""
    found = [analysis.network.source.diagnostic(
        node.path + ("proj_size",), "ONNX cannot express an LSTM with proj_size: its LSTM "
        "operator has no projection", layer=node.name,
        hint="export with --to torch-export or --to python, or remove proj_size")
        for node in analysis.network.nodes.values()
        if node.kind.name == "lstm" and node.cfg.proj_size]
    if found:
        raise SpecError(found)


def onnx_bytes(program, analysis: Analysis) -> bytes:
    """The ONNX model of a torch.export program; its input is named 'input', its outputs after
    the spec's output layers."""
    import torch
    try:
        with _quiet():
            onnx_program = torch.onnx.export(program, dynamo=True, input_names=["input"],
                                             output_names=list(analysis.network.outputs),
                                             verbose=False, report=False, verify=False)
    except Exception as exc:  # torch's ConversionError: an operator ONNX cannot express
        layer = _failed_layer(program, str(exc), analysis.network.nodes)
        if layer is None:
            raise
        raise SpecError(analysis.network.source.diagnostic(
            layer.path, f"ONNX cannot express this layer as configured ({_reason(str(exc))})",
            layer=layer.name, hint="export with --to torch-export or --to python, or change "
            "the layer (e.g. an adaptive pool whose input size is a multiple of its output "
            "size)")) from exc
    return _outputs_named_apart(onnx_program.model_proto, analysis).SerializeToString()


def _outputs_named_apart(proto, analysis: Analysis):
    """An output named like a parameter (a direct tensor's layer, e.g. layer_scale1, is both)
    would break ONNX's single assignment: such an initializer is renamed."""
    outputs = set(analysis.network.outputs)
    renamed = {}
    for tensor in proto.graph.initializer:
        if tensor.name in outputs:
            renamed[tensor.name] = tensor.name = f"{tensor.name}.tensor"
    for node in proto.graph.node if renamed else ():  # until a node makes the output
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        for name in node.output:
            renamed.pop(name, None)
    return proto


def _failed_layer(program, message: str, layers: dict):
    """The spec layer whose operator the ONNX exporter could not translate, if it says."""
    match = re.search(r"translating node %(\w+)", message)
    for node in program.graph.nodes if match else ():
        if node.name == match.group(1):
            stack = list((node.meta.get("nn_module_stack") or {}).values())
            return layers.get(stack[-1][0]) if stack else None
    return None


def _reason(message: str) -> str:
    match = re.search(r"No ONNX function found for <OpOverload\(op='([\w.]+)'", message)
    return f"no ONNX operator for {match.group(1)}" if match else "the exporter failed"



@contextlib.contextmanager
def _quiet():
    """The exporter prints progress to stdout (which may be the output file) and logs warnings
    about optional torchvision operators: neither concerns the user."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)
