"""What a decoding step may not choose, applied to its log-probabilities (rows = hypotheses) in place.

Beam search and sampling share these, so `--min-len`, the maximum length, `--no-repeat-ngram-size` and forced
prefixes mean the same thing in both.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.config import SearchConfig


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


def apply_step(logprobs: Tensor, generated: Tensor, step: int, config: SearchConfig, at_limit: Tensor,
               prefix: Tensor | None, pad: int, bos: int, eos: int) -> None:
    """Every constraint of one decoding step, in place, in the order both searches need: the specials, repeated
    n-grams, the length limits, then the forced prefix (which overrides all of them: a prefix the user gave is never
    blocked). generated (R, t): the outputs so far, bos excluded; at_limit (R,): rows that must end now; prefix
    (R, P) or None, rows aligned with `logprobs`."""
    forcing = prefix_active(prefix, step)
    original = logprobs.clone() if forcing else None
    forbid_specials(logprobs, pad, bos)
    block_repeated_ngrams(logprobs, generated, config.no_repeat_ngram_size)
    enforce_lengths(logprobs, step + 1, config.min_len, at_limit, eos)
    if forcing:
        force_prefix(logprobs, original, prefix, step, pad)
