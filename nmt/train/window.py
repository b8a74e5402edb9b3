"""The updates between two metrics.jsonl lines: loss sums kept on the device (read once a line, so a step never waits
for the device), token counts, the last learning rate and gradient norm, and the wall clock since the window opened."""

from __future__ import annotations

import math
import time

import torch

from nmt.train import distributed


class MetricsWindow:
    def __init__(self, device: torch.device):
        self.device = device
        self.reset()

    def reset(self) -> None:
        """Start a new window (also after validation: its time is not training throughput)."""
        self.loss = torch.zeros((), device=self.device)
        self.nll = torch.zeros((), device=self.device)
        self.tgt_tokens = self.src_tokens = 0.0
        self.updates = 0
        self.lr = 0.0
        self.grad_norm = None
        self.started = time.monotonic()

    def add_batch(self, loss: torch.Tensor, nll: torch.Tensor) -> None:
        self.loss += loss.detach()
        self.nll += nll.detach()

    def add_update(self, tgt_tokens: float, src_tokens: float, lr: float, grad_norm) -> None:
        self.tgt_tokens += tgt_tokens
        self.src_tokens += src_tokens
        self.updates += 1
        self.lr = lr
        self.grad_norm = grad_norm

    def record(self, ranks) -> dict | None:
        """The window's figures (loss sums over all ranks, per target token); None for an empty window. A
        collective: every rank calls it."""
        if not self.updates:
            return None
        seconds = max(time.monotonic() - self.started, 1e-9)
        # .item() waits for the device; done here, on logging steps only.
        loss_sum, nll_sum = distributed.all_reduce_sum([self.loss.item(), self.nll.item()], self.device, ranks)
        tokens = max(self.tgt_tokens, 1)
        loss, nll = loss_sum / tokens, nll_sum / tokens
        record = {"loss": loss, "nll_loss": nll, "ppl": round(math.exp(min(nll, 50)), 2), "lr": self.lr,
                  "tgt_tokens_per_s": round(self.tgt_tokens / seconds, 1),
                  "src_tokens_per_s": round(self.src_tokens / seconds, 1)}
        if self.grad_norm is not None:
            record["grad_norm"] = round(float(self.grad_norm), 4)
        return record
