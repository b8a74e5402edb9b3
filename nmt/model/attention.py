"""Multi-head scaled dot-product attention (section 3.2) and its decoding cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class KVCache:
    """Keys and values of one attention layer during incremental decoding.

    Self-attention appends one position per step; cross-attention computes its keys/values from the encoder output
    once and keeps them. `reorder` follows the beam back-pointers.
    """

    keys: Tensor | None = None  # (B, H, T, D)
    values: Tensor | None = None  # (B, H, T, D)

    def update(self, keys: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            self.keys = torch.cat([self.keys, keys], dim=2)
            self.values = torch.cat([self.values, values], dim=2)
        return self.keys, self.values

    def reorder(self, index: Tensor) -> None:
        if self.keys is not None:
            self.keys = self.keys.index_select(0, index)
            self.values = self.values.index_select(0, index)

    def reset(self) -> None:
        self.keys = self.values = None


# Up to this many keys, attention with several queries runs as explicit matrix products on a CPU (see forward()).
EXPLICIT_MAX_KEYS = 32


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, is_causal: bool, dropout_p: float,
                       weights_out: list[Tensor] | None = None) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V with masks and dropout as F.scaled_dot_product_attention; with `weights_out`, the
    weights averaged over heads, (B, Tq, Tk), are appended to it (alignments, pictures)."""
    Tq, Tk = q.shape[2], k.shape[2]
    scores = torch.matmul(q, k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, H, Tq, Tk)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    if is_causal:
        future = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(Tk - Tq + 1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = scores.float().softmax(dim=-1)
    if weights_out is not None:
        weights_out.append(weights.mean(dim=1))  # (B, Tq, Tk)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return torch.matmul(weights.to(v.dtype), v)  # (B, H, Tq, D)


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O with head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    The h projections of Q, K and V are stored as one (d_model, 3 d_model) matrix for self-attention, or a query matrix
    and a (d_model, 2 d_model) key/value matrix for encoder-decoder attention: the same parameters as the paper's
    (4 d_model^2 + 4 d_model), in fewer, larger matrix products.
    """

    def __init__(self, d_model: int, heads: int, dropout: float = 0.0, self_attention: bool = True):
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.dropout = dropout
        self.self_attention = self_attention
        if self_attention:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model)
        else:
            self.q_proj = nn.Linear(d_model, d_model)
            self.kv_proj = nn.Linear(d_model, 2 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def memory_cache(self, memory: Tensor) -> KVCache:
        """Encoder-decoder attention's keys and values of `memory` (B, S, d_model), computed once for a whole
        decoding: the cache every later step of this layer reads."""
        if self.self_attention:
            raise ValueError("memory_cache is for encoder-decoder attention")
        cache = KVCache()
        cache.update(*self._split_heads(self.kv_proj(memory), 2))  # each (B, H, S, D)
        return cache

    def self_attention_step(self, x: Tensor, cache: KVCache) -> Tensor:
        """One decoding step: x (R, d_model) holds each row's newest position only; its keys and values join `cache`,
        which the query attends to whole (no causal mask is needed: nothing later is in it)."""
        R = x.shape[0]
        q, k, v = self.qkv_proj(x).view(R, 3, self.heads, 1, self.head_dim).unbind(1)  # each (R, H, 1, D)
        k, v = cache.update(k, v)  # (R, H, T, D)
        out = F.scaled_dot_product_attention(q, k, v)  # (R, H, 1, D)
        return self.out_proj(out.reshape(R, -1))

    def cross_attention_step(self, x: Tensor, cache: KVCache, mask: Tensor | None, rows_per_source: int = 1,
                             weights_out: list[Tensor] | None = None) -> Tensor:
        """One decoding step of encoder-decoder attention: x (R, d_model), R = n sources x g = `rows_per_source`
        rows each (a sentence's beams share its source), and `cache` holds the n sources' keys and values once, not
        once per row. The g queries of a source attend to its keys together, as one (g x S) product instead of g
        copies of the keys. mask: (n, 1, 1, S), True where a key may be attended, or None for no padding."""
        R, g = x.shape[0], rows_per_source
        q = self.q_proj(x).view(R // g, g, self.heads, self.head_dim).transpose(1, 2)  # (n, H, g, D)
        if weights_out is None:
            out = F.scaled_dot_product_attention(q, cache.keys, cache.values, attn_mask=mask)  # (n, H, g, D)
        else:
            grouped: list[Tensor] = []
            out = explicit_attention(q, cache.keys, cache.values, mask, False, 0.0, grouped)
            weights_out.append(grouped[0].reshape(R, 1, -1))  # (n, g, S) -> (R, 1, S)
        return self.out_proj(out.transpose(1, 2).reshape(R, -1))

    def _split_heads(self, x: Tensor, parts: int) -> list[Tensor]:
        B, T, _ = x.shape
        x = x.view(B, T, parts, self.heads, self.head_dim)  # (B, T, parts, H, D)
        return list(x.permute(2, 0, 3, 1, 4).unbind(0))  # parts x (B, H, T, D)

    def forward(
        self,
        query: Tensor,  # (B, Tq, d_model)
        memory: Tensor | None = None,  # (B, Tk, d_model): the encoder output, for encoder-decoder attention
        key_padding_mask: Tensor | None = None,  # (B, Tk) bool, True where the key is padding
        causal: bool = False,
        weights_out: list[Tensor] | None = None,
    ) -> Tensor:
        """Attention over whole sequences (the encoder, training, uncached decoding; a decoding step has
        self_attention_step and cross_attention_step). With `weights_out`, the attention weights averaged over heads,
        (B, Tq, Tk), are appended to it (for alignments and pictures; computed beside the fused kernel, which does
        not return them)."""
        B, Tq, d_model = query.shape
        if self.self_attention:
            q, k, v = self._split_heads(self.qkv_proj(query), 3)  # each (B, H, Tq, D)
        else:
            q = self._split_heads(self.q_proj(query), 1)[0]  # (B, H, Tq, D)
            k, v = self._split_heads(self.kv_proj(memory), 2)  # each (B, H, Tk, D)

        attn_mask = None
        if key_padding_mask is not None:
            attn_mask = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk), True = may attend
        is_causal = causal and Tq > 1  # a single query is the last position: it may see every key
        dropout_p = self.dropout if self.training else 0.0
        # The fused kernel pays a fixed cost per (sentence, head) that dominates at a few dozen keys: on a CPU the
        # explicit form was 1.3-2x faster (forward + backward) up to ~40 keys, equal at 64, slower at 128. A single
        # query (one decoding step) keeps the fused kernel: explicit was faster per call there but 25-35% slower
        # over a whole transformer_base beam search.
        short = query.device.type == "cpu" and Tq > 1 and k.shape[2] <= EXPLICIT_MAX_KEYS
        if weights_out is not None or short:
            out = explicit_attention(q, k, v, attn_mask, is_causal, dropout_p, weights_out)  # (B, H, Tq, D)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p,
                                                 is_causal=is_causal)  # (B, H, Tq, D)
        out = out.transpose(1, 2).reshape(B, Tq, d_model)  # (B, Tq, d_model)
        return self.out_proj(out)

