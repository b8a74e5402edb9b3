"""Batched beam search with incremental (cached) decoding.

Small pieces, each testable: `length_penalty`, `expand_beams`, `_finalize` (ended hypotheses), and `beam_search`
that ties them together. Sentences that have finished leave the batch, so the cost follows the unfinished ones.

The model is anything that satisfies `nmt.search.protocol.DecodingModel` (a Transformer, an Ensemble):
`encode(src_tokens)`, `init_state(encoder_out, rows_per_source)`, `decode_step(tokens, state)` (log-probabilities),
and `decode(prev_tokens, encoder_out)` (uncached, the reference the cache is tested against).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.config import SearchConfig
from nmt.search import step_rules
from nmt.search.protocol import DecodingModel


@dataclass
class Hypothesis:
    tokens: list[int]  # without bos and eos
    score: float  # log-probability / length penalty: what the beam ranks by
    logprob: float  # sum of token log-probabilities, eos included
    attention: Tensor | None = None  # (len(tokens) + 1, decoder layers, S): encoder-decoder attention, head-averaged


def length_penalty(length: int | Tensor, alpha: float, style: str = "gnmt"):
    """gnmt: ((5 + |Y|) / 6)^alpha (Wu et al. 2016, used by the paper); length: |Y|^alpha. |Y| counts eos."""
    if style == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    return length ** alpha


def expand_beams(batch_size: int, beam: int, device) -> Tensor:
    """Row index that repeats each sentence `beam` times: [0,0,0,0,1,1,1,1,...]."""
    return torch.arange(batch_size, device=device).repeat_interleave(beam)


@torch.no_grad()
def beam_search(model: DecodingModel, src_tokens: Tensor, config: SearchConfig, use_cache: bool = True,
                prefixes: list[list[int]] | None = None, record_attention: bool = False) -> list[list[Hypothesis]]:
    """The best `config.nbest` hypotheses of each source row, best first.

    src_tokens (B, S): padded with the model's pad id, each row ending in eos.
    prefixes: for each row, target tokens the output must start with (forced decoding; [] for none).
    record_attention: give each hypothesis its encoder-decoder attention (needs the cache).
    With use_cache=False every step re-decodes the whole prefix (the reference the cache is tested against).
    """
    model_config = model.config
    pad, bos, eos = model_config.pad_id, model_config.bos_id, model_config.eos_id
    device = src_tokens.device
    batch_size, beam = src_tokens.shape[0], config.beam
    max_lengths = step_rules.max_lengths(src_tokens, pad, config.max_len_a, config.max_len_b,
                                          model_config.max_positions if model_config.learned_positions else None)
    prefix = step_rules.pad_prefixes(prefixes, pad, device)  # (n, P) or None
    if prefix is not None:  # a forced prefix longer than the length limit still fits, with its eos
        max_lengths = torch.maximum(max_lengths, prefix.ne(pad).sum(dim=1) + 1)

    encoder_out = model.encode(src_tokens)  # (B, S, d)
    state = None
    if use_cache:  # the state keeps each sentence's encoder keys/values once, for its `beam` rows
        state = model.init_state(encoder_out, beam)
        state.record_attention = record_attention
        encoder_out = None  # the state holds what decoding needs of it
    else:
        encoder_out = encoder_out.select(expand_beams(batch_size, beam, device))  # (B*k, S, d)
    attention = None  # (n*k, t, layers, S): the attention of each beam's tokens so far

    sentence_ids = torch.arange(batch_size, device=device)  # which input sentence each active group is
    tokens = torch.full((batch_size * beam, 1), bos, dtype=torch.long, device=device)  # (n*k, t)
    scores = torch.full((batch_size, beam), float("-inf"), device=device)  # (n, k) cumulative log-probabilities
    scores[:, 0] = 0.0  # all beams start identical: only the first may expand at step 0
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    nth_best = torch.full((batch_size,), float("-inf"), device=device)  # score of each one's nbest-th finished

    step = 0
    while len(sentence_ids) > 0:
        if use_cache:
            logprobs = model.decode_step(tokens[:, -1], state)  # (n*k, V)
        else:
            logits = model.decode(tokens, encoder_out)[:, -1]  # (n*k, V)
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        step_attention = state.attention[:, None] if use_cache and record_attention else None  # (n*k, 1, L, S)
        active = len(sentence_ids)
        vocab_size = logprobs.shape[-1]
        length = step + 1  # of a hypothesis that ends at this step, eos included
        at_limit = max_lengths <= length  # (n,) sentences that must end now
        forced = prefix.repeat_interleave(beam, dim=0) if step_rules.prefix_active(prefix, step) else None
        step_rules.apply_step(logprobs, tokens[:, 1:], step, config, at_limit.repeat_interleave(beam), forced, pad,
                               bos, eos)

        candidates = scores.view(active, beam, 1) + logprobs.view(active, beam, vocab_size)  # (n, k, V)
        cand_scores, cand_index = candidates.view(active, -1).topk(2 * beam, dim=1)  # (n, 2k) best first
        cand_beams, cand_tokens = cand_index // vocab_size, cand_index % vocab_size  # (n, 2k)

        with_attention = torch.cat([attention, step_attention], dim=1) if attention is not None else step_attention
        done = _finalize(cand_scores, cand_beams, cand_tokens, tokens, sentence_ids, finished, config, eos, length,
                         with_attention, nth_best)
        done = done | _end_at_limit(at_limit, tokens, sentence_ids, finished, beam, with_attention)

        # The k best candidates that do not end the sentence go on.
        continuing = cand_scores.masked_fill(cand_tokens.eq(eos), float("-inf"))
        scores, chosen = continuing.topk(beam, dim=1)  # (n, k)
        if EARLY_STOP:
            done = done | cannot_be_beaten(nth_best[sentence_ids], scores[:, 0], max_lengths, length, config)
        rows = torch.arange(active, device=device)[:, None] * beam + cand_beams.gather(1, chosen)  # (n, k)
        next_tokens = cand_tokens.gather(1, chosen)  # (n, k)

        keep = ~done  # (n,)
        if not keep.all():  # finished sentences leave the batch
            rows, next_tokens, scores = rows[keep], next_tokens[keep], scores[keep]
            sentence_ids, max_lengths = sentence_ids[keep], max_lengths[keep]
            if prefix is not None:
                prefix = prefix[keep]
            kept = torch.nonzero(keep)[:, 0]  # (n',) the groups that go on
            if use_cache:
                state.select_memory(kept)
            else:
                encoder_out = encoder_out.select((kept[:, None] * beam + torch.arange(beam, device=device)).view(-1))
        rows = rows.view(-1)  # (n*k,) rows of the previous step each new beam extends
        tokens = torch.cat([tokens.index_select(0, rows), next_tokens.view(-1, 1)], dim=1)  # (n*k, t+1)
        if with_attention is not None:
            attention = with_attention.index_select(0, rows)
        if use_cache:
            state.reorder(rows)  # follow the back-pointers
        step += 1

    return [sorted(hyps, key=lambda h: h.score, reverse=True)[: config.nbest] for hyps in finished]


def cannot_be_beaten(nth_best: Tensor, best_continuing: Tensor, max_lengths: Tensor, length: int,
                     config: SearchConfig) -> Tensor:
    """(n,) True where no continuing beam can still outscore the sentence's nbest-th finished hypothesis, so that
    going on cannot change what is returned: a beam's log-probability only falls as it grows, so the best score it
    can reach is its log-probability now over the largest length penalty still open to it (at the sentence's
    length limit for alpha >= 0, at the next step for alpha < 0). This stops a sentence as soon as its result is
    settled instead of waiting for `beam` finished hypotheses, without changing the result."""
    if config.lenpen >= 0:
        longest = max_lengths.to(best_continuing.dtype)
    else:
        longest = torch.full_like(best_continuing, length + 1)
    bound = best_continuing / length_penalty(longest, config.lenpen, config.lenpen_style)
    return nth_best.isfinite() & (nth_best >= bound)


# Stop sentences whose result is settled (cannot_be_beaten); a switch for benchmarks/decode_breakdown.py's A/B.
EARLY_STOP = True


def _finalize(cand_scores, cand_beams, cand_tokens, tokens, sentence_ids, finished, config, eos, length,
              attention: Tensor | None = None, nth_best: Tensor | None = None,
              group_beams: list[int] | None = None) -> Tensor:
    """Record candidates among the first k that end in eos; return which sentences now have k hypotheses.
    group_beams: each group's own k where groups share rows of width config.beam but decode with smaller beams
    (their candidates beyond their k must already score -inf)."""
    beam = config.beam
    limits = group_beams or [beam] * len(sentence_ids)
    top = slice(0, beam)
    # -inf: an ending no constraint allows. NaN (a model gone numerically wrong) still ends: decoding must stop.
    ends = cand_tokens[:, top].eq(eos) & ~cand_scores[:, top].isneginf()  # (n, k)
    done = torch.zeros(len(sentence_ids), dtype=torch.bool)
    if ends.any():
        penalty = length_penalty(length, config.lenpen, config.lenpen_style)
        # Everything the ended candidates need, copied to the host at once: on a GPU each scalar read is a
        # synchronisation, and a step can end hundreds of hypotheses.
        groups, positions = ends.nonzero(as_tuple=True)
        rows = groups * beam + cand_beams[groups, positions]
        ended = zip(sentence_ids[groups].tolist(), cand_scores[groups, positions].tolist(), tokens[rows, 1:].tolist(),
                    attention.index_select(0, rows).unbind(0) if attention is not None else [None] * len(rows))
        settled: dict[int, float] = {}  # sentence -> its new nbest-th score
        ended_limits = [limits[g] for g in groups.tolist()]
        for (sentence, logprob, hypothesis_tokens, hypothesis_attention), limit in zip(ended, ended_limits):
            if len(finished[sentence]) >= limit:
                continue
            finished[sentence].append(Hypothesis(hypothesis_tokens, logprob / penalty, logprob, hypothesis_attention))
            if nth_best is not None and len(finished[sentence]) >= config.nbest:
                settled[sentence] = sorted((h.score for h in finished[sentence]), reverse=True)[config.nbest - 1]
        if settled:
            nth_best[torch.tensor(list(settled), device=nth_best.device)] = torch.tensor(
                list(settled.values()), dtype=nth_best.dtype, device=nth_best.device)
        done = torch.tensor([len(finished[s]) >= limit for s, limit in zip(sentence_ids.tolist(), limits)])
    return done.to(cand_scores.device)


def _end_at_limit(at_limit: Tensor, tokens, sentence_ids, finished, beam: int, attention: Tensor | None) -> Tensor:
    """Sentences at their length limit are done whatever their scores. Normally their eos candidates were recorded
    just now; where none was (every score NaN or -inf), the first beam is kept with a score of -inf, so that
    decoding ends within the limit and every input still gets an output."""
    if not at_limit.any():
        return at_limit
    sentences = sentence_ids.tolist()
    for group in at_limit.nonzero()[:, 0].tolist():
        sentence = sentences[group]
        if not finished[sentence]:
            row = group * beam
            finished[sentence].append(Hypothesis(tokens[row, 1:].tolist(), float("-inf"), float("-inf"),
                                                 attention[row] if attention is not None else None))
    return at_limit
