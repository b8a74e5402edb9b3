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
from nmt.search.beam import expand_beams
from nmt.search.protocol import DecodingModel
from nmt.search.state import Abandoned, Hypothesis, SearchState


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
           prefixes: list[list[int]] | None = None, record_attention: bool = False,
           abandoned: Abandoned | None = None) -> list[list[Hypothesis]]:
    """`config.nbest` samples of each source row, best score first. Each sample is a group of one row
    (nmt.search.state.SearchState), `nbest` groups per sentence."""
    batch_size, eos = src_tokens.shape[0], model.config.eos_id
    rows_of = expand_beams(batch_size, config.nbest, src_tokens.device)  # the sentence of each sample
    row_prefixes = [prefixes[row] for row in rows_of.tolist()] if prefixes else None
    search = SearchState(src_tokens.index_select(0, rows_of), model.config, config, 1, row_prefixes,
                         sentence_ids=rows_of.clone(), sentences=batch_size, abandoned=abandoned)
    state = model.init_state(model.encode(src_tokens).select(rows_of))
    state.record_attention = record_attention
    while search.groups > 0:
        logprobs = model.decode_step(search.tokens[:, -1], state)  # (R, V)
        at_limit = search.at_limit  # (R,) samples that must end now
        search.apply_rules(logprobs, at_limit)
        weights = filter_distribution(logprobs, config.temperature, config.topk, config.topp)
        weights = weights.nan_to_num(nan=float("-inf"), posinf=float("-inf"))  # a model gone numerically wrong
        dead = ~weights.isfinite().any(dim=-1)  # every token forbidden (an n-gram block can do this): end the row
        weights[dead, eos] = 0.0
        chosen = torch.multinomial(weights.softmax(dim=-1), 1, generator=generator)  # (R, 1)
        search.scores = search.scores + logprobs.gather(1, chosen)
        search.add_attention(state.attention[:, None] if record_attention else None)
        ended = chosen[:, 0].eq(eos) | dead | at_limit
        gone = search.given_up()
        finished = ended if gone is None else ended | gone
        if not finished.any():
            search.extend(None, chosen)
            continue
        search.end_rows(ended if gone is None else ended & ~gone)
        ended = finished
        going_on = search.keep(~ended)
        state.select_memory(going_on)
        state.reorder(going_on)
        search.extend(going_on, chosen[going_on])
    return search.results(config.nbest)
