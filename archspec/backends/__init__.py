"""Back ends: PyTorch (pytorch/, verify), graphviz (diagram), the terminal table (report)."""
from __future__ import annotations

from ..errors import TorchMissing

TORCH_PIN = "torch==2.13.0"
INSTALL_HINT = (f"install it: pip install {TORCH_PIN} --index-url "
                "https://download.pytorch.org/whl/cpu (the CPU build), or the build for your "
                "platform from https://pytorch.org (e.g. with CUDA)")


def require_torch():
    """The torch module, or TorchMissing saying how to install it. compile, build, verify and
    checkpoints need torch; check and diagram never import it."""
    try:
        import torch
    except ModuleNotFoundError as exc:
        if (exc.name or "torch").split(".")[0] != "torch":
            raise TorchMissing(f"PyTorch cannot be imported: {exc}", INSTALL_HINT) from None
        raise TorchMissing("PyTorch (the torch package) is not installed; compiling, building, "
                           "verifying and loading checkpoints need it", INSTALL_HINT) from None
    except ImportError as exc:  # installed but broken (a missing shared library, ...)
        raise TorchMissing(f"PyTorch is installed but cannot be imported: {exc}",
                           INSTALL_HINT) from None
    return torch
