"""Label-smoothed cross-entropy (section 5.4, epsilon_ls = 0.1), summed over real target tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def label_smoothed_nll_loss(logits: Tensor, target: Tensor, epsilon: float, ignore_index: int) -> tuple[Tensor, Tensor]:
    """(loss, nll) summed over the positions whose target is not `ignore_index`.

    The smoothed target puts 1 - epsilon on the reference token and epsilon spread evenly over the whole vocabulary:
    loss = (1 - epsilon) * nll + epsilon * mean_v(-log p_v). Computed in fp32 whatever the model's precision.
    logits (N, V) or (B, T, V); target of the matching shape without V.
    """
    logits = logits.reshape(-1, logits.shape[-1])
    target = target.reshape(-1)
    keep = target.ne(ignore_index).float()  # a multiplied mask, not indexing: no host-device sync
    lprobs = F.log_softmax(logits.float(), dim=-1)  # (N, V)
    nll = -lprobs.gather(1, target[:, None]).squeeze(1) * keep  # (N,)
    smooth = -lprobs.mean(dim=-1) * keep  # (N,)
    loss = (1.0 - epsilon) * nll + epsilon * smooth
    return loss.sum(), nll.sum()
