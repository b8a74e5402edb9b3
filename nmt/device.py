"""Which device to run on: the one asked for (checked to exist), else the GPU when there is one; and the precision
the matrix products run in there."""

from __future__ import annotations

import contextlib

import torch

from nmt.errors import NmtError

PRECISIONS = ("fp32", "bf16", "fp16")  # what --precision takes


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


def native_bf16(device: torch.device) -> bool:
    """Whether the device multiplies bf16 matrices in hardware: a CUDA GPU that supports bf16 (Ampere on), a CPU with
    AVX512-BF16 or AMX. Elsewhere oneDNN emulates bf16 and it is slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        capabilities = getattr(torch.cpu, "get_capabilities", dict)()  # torch >= 2.6
        return bool(capabilities.get("avx512_bf16") or capabilities.get("amx_bf16"))
    return False


def training_precision(precision: str, device: torch.device) -> str:
    """The precision a training run uses: `precision` itself, or for auto bf16 where the device has it natively
    (on a CPU with AVX512-BF16, transformer_small makes twice the updates a minute with the same loss per update:
    benchmarks/README.md, "A recipe for small data"), else fp32."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, precision: str):
    """fp32: as it is; bf16 / fp16: autocast, the matrix products in half precision while what needs the range
    (softmax, log-probabilities, the loss) stays fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def attention_kernels(device: torch.device, cudnn: bool = False):
    """The kernels scaled_dot_product_attention may use, for training and decoding. On CUDA, all but cuDNN's (unless
    `cudnn`): cuDNN builds an execution plan for every new shape, and shapes keep changing here: every batch of a
    token-bucketed epoch has its own, and a decoding step has a new one at every step (the keys grow by one) and
    whenever a sentence leaves the batch. On an H200 (transformer_big, bf16; benchmarks/README.md, "One GPU") that
    cost about 10 ms of host time per attention call against 46 us on the GPU: decoding ran 8.7x faster without it,
    and training's first epoch 2.5-3.4x. Flash and memory-efficient attention need no plan. Elsewhere: as it is."""
    if device.type != "cuda" or cudnn:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])
