"""Sampling: `nbest` outputs per input, each token drawn from the model's distribution (Edunov et al. 2018 used this
for back-translation), optionally sharpened or flattened by a temperature and cut to the top-k tokens or the top-p
nucleus (Holtzman et al. 2020). Same step constraints as beam search; the scores are the model's own
log-probabilities (not the tempered ones), length-normalized as in beam search, so samples can be ranked and compared
with beam outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.config import SearchConfig
from nmt.search import step_rules
from nmt.search.beam import Hypothesis, expand_beams, length_penalty
from nmt.search.protocol import DecodingModel


def filter_distribution(logprobs: Tensor, temperature: float, topk: int, topp: float) -> Tensor:
    """Log-weights to sample from: tempered, and -inf outside the top-k tokens and outside the top-p nucleus (the
    smallest set of most likely tokens whose probability reaches p; the most likely token is always kept)."""
    weights = logprobs / temperature
    if 0 < topk < weights.shape[-1]:
        kth = weights.topk(topk, dim=-1).values[:, -1:]  # (R, 1)
        weights = weights.masked_fill(weights < kth, float("-inf"))
    if topp < 1.0:
        sorted_weights, order = weights.sort(dim=-1, descending=True)
        probs = sorted_weights.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
        drop_sorted = before >= topp
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        weights = weights.masked_fill(drop, float("-inf"))
    return weights


@torch.no_grad()
def sample(model: DecodingModel, src_tokens: Tensor, config: SearchConfig, generator: torch.Generator,
           prefixes: list[list[int]] | None = None, record_attention: bool = False) -> list[list[Hypothesis]]:
    """`config.nbest` samples of each source row, best score first."""
    model_config = model.config
    pad, bos, eos = model_config.pad_id, model_config.bos_id, model_config.eos_id
    device = src_tokens.device
    batch_size, per_input = src_tokens.shape[0], config.nbest
    rows_of = expand_beams(batch_size, per_input, device)
    max_lengths = step_rules.max_lengths(src_tokens, pad, config.max_len_a, config.max_len_b,
                                          model_config.max_positions if model_config.learned_positions else None)
    prefix = step_rules.pad_prefixes(prefixes, pad, device)
    if prefix is not None:
        max_lengths = torch.maximum(max_lengths, prefix.ne(pad).sum(dim=1) + 1)
        prefix = prefix.index_select(0, rows_of)
    max_lengths = max_lengths.index_select(0, rows_of)  # (R,)

    state = model.init_state(model.encode(src_tokens).select(rows_of))
    state.record_attention = record_attention
    owner = rows_of.clone()  # input sentence of each live row
    tokens = torch.full((len(owner), 1), bos, dtype=torch.long, device=device)
    logprob_sums = torch.zeros(len(owner), device=device)
    attention = None
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    step = 0
    while len(owner) > 0:
        logprobs = model.decode_step(tokens[:, -1], state)  # (R, V)
        length = step + 1
        step_rules.apply_step(logprobs, tokens[:, 1:], step, config, max_lengths <= length, prefix, pad, bos, eos)
        weights = filter_distribution(logprobs, config.temperature, config.topk, config.topp)
        weights = weights.nan_to_num(nan=float("-inf"), posinf=float("-inf"))  # a model gone numerically wrong
        dead = ~weights.isfinite().any(dim=-1)  # every token forbidden (an n-gram block can do this): end the row
        weights[dead, eos] = 0.0
        chosen = torch.multinomial(weights.softmax(dim=-1), 1, generator=generator)  # (R, 1)
        logprob_sums = logprob_sums + logprobs.gather(1, chosen)[:, 0]
        tokens = torch.cat([tokens, chosen], dim=1)
        if record_attention:
            step_attention = state.attention[:, None]
            attention = step_attention if attention is None else torch.cat([attention, step_attention], dim=1)
        ended = chosen[:, 0].eq(eos) | dead | (max_lengths <= length)
        if ended.any():
            penalty = length_penalty(length, config.lenpen, config.lenpen_style)
            for row in ended.nonzero()[:, 0].tolist():
                logprob = float(logprob_sums[row])
                finished[int(owner[row])].append(Hypothesis(
                    tokens[row, 1:-1].tolist(), logprob / penalty, logprob,
                    attention[row] if attention is not None else None))
            keep = (~ended).nonzero()[:, 0]
            owner, tokens, logprob_sums, max_lengths = owner[keep], tokens[keep], logprob_sums[keep], max_lengths[keep]
            if prefix is not None:
                prefix = prefix[keep]
            if attention is not None:
                attention = attention[keep]
            state.select_memory(keep)
            state.reorder(keep)
        step += 1
    return [sorted(hyps, key=lambda h: h.score, reverse=True) for hyps in finished]
