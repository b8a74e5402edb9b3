"""Batched beam search with incremental (cached) decoding.

Small pieces, each testable: `length_penalty` and the typed `SearchState` (nmt.search.state: the step's rules,
ended hypotheses, back-pointers), `expand_beams`, and `beam_search` that ties them together. Sentences that have
finished leave the batch, so the cost follows the unfinished ones.

The model is anything that satisfies `nmt.search.protocol.DecodingModel` (a Transformer, an Ensemble):
`encode(src_tokens)`, `init_state(encoder_out, rows_per_source)`, `decode_step(tokens, state)` (log-probabilities),
and `decode(prev_tokens, encoder_out)` (uncached, the reference the cache is tested against).
"""

from __future__ import annotations

import torch
from torch import Tensor

from nmt.config import SearchConfig
from nmt.search.protocol import DecodingModel
from nmt.search.state import Abandoned, Hypothesis, SearchState, length_penalty

__all__ = ["Hypothesis", "beam_search", "expand_beams", "length_penalty"]

# Stop sentences whose result is settled (SearchState.settled); a switch for benchmarks/decode_breakdown.py's A/B.
EARLY_STOP = True


def expand_beams(batch_size: int, beam: int, device) -> Tensor:
    """Row index that repeats each sentence `beam` times: [0,0,0,0,1,1,1,1,...]."""
    return torch.arange(batch_size, device=device).repeat_interleave(beam)


@torch.no_grad()
def beam_search(model: DecodingModel, src_tokens: Tensor, config: SearchConfig, use_cache: bool = True,
                prefixes: list[list[int]] | None = None, record_attention: bool = False,
                abandoned: Abandoned | None = None) -> list[list[Hypothesis]]:
    """The best `config.nbest` hypotheses of each source row, best first (none for a row `abandoned` names).

    src_tokens (B, S): padded with the model's pad id, each row ending in eos.
    prefixes: for each row, target tokens the output must start with (forced decoding; [] for none).
    record_attention: give each hypothesis its encoder-decoder attention (needs the cache).
    With use_cache=False every step re-decodes the whole prefix (the reference the cache is tested against).
    """
    beam, eos = config.beam, model.config.eos_id
    search = SearchState(src_tokens, model.config, config, beam, prefixes, abandoned=abandoned)
    encoder_out = model.encode(src_tokens)  # (B, S, d)
    state = None
    if use_cache:  # the state keeps each sentence's encoder keys/values once, for its `beam` rows
        state = model.init_state(encoder_out, beam)
        state.record_attention = record_attention
        encoder_out = None  # the state holds what decoding needs of it
    else:
        encoder_out = encoder_out.select(expand_beams(search.groups, beam, src_tokens.device))  # (B*k, S, d)

    while search.groups > 0:
        if use_cache:
            logprobs = model.decode_step(search.tokens[:, -1], state)  # (n*k, V)
        else:
            logits = model.decode(search.tokens, encoder_out)[:, -1]  # (n*k, V)
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        active, vocab_size = search.groups, logprobs.shape[-1]
        at_limit = search.at_limit  # (n,) sentences that must end now
        search.apply_rules(logprobs, at_limit)

        candidates = search.scores.view(active, beam, 1) + logprobs.view(active, beam, vocab_size)  # (n, k, V)
        cand_scores, cand_index = candidates.view(active, -1).topk(2 * beam, dim=1)  # (n, 2k) best first
        cand_beams, cand_tokens = cand_index // vocab_size, cand_index % vocab_size  # (n, 2k)

        search.add_attention(state.attention[:, None] if use_cache and record_attention else None)  # (n*k,1,L,S)
        done = search.finalize(cand_scores, cand_beams, cand_tokens)
        done = done | search.end_at_limit(at_limit)

        # The k best candidates that do not end the sentence go on.
        continuing = cand_scores.masked_fill(cand_tokens.eq(eos), float("-inf"))
        scores, chosen = continuing.topk(beam, dim=1)  # (n, k)
        if EARLY_STOP:
            done = done | search.settled(scores[:, 0])
        if (gone := search.given_up()) is not None:
            done = done | gone
        rows = torch.arange(active, device=src_tokens.device)[:, None] * beam + cand_beams.gather(1, chosen)  # (n, k)
        next_tokens = cand_tokens.gather(1, chosen)  # (n, k)

        search.scores = scores
        keep = ~done  # (n,)
        if not keep.all():  # finished sentences leave the batch
            rows, next_tokens = rows[keep], next_tokens[keep]
            kept = search.keep(keep)  # (n',) the groups that go on
            if use_cache:
                state.select_memory(kept)
            else:
                encoder_out = encoder_out.select((kept[:, None] * beam + torch.arange(beam, device=kept.device))
                                                 .view(-1))
        rows = rows.view(-1)  # (n*k,) rows of the previous step each new beam extends
        search.extend(rows, next_tokens)
        if use_cache:
            state.reorder(rows)  # follow the back-pointers

    return search.results(config.nbest)
