"""An exponential moving average of the parameters (Marian's --exponential-smoothing, fairseq's EMA).

After each optimizer step, ema = d * ema + (1 - d) * weights with d = min(decay, (1 + t) / (10 + t)) at update t: the
warm-up keeps a short run from averaging in its random initial weights (at t = 1, d is 2/11). The average lives in a
copy of the model, so validation and the checkpoints' `model` are that copy as it is; the raw weights go on training
(and into the checkpoint's training state, for an exact resume).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, update: int) -> float:
    return min(decay, (1 + update) / (10 + update))


class ExponentialMovingAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self._averaged = list(self.model.parameters())
        self._raw = list(model.parameters())

    @torch.no_grad()
    def update(self, update: int) -> None:
        """Fold in the weights after optimizer step number `update` (1 for the first)."""
        # One fused call over all tensors: ema += (1 - d) * (weights - ema).
        torch._foreach_lerp_(self._averaged, self._raw, 1.0 - ema_decay_at(self.decay, update))
