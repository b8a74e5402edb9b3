"""Multi-head attention against a plain softmax(QK^T / sqrt(d_k)) V written here, and against torch's
scaled_dot_product_attention."""

import math

import pytest
import torch
import torch.nn.functional as F

import nmt.model.attention as attention_module
from nmt.device import attention_kernels
from nmt.model.attention import KVCache, MultiHeadAttention


def reference_attention(attn: MultiHeadAttention, query, memory, key_padding_mask=None, causal=False):
    """The paper's equations, head by head, with explicit weight matrices taken from the module."""
    d_model = query.shape[-1]
    heads, d_k = attn.heads, d_model // attn.heads
    if attn.self_attention:
        w_q, w_k, w_v = attn.qkv_proj.weight.split(d_model)
        b_q, b_k, b_v = attn.qkv_proj.bias.split(d_model)
        memory = query
    else:
        w_q, b_q = attn.q_proj.weight, attn.q_proj.bias
        w_k, w_v = attn.kv_proj.weight.split(d_model)
        b_k, b_v = attn.kv_proj.bias.split(d_model)
    outputs = []
    for b in range(query.shape[0]):
        head_outputs = []
        for h in range(heads):
            rows = slice(h * d_k, (h + 1) * d_k)
            q = query[b] @ w_q[rows].T + b_q[rows]
            k = memory[b] @ w_k[rows].T + b_k[rows]
            v = memory[b] @ w_v[rows].T + b_v[rows]
            scores = q @ k.T / math.sqrt(d_k)
            if key_padding_mask is not None:
                scores = scores.masked_fill(key_padding_mask[b][None, :], float("-inf"))
            if causal:
                future = torch.ones_like(scores, dtype=torch.bool).triu(1)
                scores = scores.masked_fill(future, float("-inf"))
            head_outputs.append(torch.softmax(scores, dim=-1) @ v)
        outputs.append(torch.cat(head_outputs, dim=-1) @ attn.out_proj.weight.T + attn.out_proj.bias)
    return torch.stack(outputs)


def test_self_attention_with_padding_mask_matches_reference():
    torch.manual_seed(0)
    attn = MultiHeadAttention(d_model=32, heads=4).eval()
    x = torch.randn(3, 7, 32)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[1, 5:] = True
    mask[2, 2:] = True
    ours = attn(x, key_padding_mask=mask)
    torch.testing.assert_close(ours, reference_attention(attn, x, x, mask), rtol=1e-5, atol=1e-5)


def test_causal_self_attention_matches_reference():
    torch.manual_seed(1)
    attn = MultiHeadAttention(d_model=24, heads=3).eval()
    x = torch.randn(2, 6, 24)
    torch.testing.assert_close(attn(x, causal=True), reference_attention(attn, x, x, causal=True),
                               rtol=1e-5, atol=1e-5)


def test_cross_attention_with_memory_mask_matches_reference():
    torch.manual_seed(2)
    attn = MultiHeadAttention(d_model=16, heads=2, self_attention=False).eval()
    query, memory = torch.randn(2, 4, 16), torch.randn(2, 9, 16)
    mask = torch.zeros(2, 9, dtype=torch.bool)
    mask[0, 6:] = True
    torch.testing.assert_close(attn(query, memory, mask), reference_attention(attn, query, memory, mask),
                               rtol=1e-5, atol=1e-5)


def test_cached_self_attention_one_step_at_a_time_equals_causal_attention():
    torch.manual_seed(3)
    attn = MultiHeadAttention(d_model=16, heads=4).eval()
    x = torch.randn(2, 5, 16)
    cache = KVCache()
    steps = [attn.self_attention_step(x[:, t], cache) for t in range(5)]
    torch.testing.assert_close(torch.stack(steps, dim=1), attn(x, causal=True), rtol=1e-5, atol=1e-5)
    assert cache.keys.shape == (2, 4, 5, 4)  # (B, H, T, D)


@pytest.mark.parametrize("record", [False, True])
def test_cross_attention_step_over_shared_memory_equals_attention_over_repeated_memory(record):
    """Three beams per source attend to one copy of its keys: the same output, and the same weights, as each beam
    attending to its own copy of the memory with its padding mask."""
    torch.manual_seed(4)
    attn = MultiHeadAttention(d_model=16, heads=2, self_attention=False).eval()
    memory = torch.randn(2, 7, 16)
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 4:] = True
    beams = torch.randn(6, 16)  # rows 0-2 read source 0, rows 3-5 source 1
    weights: list[torch.Tensor] | None = [] if record else None
    step = attn.cross_attention_step(beams, attn.memory_cache(memory), ~padding[:, None, None, :], 3, weights)
    rows = torch.tensor([0, 0, 0, 1, 1, 1])
    expected_weights: list[torch.Tensor] = []
    expected = attn(beams[:, None], memory[rows], padding[rows], weights_out=expected_weights)[:, 0]
    torch.testing.assert_close(step, expected, rtol=1e-5, atol=1e-5)
    if record:
        torch.testing.assert_close(weights[0], expected_weights[0], rtol=1e-5, atol=1e-6)  # (6, 1, 7)
        assert weights[0][3:, 0, 4:].abs().max() == 0  # padding gets no weight


def test_cache_reorder_follows_index():
    cache = KVCache()
    keys = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 1)
    cache.update(keys, keys.clone())
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.keys[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]
    cache.reset()
    assert cache.keys is None


@pytest.mark.parametrize("keys", [5, 31, 48])  # the explicit form below and above EXPLICIT_MAX_KEYS, the fused one
@pytest.mark.parametrize("kind", ["padding", "causal", "cross"])
def test_both_attention_paths_equal_torch_sdpa_with_gradients(kind, keys, monkeypatch):
    """MultiHeadAttention's explicit form (short keys, or when weights are asked for) and its fused form both give
    torch.nn.functional.scaled_dot_product_attention's output and gradients."""
    torch.manual_seed(keys)
    attn = MultiHeadAttention(d_model=32, heads=4, self_attention=kind != "cross").train()
    x = torch.randn(3, keys if kind != "cross" else 6, 32, requires_grad=True)
    memory = torch.randn(3, keys, 32, requires_grad=True) if kind == "cross" else None
    mask = None
    if kind != "causal":
        mask = torch.zeros(3, keys, dtype=torch.bool)
        mask[1, keys - 2:] = True
        mask[2, 1:] = True

    def sdpa_reference():
        source = memory if memory is not None else x
        if attn.self_attention:
            q, k, v = attn._split_heads(attn.qkv_proj(x), 3)
        else:
            q = attn._split_heads(attn.q_proj(x), 1)[0]
            k, v = attn._split_heads(attn.kv_proj(source), 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else ~mask[:, None, None, :],
                                             is_causal=kind == "causal")
        return attn.out_proj(out.transpose(1, 2).reshape(x.shape))

    def outputs_and_grads(run):
        out = run()
        grads = torch.autograd.grad(out.square().sum(), [x, *attn.parameters()] + ([memory] if memory is not None
                                                                                   else []))
        return [out, *grads]

    expected = outputs_and_grads(sdpa_reference)
    for limit in (0, 32):  # 0: the fused kernel always; 32: the explicit form up to 32 keys
        monkeypatch.setattr(attention_module, "EXPLICIT_MAX_KEYS", limit)
        ours = outputs_and_grads(lambda: attn(x, memory, key_padding_mask=mask, causal=kind == "causal"))
        for got, want in zip(ours, expected):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    weights: list = []
    with_weights = attn(x, memory, key_padding_mask=mask, causal=kind == "causal", weights_out=weights)
    torch.testing.assert_close(with_weights, expected[0], rtol=1e-4, atol=1e-5)
    assert weights[0].shape == (3, x.shape[1], keys)
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(3, x.shape[1]))


def test_on_cuda_attention_leaves_out_cudnn_and_restores_it():
    """cuDNN attention plans per shape and a decoding step's shape changes every step (benchmarks/README.md, One
    GPU); the flags are process-wide, so they must come back after the decoding."""
    assert torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled()
    with attention_kernels(torch.device("cuda"), cudnn=True), attention_kernels(torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled()
