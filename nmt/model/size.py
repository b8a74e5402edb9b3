"""Whether a model can be trained where it is asked to be, checked from its shape before a weight is allocated.

The options' ranges (nmt/config.py) bound each number alone; their product can still be a model no machine holds
(128 layers of width 65,536 are 4 trillion parameters). Building it would take minutes of allocation before the out
of memory error, or swap the machine to a halt, so the run is refused with the estimate instead.
"""

from __future__ import annotations

import os

import torch

from nmt.config import ModelConfig
from nmt.errors import NmtError
from nmt.model.transformer import closed_form_parameter_count

# fp32 weights, their gradients and Adam's two moments: the floor of training memory, activations not counted.
TRAINING_BYTES_PER_PARAMETER = 16


def device_memory(device: torch.device) -> int:
    """Bytes of memory of DEVICE: a GPU's own, else the machine's physical memory."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(config: ModelConfig, device: torch.device) -> None:
    """Raise NmtError, with the estimate, where the model's training state alone exceeds DEVICE's memory."""
    parameters = closed_form_parameter_count(config)
    needed = parameters * TRAINING_BYTES_PER_PARAMETER
    available = device_memory(device)
    if needed > available:
        raise NmtError(
            f"the model would have {parameters / 1e6:,.0f}M parameters (--encoder-layers {config.encoder_layers}, "
            f"--decoder-layers {config.decoder_layers}, --d-model {config.d_model}, --d-ff {config.d_ff}, vocabulary "
            f"{config.vocab_size}): training needs at least {needed / 2**30:,.1f} GiB (16 bytes a parameter: weights, "
            f"gradients, Adam's moments) and {device} has {available / 2**30:,.1f} GiB; choose fewer layers or "
            "smaller widths")
