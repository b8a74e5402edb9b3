"""Adam and the paper's learning-rate schedule (section 5.3), a pure function of the update number."""

from __future__ import annotations

import torch

from nmt.config import TrainConfig


def inverse_sqrt_lr(step: int, d_model: int, warmup: int, scale: float = 1.0) -> float:
    """lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), for step >= 1.

    It rises linearly for `warmup` updates, peaks at scale * (d_model * warmup)^-0.5, then decays as step^-0.5.
    """
    step = max(step, 1)
    return scale * d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)


def learning_rate(update: int, d_model: int, config: TrainConfig) -> float:
    if config.lr_schedule == "constant":
        return config.lr
    return inverse_sqrt_lr(update, d_model, config.warmup, config.lr)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the config's betas and epsilon; its learning rate is set before every step."""
    kwargs = dict(lr=0.0, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps,
                  weight_decay=config.weight_decay)
    try:  # one fused kernel for all parameters instead of several small ones per tensor
        return torch.optim.Adam(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), **kwargs)
