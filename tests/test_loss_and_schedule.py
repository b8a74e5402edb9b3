"""The loss against PyTorch's cross_entropy, and the schedule against the paper's formula."""

import math

import pytest
import torch
import torch.nn.functional as F

from nmt.train.loss import label_smoothed_nll_loss
from nmt.train.schedule import inverse_sqrt_lr

PAD = 0


def test_label_smoothed_loss_equals_torch_cross_entropy_and_so_does_its_gradient():
    torch.manual_seed(0)
    logits = torch.randn(600, 50, requires_grad=True)  # more rows than one chunk of the loss
    target = torch.randint(0, 50, (600,))
    target[::7] = PAD
    loss, nll = label_smoothed_nll_loss(logits, target, 0.1, PAD)
    reference = F.cross_entropy(logits, target, label_smoothing=0.1, ignore_index=PAD, reduction="sum")
    reference_nll = F.cross_entropy(logits, target, ignore_index=PAD, reduction="sum")
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    assert nll.item() == pytest.approx(reference_nll.item(), rel=1e-5)
    ours, = torch.autograd.grad(loss, logits)
    theirs, = torch.autograd.grad(reference, logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    # "up to normalization": divided by the real tokens it is the library's mean.
    mean = F.cross_entropy(logits, target, label_smoothing=0.1, ignore_index=PAD)
    assert (loss / target.ne(PAD).sum()).item() == pytest.approx(mean.item(), rel=1e-5)


def test_gradient_of_both_outputs_passes_gradcheck():
    torch.manual_seed(1)
    logits = torch.randn(9, 7, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 2, 0, 3, 4, 5, 6, 0, 1])
    assert torch.autograd.gradcheck(lambda z: label_smoothed_nll_loss(z, target, 0.1, PAD), (logits,))


def test_schedule_is_the_papers_formula():
    d_model, warmup = 512, 4000
    for step in (1, 10, 3999, 4000, 4001, 50_000, 100_000):
        expected = d_model ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
        assert inverse_sqrt_lr(step, d_model, warmup) == pytest.approx(expected, rel=1e-12)
    peak = inverse_sqrt_lr(warmup, d_model, warmup)
    assert peak == pytest.approx(1 / math.sqrt(d_model * warmup))
    assert inverse_sqrt_lr(warmup - 1, d_model, warmup) < peak > inverse_sqrt_lr(warmup + 1, d_model, warmup)
    assert inverse_sqrt_lr(100, 512, 4000, scale=2.0) == pytest.approx(2 * inverse_sqrt_lr(100, 512, 4000))
