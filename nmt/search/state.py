"""The state every search loop carries from step to step (plain and constrained beam search, sampling), and what it
does with it: the step's rules, recording ended hypotheses, dropping finished sentences, following back-pointers.

Hypotheses live in groups of `beam` consecutive rows, one group per sentence still decoding (sampling: one row per
group, several groups per sentence). The model's own decoding state (key/value caches) is the loop's: it follows the
same `rows` and `kept` indices this state returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.config import ModelConfig, SearchConfig
from nmt.search import step_rules


# Which sentences of a search (their indices) nobody waits for any more; asked once a step.
Abandoned = Callable[[], "set[int]"]


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


class SearchState:
    """Hypotheses of the groups still decoding. Per group: `sentence_ids` (n,), `max_lengths` (n,) eos included,
    `prefix` (n, P) forced tokens padded with pad (or None), `scores` (n, k) cumulative log-probabilities. Per row:
    `tokens` (n*k, t) bos first, `attention` (n*k, t, layers, S) when recorded. Per input sentence: `finished`
    hypotheses and `nth_best`, the score of its nbest-th finished one."""

    def __init__(self, src_tokens: Tensor, model_config: ModelConfig, config: SearchConfig, beam: int,
                 prefixes: list[list[int]] | None = None, reserve: Tensor | None = None,
                 sentence_ids: Tensor | None = None, sentences: int | None = None,
                 abandoned: Abandoned | None = None):
        """src_tokens (n, S) one row per group; prefixes: each group's forced target tokens ([] for none); reserve
        (n,): pieces each output must hold besides its prefix and eos (constraints), which grow its length limit;
        sentence_ids: the sentence of each group (default: one group per sentence, in order) of `sentences`;
        abandoned: asked at every step which sentences nobody waits for any more (`given_up`)."""
        self.config, self.beam, self.abandoned = config, beam, abandoned
        self.pad, self.bos, self.eos = model_config.pad_id, model_config.bos_id, model_config.eos_id
        device = src_tokens.device
        groups = src_tokens.shape[0]
        self.max_lengths = step_rules.max_lengths(
            src_tokens, self.pad, config.max_len_a, config.max_len_b,
            model_config.max_positions if model_config.learned_positions else None)
        self.prefix = step_rules.pad_prefixes(prefixes, self.pad, device)  # (n, P) or None
        forced_lengths = self.prefix.ne(self.pad).sum(dim=1) if self.prefix is not None else 0
        if self.prefix is not None:  # a forced prefix longer than the length limit still fits, with its eos
            self.max_lengths = torch.maximum(self.max_lengths, forced_lengths + 1)
        if reserve is not None:
            self.max_lengths = torch.maximum(self.max_lengths, reserve + 1 + forced_lengths)
        self.sentence_ids = sentence_ids if sentence_ids is not None else torch.arange(groups, device=device)
        sentences = sentences if sentences is not None else groups
        self.tokens = torch.full((groups * beam, 1), self.bos, dtype=torch.long, device=device)
        self.scores = torch.full((groups, beam), float("-inf"), device=device)
        self.scores[:, 0] = 0.0  # all beams start identical: only the first may expand at step 0
        self.attention: Tensor | None = None
        self.with_step: Tensor | None = None  # `attention` and this step's, once `add_attention` is called
        self.finished: list[list[Hypothesis]] = [[] for _ in range(sentences)]
        self.nth_best = torch.full((sentences,), float("-inf"), device=device)
        self.step = 0

    @property
    def groups(self) -> int:
        return len(self.sentence_ids)

    @property
    def length(self) -> int:
        """Of a hypothesis that ends at this step, eos included."""
        return self.step + 1

    @property
    def at_limit(self) -> Tensor:
        """(n,) groups that must end now."""
        return self.max_lengths <= self.length

    def apply_rules(self, logprobs: Tensor, at_limit: Tensor) -> None:
        """This step's rules on `logprobs` (n*k, V), in place: specials, repeated n-grams, lengths (`at_limit`: this
        step's `self.at_limit`, which the caller needs too), forced prefixes."""
        beam = self.beam
        forced = self.prefix.repeat_interleave(beam, dim=0) if step_rules.prefix_active(self.prefix, self.step) \
            else None
        step_rules.apply_step(logprobs, self.tokens[:, 1:], self.step, self.config, at_limit.repeat_interleave(beam),
                              forced, self.pad, self.bos, self.eos)

    def add_attention(self, step_attention: Tensor | None) -> None:
        """This step's attention (n*k, 1, layers, S) after the rows' earlier steps, for the hypotheses that end now."""
        self.with_step = torch.cat([self.attention, step_attention], dim=1) if self.attention is not None \
            else step_attention

    def finalize(self, cand_scores: Tensor, cand_beams: Tensor, cand_tokens: Tensor,
                 group_beams: list[int] | None = None) -> Tensor:
        """Record candidates among the first k (n, k) that end in eos; return which groups now have k hypotheses.
        group_beams: each group's own k where groups share rows of width `beam` but decode with smaller beams
        (their candidates beyond their k must already score -inf)."""
        beam, config, eos = self.beam, self.config, self.eos
        limits = group_beams or [beam] * self.groups
        top = slice(0, beam)
        # -inf: an ending no constraint allows. NaN (a model gone numerically wrong) still ends: decoding must stop.
        ends = cand_tokens[:, top].eq(eos) & ~cand_scores[:, top].isneginf()  # (n, k)
        done = torch.zeros(self.groups, dtype=torch.bool)
        if ends.any():
            penalty = length_penalty(self.length, config.lenpen, config.lenpen_style)
            # Everything the ended candidates need, copied to the host at once: on a GPU each scalar read is a
            # synchronisation, and a step can end hundreds of hypotheses.
            groups, positions = ends.nonzero(as_tuple=True)
            rows = groups * beam + cand_beams[groups, positions]
            attention = self.with_step
            ended = zip(self.sentence_ids[groups].tolist(), cand_scores[groups, positions].tolist(),
                        self.tokens[rows, 1:].tolist(),
                        attention.index_select(0, rows).unbind(0) if attention is not None else [None] * len(rows))
            settled: dict[int, float] = {}  # sentence -> its new nbest-th score
            ended_limits = [limits[g] for g in groups.tolist()]
            for (sentence, logprob, tokens, hypothesis_attention), limit in zip(ended, ended_limits):
                hypotheses = self.finished[sentence]
                if len(hypotheses) >= limit:
                    continue
                hypotheses.append(Hypothesis(tokens, logprob / penalty, logprob, hypothesis_attention))
                if len(hypotheses) >= config.nbest:
                    settled[sentence] = sorted((h.score for h in hypotheses), reverse=True)[config.nbest - 1]
            if settled:
                self.nth_best[torch.tensor(list(settled), device=self.nth_best.device)] = torch.tensor(
                    list(settled.values()), dtype=self.nth_best.dtype, device=self.nth_best.device)
            done = torch.tensor([len(self.finished[s]) >= limit
                                 for s, limit in zip(self.sentence_ids.tolist(), limits)])
        return done.to(cand_scores.device)

    def end_at_limit(self, at_limit: Tensor) -> Tensor:
        """Groups at their length limit are done whatever their scores. Normally their eos candidates were recorded
        just now; where none was (every score NaN or -inf), the first beam is kept with a score of -inf, so that
        decoding ends within the limit and every input still gets an output."""
        if not at_limit.any():
            return at_limit
        sentences = self.sentence_ids.tolist()
        for group in at_limit.nonzero()[:, 0].tolist():
            sentence = sentences[group]
            if not self.finished[sentence]:
                row = group * self.beam
                self.finished[sentence].append(Hypothesis(
                    self.tokens[row, 1:].tolist(), float("-inf"), float("-inf"),
                    self.with_step[row] if self.with_step is not None else None))
        return at_limit

    def end_rows(self, ended: Tensor) -> None:
        """Sampling (one row a group): every `ended` row becomes a hypothesis of its sentence as it stands."""
        penalty = length_penalty(self.length, self.config.lenpen, self.config.lenpen_style)
        for row in ended.nonzero()[:, 0].tolist():
            logprob = float(self.scores[row, 0])
            self.finished[int(self.sentence_ids[row])].append(Hypothesis(
                self.tokens[row, 1:].tolist(), logprob / penalty, logprob,
                self.with_step[row] if self.with_step is not None else None))

    def settled(self, best_continuing: Tensor) -> Tensor:
        """(n,) groups whose result going on cannot change (`cannot_be_beaten`)."""
        return cannot_be_beaten(self.nth_best[self.sentence_ids], best_continuing, self.max_lengths, self.length,
                                self.config)

    def given_up(self) -> Tensor | None:
        """(n,) groups whose sentence nobody waits for any more (a server's request that timed out or whose client
        left): they leave the batch like finished ones, with no hypothesis, so that abandoned work stops within a
        step instead of decoding to its end. None where no group is (no step pays for a mask of none)."""
        gone = self.abandoned() if self.abandoned is not None else None
        if not gone:
            return None
        return torch.tensor([s in gone for s in self.sentence_ids.tolist()], device=self.sentence_ids.device)

    def keep(self, keep: Tensor) -> Tensor:
        """Only the groups in the mask `keep` (n,) go on (their rows are chosen by the next `extend`); returns their
        indices, for what the caller keeps per group (the model's memory, constraint state)."""
        self.sentence_ids, self.max_lengths, self.scores = (self.sentence_ids[keep], self.max_lengths[keep],
                                                            self.scores[keep])
        if self.prefix is not None:
            self.prefix = self.prefix[keep]
        return torch.nonzero(keep)[:, 0]

    def extend(self, rows: Tensor | None, next_tokens: Tensor) -> None:
        """The next step's hypotheses: row r continues the previous step's row rows[r] (a beam's back-pointer) with
        next_tokens[r]; rows None: every row continues itself (sampling, where no row ended)."""
        previous = self.tokens if rows is None else self.tokens.index_select(0, rows)
        self.tokens = torch.cat([previous, next_tokens.view(-1, 1)], dim=1)  # (n*k, t+1)
        if self.with_step is not None:
            self.attention = self.with_step if rows is None else self.with_step.index_select(0, rows)
        self.with_step = None
        self.step += 1

    def results(self, nbest: int) -> list[list[Hypothesis]]:
        """Each sentence's `nbest` best finished hypotheses, best first."""
        return [sorted(hypotheses, key=lambda h: h.score, reverse=True)[:nbest] for hypotheses in self.finished]
