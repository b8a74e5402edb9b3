"""Lexically constrained beam search: every output contains given target phrases, in any order, anywhere.

Dynamic beam allocation (Post & Vilar 2018), vectorised over the batch and the beam as in Hu et al. (2019):

- Each hypothesis carries which of its sentence's phrases it has completed and how far it is into the one it is
  writing now. Its *bank* is the number of constraint pieces it has met.
- At each step every hypothesis proposes its 2k most likely pieces and the pieces that advance a constraint (the next
  piece of the phrase in progress, else the first piece of each unmet phrase).
- The k survivors are taken round-robin over the banks, fullest bank first, each bank's candidates best first: so
  hypotheses that have met more constraints keep a share of the beam although the model scores them lower, and a
  bank with too few candidates leaves its share to the others.
- A hypothesis may end only when it has met every constraint, and a candidate that could no longer fit its unmet
  pieces before the sentence's length limit is dropped; with the limit at least the constraint pieces + 1 (the
  caller grows it, as for forced prefixes) every output holds every phrase.

Everything is tensor operations over (hypotheses, candidates, phrases); the only Python loop is `_finalize`'s over
ended hypotheses, shared with the unconstrained search, which stays in `nmt.search.beam` untouched (and as fast).
A sentence decodes identically alone or in a batch: round-robin order compares (rank in bank, bank) pairs, which do
not depend on the other sentences' constraints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.config import SearchConfig
from nmt.search import step_rules
from nmt.search.beam import Hypothesis, _end_at_limit, _finalize, cannot_be_beaten
from nmt.search.protocol import DecodingModel

NO_PIECE = -1  # padding in the phrase table; never a vocabulary id


@dataclass
class PhraseTable:
    """Each sentence's constraint phrases as target ids: `pieces` (n, P, W) padded with NO_PIECE, `lengths` (n, P)
    pieces per phrase (0: padding)."""

    pieces: Tensor
    lengths: Tensor

    @classmethod
    def build(cls, phrases: list[list[list[int]]], device) -> "PhraseTable":
        count = max(1, max(len(p) for p in phrases))
        width = max(1, max((len(piece_ids) for p in phrases for piece_ids in p), default=1))
        pieces = torch.full((len(phrases), count, width), NO_PIECE, dtype=torch.long)
        lengths = torch.zeros((len(phrases), count), dtype=torch.long)
        for sentence, sentence_phrases in enumerate(phrases):
            for index, piece_ids in enumerate(sentence_phrases):
                if not piece_ids:
                    raise ValueError("a constraint phrase needs at least one piece")
                pieces[sentence, index, : len(piece_ids)] = torch.tensor(piece_ids, dtype=torch.long)
                lengths[sentence, index] = len(piece_ids)
        return cls(pieces.to(device), lengths.to(device))

    @property
    def totals(self) -> Tensor:
        """(n,) constraint pieces of each sentence: the bank of a hypothesis that has met them all."""
        return self.lengths.sum(dim=1)

    def select(self, index: Tensor) -> "PhraseTable":
        return PhraseTable(self.pieces.index_select(0, index), self.lengths.index_select(0, index))


@dataclass
class PhraseState:
    """Per hypothesis row: `met` (R, P) phrases completed (padding phrases count as met), `current` (R,) the phrase
    in progress and `progress` (R,) its pieces written so far (0: none in progress)."""

    met: Tensor
    current: Tensor
    progress: Tensor

    @classmethod
    def start(cls, table: PhraseTable, beam: int) -> "PhraseState":
        met = table.lengths.eq(0).repeat_interleave(beam, dim=0)
        zeros = torch.zeros(met.shape[0], dtype=torch.long, device=met.device)
        return cls(met, zeros, zeros.clone())


def advancing_pieces(state: PhraseState, pieces: Tensor) -> Tensor:
    """(R, P) the pieces that advance each hypothesis's constraints (NO_PIECE elsewhere): the next piece of its phrase
    in progress (in slot 0), else the first piece of each phrase it has not met. pieces: (R, P, W) row-aligned."""
    writing = state.progress.gt(0)
    next_piece = pieces[torch.arange(len(writing), device=pieces.device), state.current,
                        state.progress.clamp(max=pieces.shape[2] - 1)]  # (R,)
    starts = pieces[:, :, 0].masked_fill(state.met, NO_PIECE)  # (R, P)
    continuing = torch.full_like(starts, NO_PIECE)
    continuing[:, 0] = next_piece
    return torch.where(writing[:, None], continuing, starts)


def advance(state: PhraseState, tokens: Tensor, pieces: Tensor, lengths: Tensor):
    """The state each hypothesis would reach by writing each of `tokens` (R, C): (met (R, C, P), current (R, C),
    progress (R, C), bank (R, C), completes (R, C): whether the piece completes a phrase).

    A piece continues the phrase in progress if it is the expected one; otherwise the progress is lost and the piece
    may start the first unmet phrase it begins. (A phrase that overlaps itself, like "a a b" written as "a a a b", is
    not recognised by this simple matcher; its hypothesis just meets it later.)"""
    rows = torch.arange(len(tokens), device=tokens.device)
    writing = state.progress.gt(0)
    expected = pieces[rows, state.current, state.progress.clamp(max=pieces.shape[2] - 1)]  # (R,)
    continues = writing[:, None] & tokens.eq(expected[:, None])  # (R, C)
    starts_phrase = pieces[:, None, :, 0].eq(tokens[:, :, None]) & ~state.met[:, None, :]  # (R, C, P)
    starts = starts_phrase.any(dim=2)
    started = starts_phrase.to(torch.uint8).argmax(dim=2)  # the first phrase the piece begins
    progress = torch.where(continues, state.progress[:, None] + 1, starts.long())
    current = torch.where(continues, state.current[:, None].expand_as(tokens), started)
    completes = progress.gt(0) & progress.eq(lengths.gather(1, current))  # (R, C)
    met = state.met[:, None, :] | (completes[:, :, None] & torch.nn.functional.one_hot(
        current, state.met.shape[1]).bool())
    progress = progress.masked_fill(completes, 0)
    current = current.masked_fill(progress.eq(0), 0)
    bank = (met * lengths[:, None, :]).sum(dim=2) + progress
    return met, current, progress, bank, completes


def round_robin_order(scores: Tensor, banks: Tensor, totals: Tensor, bank_count: int | None = None) -> Tensor:
    """(n, N) candidate positions in the order dynamic beam allocation fills the beam: the best of each bank, fullest
    bank first, then the second best of each, ...; candidates with a score of -inf last. scores, banks: (n, N);
    totals (n,): the full bank of each sentence; bank_count: more than any of them (default: computed, a device
    synchronisation that a caller can do once instead of at every step)."""
    by_score = scores.argsort(dim=1, descending=True, stable=True)
    banks_sorted = banks.gather(1, by_score)
    bank_count = bank_count or int(totals.max()) + 1
    seen = torch.nn.functional.one_hot(banks_sorted, bank_count).cumsum(dim=1)  # (n, N, banks)
    rank = seen.gather(2, banks_sorted[..., None])[..., 0]  # 1 for the best of its bank
    key = (rank - 1) * bank_count + (totals[:, None] - banks_sorted)
    dead = scores.gather(1, by_score).isneginf()
    key = key.masked_fill(dead, torch.iinfo(key.dtype).max)
    return by_score.gather(1, key.argsort(dim=1, stable=True))


@torch.no_grad()
def constrained_beam_search(model: DecodingModel, src_tokens: Tensor, config: SearchConfig,
                            phrases: list[list[list[int]]], prefixes: list[list[int]] | None = None,
                            record_attention: bool = False, beams: list[int] | None = None,
                            word_continuations: Tensor | None = None) -> list[list[Hypothesis]]:
    """As `nmt.search.beam.beam_search`, each output holding every phrase of its row in `phrases` (target ids, at
    least one piece each).

    beams: each row's beam (default config.beam), at least its constraint pieces + 1 so that every bank has a place.
        Rows with different beams share a batch: each sentence gets max(beams) hypothesis rows and uses its own
        beam of them, so it decodes as it would alone.
    word_continuations: (V,) True for pieces that continue a word (`nmt.engines.pytorch.Translator.word_continuations`):
        forbidden right after a phrase is completed, so that a constraint "Zaun" is not written as "Zauns".
    The length limit of a row grows to hold its constraint pieces, its forced prefix and eos."""
    model_config = model.config
    pad, bos, eos = model_config.pad_id, model_config.bos_id, model_config.eos_id
    device = src_tokens.device
    batch_size = src_tokens.shape[0]
    beam_list = beams or [config.beam] * batch_size  # kept on the host too: read at every step
    sentence_beams = torch.tensor(beam_list, device=device)  # (n,)
    beam = max(beam_list)  # hypothesis rows per sentence
    finish_after = config.beam  # finished hypotheses a sentence collects: the beam asked for, not the grown one
    config = dataclasses.replace(config, beam=beam)
    table = PhraseTable.build(phrases, device)
    totals = table.totals  # (n,)
    bank_count = int(totals.max()) + 1  # banks 0..the largest full bank, for the whole search
    max_lengths = step_rules.max_lengths(src_tokens, pad, config.max_len_a, config.max_len_b,
                                               model_config.max_positions if model_config.learned_positions else None)
    prefix = step_rules.pad_prefixes(prefixes, pad, device)
    needed = totals + 1 + (prefix.ne(pad).sum(dim=1) if prefix is not None else 0)
    max_lengths = torch.maximum(max_lengths, needed)

    state = model.init_state(model.encode(src_tokens), beam)
    state.record_attention = record_attention
    attention = None
    phrase_state = PhraseState.start(table, beam)
    just_met = torch.zeros(batch_size * beam, dtype=torch.bool, device=device)  # completed a phrase last step
    row_pieces, row_lengths = (t.repeat_interleave(beam, dim=0) for t in (table.pieces, table.lengths))

    sentence_ids = torch.arange(batch_size, device=device)
    tokens = torch.full((batch_size * beam, 1), bos, dtype=torch.long, device=device)
    scores = torch.full((batch_size, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0
    finished: list[list[Hypothesis]] = [[] for _ in range(batch_size)]
    nth_best = torch.full((batch_size,), float("-inf"), device=device)
    slots = torch.arange(beam, device=device)

    step = 0
    while len(sentence_ids) > 0:
        logprobs = model.decode_step(tokens[:, -1], state)  # (R, V)
        step_attention = state.attention[:, None] if record_attention else None
        active = len(sentence_ids)
        length = step + 1
        at_limit = max_lengths <= length
        forced = prefix.repeat_interleave(beam, dim=0) if step_rules.prefix_active(prefix, step) else None
        step_rules.apply_step(logprobs, tokens[:, 1:], step, config, at_limit.repeat_interleave(beam), forced,
                                    pad, bos, eos)
        all_met = phrase_state.met.all(dim=1) & phrase_state.progress.eq(0)
        logprobs[:, eos].masked_fill_(~all_met, float("-inf"))  # no ending before every phrase is written
        if word_continuations is not None and just_met.any():
            rows_after = just_met.nonzero()[:, 0]  # only these rows: a pass over all of them costs milliseconds
            logprobs[rows_after] = logprobs[rows_after].masked_fill(word_continuations, float("-inf"))

        # Candidates of each hypothesis: its 2k most likely pieces and the pieces that advance its constraints.
        proposals = min(2 * beam, logprobs.shape[1])
        likely = logprobs.topk(proposals, dim=1).indices  # (R, 2K)
        if min(beam_list) < beam:  # a sentence of a narrower beam proposes its own 2k
            row_beams = sentence_beams.repeat_interleave(beam)  # (R,)
            likely = likely.masked_fill(torch.arange(proposals, device=device)[None, :] >= 2 * row_beams[:, None],
                                        NO_PIECE)
        advancing = advancing_pieces(phrase_state, row_pieces)  # (R, P)
        repeated = advancing[:, :, None].eq(likely[:, None, :]).any(dim=2) | (
            advancing[:, :, None].eq(advancing[:, None, :]).tril(diagonal=-1).any(dim=2))
        advancing = advancing.masked_fill(repeated, NO_PIECE)
        candidates = torch.cat([likely, advancing], dim=1)  # (R, C)
        candidate_scores = logprobs.gather(1, candidates.clamp(min=0)) + scores.view(-1, 1)
        met, current, progress, bank, completes = advance(phrase_state, candidates, row_pieces, row_lengths)
        # A candidate must still fit its unmet pieces and eos within the length limit.
        room = max_lengths.repeat_interleave(beam)[:, None] - 1 - length
        ends = candidates.eq(eos)
        fits = ends | (totals.repeat_interleave(beam)[:, None] - bank).le(room)
        candidate_scores = candidate_scores.masked_fill(candidates.eq(NO_PIECE) | ~fits, float("-inf"))

        width = candidates.shape[1]
        order = round_robin_order(candidate_scores.view(active, beam * width), bank.view(active, beam * width),
                                  totals, bank_count)  # (n, K*C)
        cand_scores = candidate_scores.view(active, -1).gather(1, order)
        cand_tokens = candidates.view(active, -1).gather(1, order)
        cand_beams = order // width
        own_slot = slots[None, :] < sentence_beams[:, None]  # (n, K): the slots a sentence's own beam has

        # A hypothesis that has met every constraint ends as in the unconstrained search: when eos is among the k
        # best candidates of the full bank.
        flat_scores, flat_banks = candidate_scores.view(active, -1), bank.view(active, -1)
        by_score = flat_scores.argsort(dim=1, descending=True, stable=True)
        outside = flat_banks.gather(1, by_score).ne(totals[:, None])
        ending = by_score.gather(1, outside.to(torch.uint8).argsort(dim=1, stable=True)[:, :beam])  # (n, K)
        ending_scores = flat_scores.gather(1, ending).masked_fill(
            ~own_slot | flat_banks.gather(1, ending).ne(totals[:, None]), float("-inf"))
        with_attention = torch.cat([attention, step_attention], dim=1) if attention is not None else step_attention
        done = _finalize(ending_scores, ending // width, candidates.view(active, -1).gather(1, ending), tokens,
                         sentence_ids, finished, config, eos, length, with_attention, nth_best,
                         [min(b, finish_after) for b in beam_list])
        done = done | _end_at_limit(at_limit, tokens, sentence_ids, finished, beam, with_attention)

        # The first k candidates in round-robin order that do not end the sentence go on.
        continuing = cand_tokens.eq(eos).to(torch.uint8).argsort(dim=1, stable=True)[:, :beam]  # (n, K)
        scores = cand_scores.gather(1, continuing).masked_fill(~own_slot, float("-inf"))
        picked = order.gather(1, continuing)  # (n, K) positions in (beam, candidate) of each group
        done = done | cannot_be_beaten(nth_best[sentence_ids], scores.max(dim=1).values, max_lengths, length, config)
        flat = (torch.arange(active, device=device)[:, None] * (beam * width) + picked).view(-1)  # into (R*C)
        rows = torch.arange(active, device=device)[:, None] * beam + cand_beams.gather(1, continuing)  # (n, K)
        # A sentence with fewer live candidates than rows continues some dead ones (-inf): feed them a real id.
        next_tokens = candidates.view(-1).index_select(0, flat).view(active, beam).clamp(min=pad)
        phrase_state = PhraseState(met.view(-1, met.shape[2]).index_select(0, flat),
                                   current.view(-1).index_select(0, flat), progress.view(-1).index_select(0, flat))
        just_met = completes.view(-1).index_select(0, flat)

        keep = ~done
        if not keep.all():
            rows, next_tokens, scores = rows[keep], next_tokens[keep], scores[keep]
            sentence_ids, max_lengths, totals = sentence_ids[keep], max_lengths[keep], totals[keep]
            sentence_beams = sentence_beams[keep]
            beam_list = [b for b, kept_one in zip(beam_list, keep.tolist()) if kept_one]
            kept = torch.nonzero(keep)[:, 0]
            table = table.select(kept)
            row_pieces, row_lengths = (t.repeat_interleave(beam, dim=0) for t in (table.pieces, table.lengths))
            kept_rows = (kept[:, None] * beam + slots).view(-1)
            phrase_state = PhraseState(phrase_state.met[kept_rows], phrase_state.current[kept_rows],
                                       phrase_state.progress[kept_rows])
            just_met = just_met[kept_rows]
            if prefix is not None:
                prefix = prefix[keep]
            state.select_memory(kept)
        rows = rows.view(-1)
        tokens = torch.cat([tokens.index_select(0, rows), next_tokens.view(-1, 1)], dim=1)
        if with_attention is not None:
            attention = with_attention.index_select(0, rows)
        state.reorder(rows)
        step += 1

    return [sorted(hyps, key=lambda h: h.score, reverse=True)[: config.nbest] for hyps in finished]
