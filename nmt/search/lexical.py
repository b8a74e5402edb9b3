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

Everything is tensor operations over (hypotheses, candidates, phrases); the only Python loop is
`SearchState.finalize`'s over ended hypotheses, shared with the unconstrained search (nmt.search.state), which
stays as fast as it was.
A sentence decodes identically alone or in a batch: round-robin order compares (rank in bank, bank) pairs, which do
not depend on the other sentences' constraints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.config import SearchConfig
from nmt.search.protocol import DecodingModel
from nmt.search.state import Abandoned, Hypothesis, SearchState

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


@dataclass
class SentenceConstraints:
    """The constraint side of a constrained search, per group (sentence) and per hypothesis row: the phrases, each
    sentence's full bank (`totals`) and own beam, and each row's progress through its phrases."""

    table: PhraseTable
    sentence_beams: Tensor  # (n,) each sentence's own beam (of `rows` rows)
    beam_list: list[int]  # the same on the host: read at every step
    rows: int  # hypothesis rows per sentence: the widest beam
    phrases: PhraseState  # (R, ...) each row's progress
    just_met: Tensor  # (R,) rows that completed a phrase at the last step

    def __post_init__(self):
        self._derive_from_table()

    def _derive_from_table(self) -> None:
        """What the phrase table gives per sentence (`totals`, the full bank) and per hypothesis row."""
        self.totals = self.table.totals  # (n,)
        self.row_pieces, self.row_lengths = (t.repeat_interleave(self.rows, dim=0)
                                             for t in (self.table.pieces, self.table.lengths))

    @classmethod
    def start(cls, phrases: list[list[list[int]]], beam_list: list[int], device) -> "SentenceConstraints":
        rows = max(beam_list)
        table = PhraseTable.build(phrases, device)
        just_met = torch.zeros(len(phrases) * rows, dtype=torch.bool, device=device)
        return cls(table, torch.tensor(beam_list, device=device), beam_list, rows, PhraseState.start(table, rows),
                   just_met)

    def forbid(self, logprobs: Tensor, eos: int, word_continuations: Tensor | None) -> None:
        """No ending before every phrase is written; no piece that glues onto a phrase just completed."""
        all_met = self.phrases.met.all(dim=1) & self.phrases.progress.eq(0)
        logprobs[:, eos].masked_fill_(~all_met, float("-inf"))
        if word_continuations is not None and self.just_met.any():
            rows_after = self.just_met.nonzero()[:, 0]  # only these rows: a pass over all of them costs milliseconds
            logprobs[rows_after] = logprobs[rows_after].masked_fill(word_continuations, float("-inf"))

    def candidates(self, logprobs: Tensor, search: SearchState):
        """Each row's candidates (R, C): its 2k most likely pieces and the pieces that advance its constraints, with
        their scores (-inf for padding and for what can no longer fit its unmet pieces and eos within the length
        limit) and the constraint state each would reach (nmt.search.lexical.advance)."""
        rows = self.rows
        proposals = min(2 * rows, logprobs.shape[1])
        likely = logprobs.topk(proposals, dim=1).indices  # (R, 2K)
        if min(self.beam_list) < rows:  # a sentence of a narrower beam proposes its own 2k
            row_beams = self.sentence_beams.repeat_interleave(rows)  # (R,)
            beyond = torch.arange(proposals, device=likely.device)[None, :] >= 2 * row_beams[:, None]  # (R, 2K)
            likely = likely.masked_fill(beyond, NO_PIECE)
        advancing = advancing_pieces(self.phrases, self.row_pieces)  # (R, P)
        repeated = advancing[:, :, None].eq(likely[:, None, :]).any(dim=2) | (
            advancing[:, :, None].eq(advancing[:, None, :]).tril(diagonal=-1).any(dim=2))
        advancing = advancing.masked_fill(repeated, NO_PIECE)
        candidates = torch.cat([likely, advancing], dim=1)  # (R, C)
        scores = logprobs.gather(1, candidates.clamp(min=0)) + search.scores.view(-1, 1)
        reached = advance(self.phrases, candidates, self.row_pieces, self.row_lengths)
        bank = reached[3]
        room = search.max_lengths.repeat_interleave(rows)[:, None] - 1 - search.length
        fits = candidates.eq(search.eos) | (self.totals.repeat_interleave(rows)[:, None] - bank).le(room)
        scores = scores.masked_fill(candidates.eq(NO_PIECE) | ~fits, float("-inf"))
        return candidates, scores, reached

    def go_on(self, reached, flat: Tensor) -> None:
        """The constraint state of the rows chosen to go on (`flat`: positions in the (R * C) candidates)."""
        met, current, progress, _, completes = reached
        self.phrases = PhraseState(met.view(-1, met.shape[2]).index_select(0, flat),
                                   current.view(-1).index_select(0, flat), progress.view(-1).index_select(0, flat))
        self.just_met = completes.view(-1).index_select(0, flat)

    def keep(self, keep: Tensor, kept: Tensor) -> None:
        """Only the sentences in `keep` (their indices: `kept`) go on."""
        self.sentence_beams = self.sentence_beams[keep]
        self.beam_list = [b for b, kept_one in zip(self.beam_list, keep.tolist()) if kept_one]
        self.table = self.table.select(kept)
        self._derive_from_table()
        kept_rows = (kept[:, None] * self.rows + torch.arange(self.rows, device=kept.device)).view(-1)
        self.phrases = PhraseState(self.phrases.met[kept_rows], self.phrases.current[kept_rows],
                                   self.phrases.progress[kept_rows])
        self.just_met = self.just_met[kept_rows]


def ending_candidates(scores: Tensor, banks: Tensor, totals: Tensor, own_slot: Tensor) -> tuple[Tensor, Tensor]:
    """A hypothesis that has met every constraint ends as in the unconstrained search: when eos is among the k best
    candidates of the full bank. scores, banks (n, K*C); returns the positions (n, K) of the full bank's k best and
    their scores, -inf outside the full bank and outside a sentence's own slots (`own_slot` (n, K))."""
    by_score = scores.argsort(dim=1, descending=True, stable=True)
    outside = banks.gather(1, by_score).ne(totals[:, None])
    ending = by_score.gather(1, outside.to(torch.uint8).argsort(dim=1, stable=True)[:, : own_slot.shape[1]])
    ending_scores = scores.gather(1, ending).masked_fill(
        ~own_slot | banks.gather(1, ending).ne(totals[:, None]), float("-inf"))
    return ending, ending_scores


@torch.no_grad()
def constrained_beam_search(model: DecodingModel, src_tokens: Tensor, config: SearchConfig,
                            phrases: list[list[list[int]]], prefixes: list[list[int]] | None = None,
                            record_attention: bool = False, beams: list[int] | None = None,
                            word_continuations: Tensor | None = None,
                            abandoned: Abandoned | None = None) -> list[list[Hypothesis]]:
    """As `nmt.search.beam.beam_search`, each output holding every phrase of its row in `phrases` (target ids, at
    least one piece each).

    beams: each row's beam (default config.beam), at least its constraint pieces + 1 so that every bank has a place.
        Rows with different beams share a batch: each sentence gets max(beams) hypothesis rows and uses its own
        beam of them, so it decodes as it would alone.
    word_continuations: (V,) True for pieces that continue a word (`nmt.engines.pytorch.Translator.word_continuations`):
        forbidden right after a phrase is completed, so that a constraint "Zaun" is not written as "Zauns".
    The length limit of a row grows to hold its constraint pieces, its forced prefix and eos."""
    device = src_tokens.device
    beam_list = beams or [config.beam] * src_tokens.shape[0]
    constraints = SentenceConstraints.start(phrases, beam_list, device)
    beam = constraints.rows  # hypothesis rows per sentence
    finish_after = config.beam  # finished hypotheses a sentence collects: the beam asked for, not the grown one
    config = dataclasses.replace(config, beam=beam)
    bank_count = int(constraints.totals.max()) + 1  # banks 0..the largest full bank, for the whole search
    search = SearchState(src_tokens, model.config, config, beam, prefixes, reserve=constraints.totals,
                         abandoned=abandoned)
    state = model.init_state(model.encode(src_tokens), beam)
    state.record_attention = record_attention
    slots = torch.arange(beam, device=device)

    while search.groups > 0:
        logprobs = model.decode_step(search.tokens[:, -1], state)  # (R, V)
        active, at_limit = search.groups, search.at_limit
        search.apply_rules(logprobs, at_limit)
        constraints.forbid(logprobs, search.eos, word_continuations)
        candidates, candidate_scores, reached = constraints.candidates(logprobs, search)
        width, bank, totals = candidates.shape[1], reached[3], constraints.totals
        order = round_robin_order(candidate_scores.view(active, beam * width), bank.view(active, beam * width),
                                  totals, bank_count)  # (n, K*C)
        cand_scores = candidate_scores.view(active, -1).gather(1, order)
        cand_tokens = candidates.view(active, -1).gather(1, order)
        own_slot = slots[None, :] < constraints.sentence_beams[:, None]  # (n, K): the slots of a sentence's own beam

        ending, ending_scores = ending_candidates(candidate_scores.view(active, -1), bank.view(active, -1), totals,
                                                  own_slot)
        search.add_attention(state.attention[:, None] if record_attention else None)
        done = search.finalize(ending_scores, ending // width, candidates.view(active, -1).gather(1, ending),
                               [min(b, finish_after) for b in constraints.beam_list])
        done = done | search.end_at_limit(at_limit)

        # The first k candidates in round-robin order that do not end the sentence go on.
        continuing = cand_tokens.eq(search.eos).to(torch.uint8).argsort(dim=1, stable=True)[:, :beam]  # (n, K)
        search.scores = cand_scores.gather(1, continuing).masked_fill(~own_slot, float("-inf"))
        picked = order.gather(1, continuing)  # (n, K) positions in (beam, candidate) of each group
        done = done | search.settled(search.scores.max(dim=1).values)
        if (gone := search.given_up()) is not None:
            done = done | gone
        groups = torch.arange(active, device=device)[:, None]
        flat = (groups * (beam * width) + picked).view(-1)  # into (R*C)
        rows = groups * beam + (order // width).gather(1, continuing)  # (n, K)
        # A sentence with fewer live candidates than rows continues some dead ones (-inf): feed them a real id.
        next_tokens = candidates.view(-1).index_select(0, flat).view(active, beam).clamp(min=search.pad)
        constraints.go_on(reached, flat)

        keep = ~done
        if not keep.all():
            rows, next_tokens = rows[keep], next_tokens[keep]
            kept = search.keep(keep)
            constraints.keep(keep, kept)
            state.select_memory(kept)
        rows = rows.view(-1)
        search.extend(rows, next_tokens)
        state.reorder(rows)

    return search.results(config.nbest)
