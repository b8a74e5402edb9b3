"""Which device to run on: the one asked for (checked to exist), else the GPU when there is one; and the precision
the matrix products run in there."""

from __future__ import annotations

import contextlib

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


def autocast(device: torch.device, precision: str):
    """fp32: as it is; bf16 / fp16: autocast, the matrix products in half precision while what needs the range
    (softmax, log-probabilities, the loss) stays fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
