"""Which device to run on: the one asked for (checked to exist), else the GPU when there is one."""

from __future__ import annotations

import torch

from nmt.errors import NmtError


def pick_device(name: str | None = None) -> torch.device:
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise NmtError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NmtError(f"--device {name}: no CUDA GPU is visible to this torch ({torch.__version__}); "
                           "leave --device out to use the CPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise NmtError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) are visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise NmtError(f"--device {name}: Apple's MPS backend is not available here")
    return device
