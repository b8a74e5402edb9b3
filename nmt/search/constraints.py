"""What a decoding step may not choose, applied to its log-probabilities (rows = hypotheses) in place.

Beam search and sampling share these, so `--min-len`, the maximum length, `--no-repeat-ngram-size` and forced
prefixes mean the same thing in both.
"""

from __future__ import annotations

import torch
from torch import Tensor


def forbid_specials(logprobs: Tensor, pad: int, bos: int) -> None:
    logprobs[:, pad] = float("-inf")
    logprobs[:, bos] = float("-inf")


def enforce_lengths(logprobs: Tensor, length: int, min_len: int, at_limit: Tensor, eos: int) -> None:
    """`length`: of a hypothesis that would end at this step, eos included. Before `min_len` eos is forbidden; rows
    `at_limit` (bool, (R,)) must end now."""
    if length < min_len:
        logprobs[:, eos] = float("-inf")
    if at_limit.any():
        eos_logprob = logprobs[at_limit, eos]
        logprobs[at_limit] = float("-inf")
        logprobs[at_limit, eos] = eos_logprob


def block_repeated_ngrams(logprobs: Tensor, generated: Tensor, n: int) -> None:
    """Forbid each token that would complete an n-gram already in the row's output. generated (R, t) excludes bos."""
    if n <= 0 or generated.shape[1] == 0:
        return
    if n == 1:
        logprobs.scatter_(1, generated, float("-inf"))
        return
    if generated.shape[1] < n:  # no complete n-gram yet
        return
    ngrams = generated.unfold(1, n, 1)  # (R, G, n): every n-gram so far
    last = generated[:, generated.shape[1] - (n - 1):]  # (R, n-1): what the next token would complete
    matches = (ngrams[:, :, :-1] == last[:, None, :]).all(dim=2)  # (R, G)
    if not matches.any():
        return
    rows, positions = matches.nonzero(as_tuple=True)
    logprobs[rows, ngrams[rows, positions, -1]] = float("-inf")


def prefix_active(prefix: Tensor | None, step: int) -> bool:
    return prefix is not None and step < prefix.shape[1]


def force_prefix(logprobs: Tensor, original: Tensor, prefix: Tensor, step: int, pad: int) -> None:
    """Rows whose forced prefix (R, P), padded with `pad`, has a token at `step` may choose only that token, with its
    log-probability from `original` (the step's before any other constraint: a prefix the user gave is never
    blocked)."""
    forced = prefix[:, step]  # (R,)
    rows = forced.ne(pad).nonzero(as_tuple=True)[0]
    if len(rows) == 0:
        return
    kept = original[rows, forced[rows]]
    logprobs[rows] = float("-inf")
    logprobs[rows, forced[rows]] = kept


def max_lengths(src_tokens: Tensor, pad: int, a: float, b: int, max_positions: int | None) -> Tensor:
    """(B,) longest output of each source row, eos included: a * source length + b."""
    lengths = (src_tokens.ne(pad).sum(dim=1).float() * a + b).long()
    return lengths.clamp(max=max_positions) if max_positions else lengths


def pad_prefixes(prefixes: list[list[int]] | None, pad: int, device) -> Tensor | None:
    if not prefixes or not any(prefixes):
        return None
    width = max(len(p) for p in prefixes)
    table = torch.full((len(prefixes), width), pad, dtype=torch.long, device=device)
    for row, tokens in enumerate(prefixes):
        table[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return table
