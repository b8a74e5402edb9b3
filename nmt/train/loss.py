"""Label-smoothed cross-entropy (section 5.4, epsilon_ls = 0.1), summed over real target tokens.

With a smoothed target q = (1 - eps) * onehot(y) + eps / V, the loss of one token is
    -sum_v q_v log p_v = logsumexp(z) - (1 - eps) * z_y - eps * mean_v(z_v)
and its gradient with respect to the logits z is softmax(z) - q. Written as an autograd Function that works through
the (tokens x vocabulary) logits a block of rows at a time, it allocates one such matrix (the gradient), where the
composed log_softmax / gather / mean materialize several (on a CPU that was 20% of a small model's step).
"""

from __future__ import annotations

import torch
from torch import Tensor


# Rows of logits handled at a time: temporaries of a few MB stay in cache and are recycled by the allocator, where
# whole-matrix temporaries (hundreds of MB) are fresh pages on every step.
CHUNK_ROWS = 256


class _LabelSmoothedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, weight: Tensor, epsilon: float):
        compute_dtype = torch.promote_types(logits.dtype, torch.float32)
        lse = torch.empty(logits.shape[0], dtype=compute_dtype, device=logits.device)  # (N,)
        mean_logit = torch.empty_like(lse)
        for start in range(0, logits.shape[0], CHUNK_ROWS):
            rows = logits[start:start + CHUNK_ROWS].to(compute_dtype)
            lse[start:start + CHUNK_ROWS] = torch.logsumexp(rows, dim=-1)
            mean_logit[start:start + CHUNK_ROWS] = rows.mean(dim=-1)
        target_logit = logits.gather(1, target[:, None]).squeeze(1).to(compute_dtype)  # (N,)
        nll = (lse - target_logit) * weight
        smooth = (lse - mean_logit) * weight
        loss = (1.0 - epsilon) * nll + epsilon * smooth
        ctx.save_for_backward(logits, target, weight, lse)
        ctx.epsilon = epsilon
        ctx.set_materialize_grads(False)  # an output nobody differentiates gets None, not a tensor of zeros
        return loss.sum(), nll.sum()

    @staticmethod
    def backward(ctx, grad_loss: Tensor | None, grad_nll: Tensor | None):
        logits, target, weight, lse = ctx.saved_tensors
        epsilon, vocab_size = ctx.epsilon, logits.shape[-1]
        zero = torch.zeros((), dtype=lse.dtype, device=lse.device)
        # d loss / d z = softmax(z) - q, with q the smoothed target; d nll / d z = softmax(z) - onehot(y).
        scale_loss = weight * (grad_loss if grad_loss is not None else zero)  # (N,)
        scale_nll = weight * (grad_nll if grad_nll is not None else zero)  # (N,)
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], CHUNK_ROWS):
            end = start + CHUNK_ROWS
            probs = grad[start:end]  # (rows, V), filled in place
            torch.sub(logits[start:end], lse[start:end, None].to(logits.dtype), out=probs).exp_()
            probs.mul_((scale_loss[start:end] + scale_nll[start:end])[:, None].to(probs.dtype))
            probs.sub_((scale_loss[start:end] * (epsilon / vocab_size))[:, None].to(probs.dtype))
        on_target = -(scale_loss * (1.0 - epsilon) + scale_nll)  # (N,)
        grad.scatter_add_(1, target[:, None], on_target[:, None].to(grad.dtype))
        return grad, None, None, None


def label_smoothed_nll_loss(logits: Tensor, target: Tensor, epsilon: float, ignore_index: int) -> tuple[Tensor, Tensor]:
    """(loss, nll) summed over the positions whose target is not `ignore_index`, computed in fp32.

    loss = (1 - epsilon) * nll + epsilon * mean_v(-log p_v), as torch.nn.functional.cross_entropy with
    label_smoothing=epsilon and reduction="sum". logits (N, V) or (B, T, V); target of the same shape without V.
    """
    logits = logits.reshape(-1, logits.shape[-1])
    target = target.reshape(-1)
    weight = target.ne(ignore_index).float()  # a multiplied mask, not indexing: no host-device sync
    return _LabelSmoothedCrossEntropy.apply(logits, target, weight, epsilon)
