"""The CPU dropout of every training step (nmt/model/dropout.py): 15 random bits an element, p rounded to a multiple
of 1/32768, kept values scaled by the exact inverse of the keep probability."""

import pytest
import torch

from nmt.model.dropout import Dropout, cpu_dropout

LEVELS = 32768


def rounded(p: float) -> float:
    return round(LEVELS * p) / LEVELS


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_the_keep_rate_is_one_minus_p_rounded_to_a_32768th(p):
    torch.manual_seed(0)
    n = 1 << 22
    out = cpu_dropout(torch.ones(n), p)
    kept = out.ne(0).double().mean().item()
    # 5 standard deviations of a binomial over 4M draws: ~1e-3; the rounding itself is below 2e-5.
    assert kept == pytest.approx(1 - rounded(p), abs=5 * ((p * (1 - p)) / n) ** 0.5)


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_kept_values_are_scaled_by_exactly_the_inverse_keep_probability(p):
    torch.manual_seed(1)
    x = torch.randn(1000, 64)
    out = cpu_dropout(x, p)
    kept = out.ne(0)
    scale = 1 / (1 - rounded(p))
    assert torch.equal(out[kept], x[kept] * scale)  # exactly, not approximately
    assert torch.equal(out[~kept], torch.zeros_like(out[~kept]))


def test_backward_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    x = torch.randn(300, 50, requires_grad=True)
    out = cpu_dropout(x, 0.2)
    upstream = torch.randn_like(out)
    out.backward(upstream)
    keep = out.detach().ne(0)
    assert torch.equal(x.grad, upstream * keep * (1 / (1 - rounded(0.2))))


def test_the_same_seed_gives_the_same_mask_and_another_seed_another():
    x = torch.ones(4096)
    masks = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        masks.append(cpu_dropout(x, 0.1).ne(0))
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])


def test_it_matches_torch_dropout_in_expectation():
    torch.manual_seed(3)
    x = torch.randn(256, 256)
    ours = torch.stack([cpu_dropout(x, 0.1) for _ in range(200)]).mean(dim=0)
    theirs = torch.stack([torch.nn.functional.dropout(x, 0.1) for _ in range(200)]).mean(dim=0)
    # Both are unbiased: the mean of 200 draws approaches x, with the same spread.
    assert (ours - x).abs().mean().item() == pytest.approx((theirs - x).abs().mean().item(), rel=0.05)
    assert (ours - x).mean().abs().item() < 2e-3


def test_the_module_drops_only_in_training_and_only_on_contiguous_cpu_tensors():
    module = Dropout(0.5)
    x = torch.ones(64, 64)
    module.eval()
    assert module(x) is x
    module.train()
    torch.manual_seed(4)
    via_module = module(x)
    torch.manual_seed(4)
    assert torch.equal(via_module, cpu_dropout(x, 0.5))
