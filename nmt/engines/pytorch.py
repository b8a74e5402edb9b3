"""The PyTorch engine: loaded checkpoints (one model or an ensemble) decoding with every search feature — beam
search, sampling, forced prefixes, lexical constraints, attention and alignments, int8 or half precision."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
import numpy as np
import torch

from nmt.checkpoint import load_model
from nmt.config import SearchConfig
from nmt.data.batching import make_batches
from nmt.data.dataset import pad_sequences
from nmt.data.text import normalize
from nmt.device import PRECISIONS, attention_kernels, autocast, pick_device
from nmt.engines.base import Translation, encode_lines, sampling_seed
from nmt.engines.threads import SmallBatchThreads, cpu_threads
from nmt.errors import NmtError
from nmt.model.packed import pack_for_cpu_inference, pack_output_projection
from nmt.search.beam import Hypothesis, beam_search
from nmt.search.ensemble import Ensemble
from nmt.search.lexical import constrained_beam_search
from nmt.search.sampling import sample
from nmt.terminology import ConstraintError, repeated_ngram
from nmt.vocab import TargetLanguage

BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")  # SentencePiece's byte fallback
MAX_CONSTRAINT_PIECES = 128  # a line's constraint pieces; each widens the beam by one
# fp32 decoding on a CPU multiplies by weights packed for oneDNN (nmt.model.packed); a switch for A/B benchmarks.
PACK_FOR_CPU = True
# On CUDA, attention through cuDNN as well (nmt.device.attention_kernels); a switch for A/B benchmarks.
CUDNN_ATTENTION = False


def hard_alignment(attention: np.ndarray, source_length: int, target_length: int) -> list[tuple[int, int]]:
    """Each target piece aligned to the source piece its last decoder layer attends to most (eos rows and columns
    left out), as fairseq's --print-alignment."""
    if source_length == 0 or target_length == 0:
        return []
    last = attention[-1, :target_length, :source_length]  # (T, S)
    return [(int(s), t) for t, s in enumerate(last.argmax(axis=1))]


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of the linear layers (weights int8 per tensor, activations quantized on the fly);
    the tied embedding/output projection stays fp32. torch.ao's API is deprecated in favour of torchao, whose CPU
    int8 path we have not been able to validate here: see docs/translation.md."""
    import warnings

    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class Translator:
    """Loaded models ready to translate. `translate(lines)` keeps the input order; empty lines stay empty.

    Several checkpoints decode as an ensemble (`ensemble_combine`: the mean of their log-probabilities at every step,
    or of their probabilities; see nmt.search.ensemble)."""

    def __init__(self, checkpoint: Path | list[Path], search: SearchConfig | None = None, device: str | None = None,
                 max_tokens: int = 6000, max_source_tokens: int = 1024, quantize: str | None = None,
                 record_attention: bool = False, ensemble_combine: str = "logprob", precision: str = "fp32",
                 target_language: str | None = None):
        self.search = search or SearchConfig()
        self.search.validate()
        self.device = pick_device(device)
        if precision not in PRECISIONS:
            raise NmtError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
        if precision != "fp32" and quantize == "int8":
            raise NmtError("--precision bf16/fp16 and --quantize int8 are two ways to decode in less precision: "
                           "choose one")
        self.precision = precision
        checkpoints = checkpoint if isinstance(checkpoint, list) else [checkpoint]
        models = [self._load(path, quantize, precision, first=index == 0, first_path=checkpoints[0])
                  for index, path in enumerate(checkpoints)]
        self.model = models[0] if len(models) == 1 else Ensemble(models, ensemble_combine)
        self.language = TargetLanguage(self.vocab.language_tokens, target_language)
        self.max_tokens = max_tokens
        self.record_attention = record_attention
        # Attention memory grows with the square of the length: a pathological line is cut rather than run out
        # of memory; the number of cut lines is counted here. A model with learned positions cannot read past its
        # table at all, so its limit is the table's length.
        position_limits = [m.config.max_positions for m in models if m.config.learned_positions]
        self.max_source_tokens = min([max_source_tokens, *position_limits])
        self.max_target_tokens = min(position_limits) if position_limits else None
        self.truncated = 0
        self.records_attention = True
        self.grown_beam = 0  # the largest beam constrained lines needed beyond the search's (0: none did)
        rows_per_sentence = self.search.nbest if self.search.sampling else self.search.beam
        self.threads = SmallBatchThreads(self.model, self.device, rows_per_sentence)

    def _load(self, path: Path, quantize: str | None, precision: str, first: bool, first_path: Path):
        """One member: loaded, checked against the first one's vocabulary, quantized or packed for the CPU."""
        model, vocab, payload = load_model(path, self.device)
        if first:
            self.vocab, self.src_lang, self.tgt_lang = vocab, payload.get("src"), payload.get("tgt")
            self.pairs = [tuple(pair) for pair in payload.get("pairs") or []]  # a multilingual model's, as trained
        elif vocab.fingerprint != self.vocab.fingerprint:
            raise NmtError(f"{path}: a different vocabulary from {first_path}; an ensemble needs one")
        if quantize == "int8":
            if self.device.type != "cpu":
                raise NmtError("--quantize int8 runs on the CPU only")
            model = quantize_int8(model)
            if PACK_FOR_CPU:
                pack_output_projection(model)  # the fp32 projection int8 leaves: packed, 82 -> 61 ms a sentence
        elif quantize not in (None, "none"):
            raise NmtError(f"--quantize must be int8 or none, got {quantize!r}")
        elif self.device.type == "cpu" and precision == "fp32" and PACK_FOR_CPU:
            pack_for_cpu_inference(model)  # oneDNN's packed weights: 1.5-3.7x faster products at these sizes
        return model

    def translate(self, lines: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None,
                  abandoned: Callable[[], set[int]] | None = None) -> list[list[Translation]]:
        """The n-best translations of each line (a list with one empty Translation for an empty line). `prefixes`:
        for each line, text its translation must start with ("" for none). `constraints`: for each line, target
        phrases its translation must contain ([] for none; see nmt.search.lexical). `search` and
        `record_attention`, where given, replace the translator's own for this call (a server's per-request
        options). `abandoned`: asked as decoding goes which lines (positions) nobody waits for any more; their
        decoding stops and they keep an empty Translation."""
        search = search or self.search
        record_attention = self.record_attention if record_attention is None else record_attention
        encoded = encode_lines(lines, self.vocab, self.language, self.max_source_tokens)
        results, todo = encoded.results, encoded.todo
        if not todo:
            return results
        forced = None
        if prefixes is not None:
            prefix_texts = [normalize(prefixes[i]) for i in todo]
            forced = [ids if text else [] for ids, text in zip(self.vocab.encode_target(prefix_texts), prefix_texts)]
            if self.max_target_tokens is not None:  # the prefix and its eos must fit the position table
                forced = [ids[: self.max_target_tokens - 1] for ids in forced]
        phrases = None
        if constraints is not None and any(constraints[i] for i in todo):
            phrases = [self.constraint_pieces(constraints[i], search, len(forced[n]) if forced else 0, i)
                       for n, i in enumerate(todo)]
        self.truncated += encoded.truncated
        sources = [np.asarray(ids + [self.vocab.eos_id], dtype=np.int64) for ids in encoded.ids]
        # Unconstrained lines decode with the ordinary search. Constrained ones need a beam of at least their
        # constraint pieces + 1 (dynamic beam allocation needs a place per bank); lines with different beams can
        # share a batch, each at its own beam, so they are grouped by cost alone (`beam_groups`).
        beams = [max(search.beam, sum(len(p) for p in phrases[n]) + 1) if phrases and phrases[n] else 0
                 for n in range(len(todo))]
        self.grown_beam = max([self.grown_beam] + [b for b in beams if b > search.beam])
        generator = torch.Generator(device=self.device).manual_seed(sampling_seed(search.seed, lines)) \
            if search.sampling else None
        for positions in [[n for n, b in enumerate(beams) if not b]] + beam_groups(beams):
            if not positions:
                continue
            lengths = np.array([len(sources[p]) for p in positions])
            plan = make_batches(lengths, lengths, self.max_tokens, shuffle=False)
            for batch in plan.batches:
                batch_indices = [positions[i] for i in batch]
                rows_abandoned = _rows_abandoned(abandoned, [todo[p] for p in batch_indices])
                if rows_abandoned is not None and len(rows_abandoned()) == len(batch_indices):
                    continue
                src_tokens = torch.from_numpy(pad_sequences([sources[i] for i in batch_indices],
                                                            self.vocab.pad_id)).to(self.device)
                batch_prefixes = [forced[i] for i in batch_indices] if forced is not None else None
                constrained = ([phrases[i] for i in batch_indices], [beams[i] for i in batch_indices]) \
                    if beams[batch_indices[0]] else None
                hypotheses = self._search(src_tokens, search, batch_prefixes, constrained, record_attention,
                                          rows_abandoned, generator)
                for position, hyps in zip(batch_indices, hypotheses):
                    source_ids = sources[position][:-1].tolist()
                    if hyps:  # none: abandoned
                        results[todo[position]] = [self._translation(h, source_ids) for h in hyps]
        return encoded.mark_truncated(results)

    def _search(self, src_tokens, search: SearchConfig, prefixes, constrained, record_attention: bool, abandoned,
                generator: torch.Generator | None):
        with autocast(self.device, self.precision), attention_kernels(self.device, CUDNN_ATTENTION), \
                cpu_threads(self.threads.for_batch(src_tokens.shape[0])):
            if constrained is not None:
                phrases, beams = constrained
                return constrained_beam_search(self.model, src_tokens, search, phrases, prefixes, record_attention,
                                               beams, self.word_continuations, abandoned)
            if search.sampling:
                return sample(self.model, src_tokens, search, generator, prefixes, record_attention, abandoned)
            return beam_search(self.model, src_tokens, search, prefixes=prefixes, record_attention=record_attention,
                               abandoned=abandoned)

    @functools.cached_property
    def word_continuations(self) -> torch.Tensor:
        """(V,) the target pieces that continue a word: no word-start marker and a letter or digit first, or a byte
        of byte fallback (`<0xC3>`: alone it cannot say whether its character is a letter, and it glues on)."""
        pieces = [self.vocab.target.piece(i) for i in range(self.vocab.target_size)]
        size = self.model.config.target_vocab_size or self.model.config.vocab_size
        mask = [bool(p) and p[0] != "\u2581" and (p[0].isalnum() or p[0] == "_" or bool(BYTE_PIECE.fullmatch(p)))
                for p in pieces][:size]
        return torch.tensor(mask + [False] * (size - len(mask)), device=self.device)

    def constraint_pieces(self, phrases: list[str], search: SearchConfig, prefix_length: int = 0,
                          index: int = 0) -> list[list[int]]:
        """A line's constraint phrases as target ids, checked: constraints need beam search, a
        --no-repeat-ngram-size they do not break, and an output limit that holds them (a model with learned
        positions writes at most its table's length). `index`: the line's position, for ConstraintError."""
        if not phrases:
            return []
        if search.sampling:
            raise NmtError("constraints need beam search: not with --sampling")
        texts = [normalize(p) for p in phrases]
        pieces = self.vocab.encode_target(texts) if all(texts) else []
        if not all(pieces) or len(pieces) != len(texts):
            raise ConstraintError(index, "an empty constraint")
        unknown = self.vocab.target.unk_id
        for text, ids in zip(texts, pieces):
            if unknown in ids:  # it would be written as the unknown piece, not as the term
                raise ConstraintError(index, f"the constraint {text!r} has characters the model's target vocabulary "
                                             "cannot write")
        total = sum(len(p) for p in pieces)
        if total > MAX_CONSTRAINT_PIECES:  # the beam grows by one a piece: 3,000 would ask for hundreds of GB
            raise ConstraintError(index, f"constraints of {total} pieces; a line takes at most "
                                         f"{MAX_CONSTRAINT_PIECES} (the beam grows by one for each)")
        if search.no_repeat_ngram_size and (ngram := repeated_ngram(pieces, search.no_repeat_ngram_size)):
            shown = " ".join(map(self.vocab.target.piece, ngram))
            raise ConstraintError(index, f"the constraints repeat the pieces {shown}, which --no-repeat-ngram-size "
                                         f"{search.no_repeat_ngram_size} forbids")
        needed = sum(len(p) for p in pieces) + prefix_length + 1
        if self.max_target_tokens is not None and needed > self.max_target_tokens:
            raise ConstraintError(index, f"the constraints need {needed} pieces with end-of-sentence"
                                         + (" and the prefix" if prefix_length else "")
                                         + f"; this model writes at most {self.max_target_tokens}")
        return pieces

    def _translation(self, hypothesis: Hypothesis, source_ids: list[int]) -> Translation:
        target, source = self.vocab.target.piece, self.vocab.source.piece
        translation = Translation(self.vocab.decode([hypothesis.tokens])[0], hypothesis.score,
                                  [target(t) for t in hypothesis.tokens], [source(t) for t in source_ids])
        if hypothesis.attention is not None:
            # (T + 1, layers, S_padded) -> (layers, T + 1, S + 1): this source's columns only, eos included
            attention = hypothesis.attention[:, :, : len(source_ids) + 1].permute(1, 0, 2).float().cpu().numpy()
            translation.attention = attention
            translation.alignment = hard_alignment(attention, len(source_ids), len(hypothesis.tokens))
        return translation


def _rows_abandoned(abandoned: Callable[[], set[int]] | None, lines: list[int]) -> Callable[[], set[int]] | None:
    """A batch's view of which of a call's lines are abandoned: the batch rows (indices) of those among `lines`."""
    if abandoned is None:
        return None
    return lambda: {row for row, line in enumerate(lines) if line in gone} if (gone := abandoned()) else set()


# What decoding one more batch costs, in hypothesis rows: each step streams the model's weights whatever the rows
# (measured with benchmarks/terminology.py on a CPU, where merging lines into wider batches paid until about here).
GROUP_COST_ROWS = 32


def beam_groups(beams: list[int]) -> list[list[int]]:
    """Positions of the constrained lines (beam > 0) in groups that decode together: each line gets the group's
    widest beam in rows (and uses its own), so a group costs GROUP_COST_ROWS + lines x widest beam. Lines sorted by
    beam, the cut points minimise the total (dynamic programming over the distinct beams)."""
    counts: dict[int, int] = {}
    for beam in beams:
        if beam:
            counts[beam] = counts.get(beam, 0) + 1
    widths = sorted(counts)
    best = [0.0] + [float("inf")] * len(widths)  # best[j]: cost of the first j widths
    cut = [0] * (len(widths) + 1)
    for end in range(1, len(widths) + 1):
        lines = 0
        for start in range(end, 0, -1):
            lines += counts[widths[start - 1]]
            cost = best[start - 1] + GROUP_COST_ROWS + lines * widths[end - 1]
            if cost < best[end]:
                best[end], cut[end] = cost, start - 1
    groups, end = [], len(widths)
    while end > 0:
        members = set(widths[cut[end]: end])
        groups.append([n for n, beam in enumerate(beams) if beam in members])
        end = cut[end]
    return groups[::-1]
