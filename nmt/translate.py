"""Lines in -> SentencePiece -> batches by tokens -> beam search -> detokenized lines out, in input order."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator, Protocol

import numpy as np
import torch

from nmt.atomic import atomic_write
from nmt.checkpoint import load_model
from nmt.config import SearchConfig
from nmt.data.batching import make_batches
from nmt.data.dataset import pad_sequences
from nmt.data.text import normalize, read_text_lines  # noqa: F401 (read_text_lines: part of this API)
from nmt.device import attention_kernels, autocast, pick_device
from nmt.model.packed import pack_for_cpu_inference, pack_output_projection
from nmt.errors import NmtError
from nmt.search.beam import Hypothesis, beam_search
from nmt.search.ensemble import Ensemble
from nmt.search.lexical import constrained_beam_search
from nmt.search.sampling import sample
from nmt.search.threads import SmallBatchThreads, cpu_threads
from nmt.terminology import ConstraintError, ConstraintSource, repeated_ngram
from nmt.vocab import Vocab


PRECISIONS = ("fp32", "bf16", "fp16")
BYTE_PIECE = re.compile(r"<0x[0-9A-F]{2}>")  # SentencePiece's byte fallback
# fp32 decoding on a CPU multiplies by weights packed for oneDNN (nmt.model.packed); a switch for A/B benchmarks.
PACK_FOR_CPU = True
# On CUDA, attention through cuDNN as well (nmt.device.attention_kernels); a switch for A/B benchmarks.
CUDNN_ATTENTION = False


@dataclass
class Translation:
    text: str
    score: float  # length-normalized log-probability (what the beam ranks by); 0 for an empty input
    tokens: list[str]  # target pieces
    source_tokens: list[str] = field(default_factory=list)  # source pieces
    # Encoder-decoder attention when asked for: (decoder layers, target pieces + eos, source pieces + eos),
    # averaged over heads, and the hard alignment it gives: (source piece, target piece) index pairs.
    attention: np.ndarray | None = None
    alignment: list[tuple[int, int]] | None = None


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
        models = []
        for path in checkpoints:
            model, vocab, payload = load_model(path, self.device)
            if models and vocab.fingerprint != self.vocab.fingerprint:
                raise NmtError(f"{path}: a different vocabulary from {checkpoints[0]}; an ensemble needs one")
            if not models:
                self.vocab, self.src_lang, self.tgt_lang = vocab, payload.get("src"), payload.get("tgt")
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
            models.append(model)
        self.model = models[0] if len(models) == 1 else Ensemble(models, ensemble_combine)
        self.language = TargetLanguage(self.vocab.language_tokens, target_language)
        self.max_tokens = max_tokens
        self.record_attention = record_attention
        self.generator = torch.Generator(device=self.device).manual_seed(self.search.seed)
        # Attention memory grows with the square of the length: a pathological line is cut rather than run out
        # of memory; the number of cut lines is counted here. A model with learned positions cannot read past its
        # table at all, so its limit is the table's length.
        position_limits = [m.config.max_positions for m in models if m.config.learned_positions]
        self.max_source_tokens = min([max_source_tokens, *position_limits])
        self.max_target_tokens = min(position_limits) if position_limits else None
        self.truncated = 0
        self.grown_beam = 0  # the largest beam constrained lines needed beyond the search's (0: none did)
        rows_per_sentence = self.search.nbest if self.search.sampling else self.search.beam
        self.threads = SmallBatchThreads(self.model, self.device, rows_per_sentence)

    def translate(self, lines: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None) -> list[list[Translation]]:
        """The n-best translations of each line (a list with one empty Translation for an empty line). `prefixes`:
        for each line, text its translation must start with ("" for none). `constraints`: for each line, target
        phrases its translation must contain ([] for none; see nmt.search.lexical). `search` and
        `record_attention`, where given, replace the translator's own for this call (a server's per-request
        options)."""
        search = search or self.search
        record_attention = self.record_attention if record_attention is None else record_attention
        results: list[list[Translation]] = [[Translation("", 0.0, [])] for _ in lines]
        texts = [normalize(line) for line in lines]
        todo = [i for i, text in enumerate(texts) if text]
        if not todo:
            return results
        encoded = self.vocab.encode_source(self.language.mark([texts[i] for i in todo]))
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
        sources = []
        for ids in encoded:
            if len(ids) >= self.max_source_tokens:
                ids = ids[: self.max_source_tokens - 1]
                self.truncated += 1
            sources.append(np.asarray(ids + [self.vocab.eos_id], dtype=np.int64))
        # Unconstrained lines decode with the ordinary search. Constrained ones need a beam of at least their
        # constraint pieces + 1 (dynamic beam allocation needs a place per bank); lines with different beams can
        # share a batch, each at its own beam, so they are grouped by cost alone (`beam_groups`).
        beams = [max(search.beam, sum(len(p) for p in phrases[n]) + 1) if phrases and phrases[n] else 0
                 for n in range(len(todo))]
        self.grown_beam = max([self.grown_beam] + [b for b in beams if b > search.beam])
        for positions in [[n for n, b in enumerate(beams) if not b]] + beam_groups(beams):
            if not positions:
                continue
            lengths = np.array([len(sources[p]) for p in positions])
            plan = make_batches(lengths, lengths, self.max_tokens, shuffle=False)
            for batch in plan.batches:
                batch_indices = [positions[i] for i in batch]
                src_tokens = torch.from_numpy(pad_sequences([sources[i] for i in batch_indices],
                                                            self.vocab.pad_id)).to(self.device)
                batch_prefixes = [forced[i] for i in batch_indices] if forced is not None else None
                constrained = ([phrases[i] for i in batch_indices], [beams[i] for i in batch_indices]) \
                    if beams[batch_indices[0]] else None
                hypotheses = self._search(src_tokens, search, batch_prefixes, constrained, record_attention)
                for position, hyps in zip(batch_indices, hypotheses):
                    source_ids = sources[position][:-1].tolist()
                    results[todo[position]] = [self._translation(h, source_ids) for h in hyps]
        return results

    def _search(self, src_tokens, search: SearchConfig, prefixes, constrained, record_attention: bool):
        with autocast(self.device, self.precision), attention_kernels(self.device, CUDNN_ATTENTION), \
                cpu_threads(self.threads.for_batch(src_tokens.shape[0])):
            if constrained is not None:
                phrases, beams = constrained
                return constrained_beam_search(self.model, src_tokens, search, phrases, prefixes, record_attention,
                                               beams, self.word_continuations)
            if search.sampling:
                return sample(self.model, src_tokens, search, self.generator, prefixes, record_attention)
            return beam_search(self.model, src_tokens, search, prefixes=prefixes, record_attention=record_attention)

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

    def translate_stream(self, lines: Iterable[str], window: int = 1000, prefixes: Iterable[str] | None = None,
                         constraints: ConstraintSource | None = None) -> Iterator[list[Translation]]:
        """Translate a stream window by window (sorting by length inside each), yielding in input order."""
        return translate_windows(self.translate, lines, window, prefixes, constraints)


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


class TargetLanguage:
    """The target-language token a multilingual model's source starts with (`>>deu<<`, OPUS-MT's multilingual
    models): added to every line for `--target-language deu`; without it, each line must start with one."""

    def __init__(self, tokens: list[str], language: str | None):
        self.tokens = set(tokens)
        self.token = None
        if language:
            token = language if language.startswith(">>") else f">>{language}<<"
            if token not in self.tokens:
                known = ", ".join(sorted(t[2:-2] for t in tokens)[:12]) or "none: the model is not multilingual"
                raise NmtError(f"--target-language {language}: not a language of this model (it has {known}"
                               + (", ..." if len(tokens) > 12 else "") + ")")
            self.token = token

    def mark(self, texts: list[str]) -> list[str]:
        if self.token is not None:
            return [f"{self.token} {text}" for text in texts]
        if self.tokens:
            for text in texts:
                if not (text.startswith(">>") and text[:text.find("<<") + 2] in self.tokens):
                    codes = ", ".join(sorted(t[2:-2] for t in self.tokens)[:6])
                    raise NmtError(f"this model is multilingual: choose the output language with --target-language "
                                   f"(one of {codes}{', ...' if len(self.tokens) > 6 else ''}), or start each line "
                                   f"with its token, e.g. >>{sorted(self.tokens)[0][2:-2]}<<")
        return texts


def translate_windows(translate, lines: Iterable[str], window: int, prefixes: Iterable[str] | None = None,
                      constraints: ConstraintSource | None = None) -> Iterator[list[Translation]]:
    """Call `translate(lines, prefixes, constraints=...)` on successive windows of `window` lines, yielding the results
    in order (the streaming both engines share: each window is written before the next is read). A line whose
    constraints cannot be honoured ends it with an error naming the line."""
    prefix_lines = iter(prefixes) if prefixes is not None else None
    buffer: list[str] = []
    buffer_prefixes: list[str] = []
    buffer_constraints: list[list[str]] = []
    done = 0  # lines translated before the buffer

    def flush():
        try:
            return translate(buffer, buffer_prefixes if prefix_lines is not None else None,
                             constraints=buffer_constraints if constraints is not None else None)
        except ConstraintError as error:
            raise NmtError(f"{constraints.where(done + error.index + 1) if constraints else done + error.index + 1}: "
                           f"{error.message}") from None

    for line in lines:
        buffer.append(line)
        if prefix_lines is not None:
            prefix = next(prefix_lines, None)
            if prefix is None:
                raise NmtError(f"--prefix-file has fewer lines than the input ({len(buffer) + done} or more)")
            buffer_prefixes.append(prefix)
        if constraints is not None:
            buffer_constraints.append(constraints.next_for(line))
        if len(buffer) >= window:
            yield from flush()
            done += len(buffer)
            buffer, buffer_prefixes, buffer_constraints = [], [], []
    if constraints is not None:
        constraints.check_finished()
    if buffer:
        yield from flush()


def format_alignment(alignment: list[tuple[int, int]] | None) -> str:
    """Pharaoh format, `SOURCE-TARGET` piece indices from 0 (fast_align, Moses, fairseq, Marian)."""
    return " ".join(f"{s}-{t}" for s, t in alignment or [])


def format_translations(index: int, translations: list[Translation], nbest: int, alignment: bool = False) -> str:
    """One line per input (with --print-alignment: `TRANSLATION ||| ALIGNMENT`, as Marian); with nbest > 1, nbest lines
    `INDEX ||| TRANSLATION ||| SCORE` (Moses/Marian n-best), alignment last."""
    if nbest <= 1:
        best = translations[0]
        return best.text + (f" ||| {format_alignment(best.alignment)}" if alignment else "") + "\n"
    return "".join(f"{index} ||| {t.text} ||| {t.score:.4f}"
                   + (f" ||| {format_alignment(t.alignment)}" if alignment else "") + "\n" for t in translations)


def translation_record(translation: Translation) -> dict:
    record = {"translation": translation.text, "score": round(translation.score, 6), "tokens": translation.tokens}
    if translation.alignment is not None:
        record["alignment"] = format_alignment(translation.alignment)
    return record


def format_json(translations: list[Translation], nbest: int) -> str:
    """One JSON object per input line: the best translation's fields, and with nbest > 1 the list under "nbest"."""
    record = translation_record(translations[0])
    if nbest > 1:
        record["nbest"] = [translation_record(t) for t in translations]
    return json.dumps(record, ensure_ascii=False) + "\n"


class Engine(Protocol):
    """What `nmt translate` and `nmt serve` need of a translator: `Translator` (PyTorch) and
    `nmt.export.ctranslate2.CTranslate2Translator` both have it."""

    search: SearchConfig
    vocab: Vocab
    truncated: int  # input lines cut to max_source_tokens so far
    max_source_tokens: int

    def translate(self, lines: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None) -> list[list[Translation]]: ...

    def translate_stream(self, lines: Iterable[str], window: int = 1000, prefixes: Iterable[str] | None = None,
                         constraints: ConstraintSource | None = None) -> Iterator[list[Translation]]: ...


@dataclass
class OutputFormat:
    """How `translate_file` writes each input line's translations."""

    nbest: int = 1  # Moses n-best lines (INDEX ||| TRANSLATION ||| SCORE) when above 1
    as_json: bool = False  # one JSON object per line instead
    alignment: bool = False  # append ` ||| SRC-TGT ...` hard alignments
    attention_plot: Path | None = None  # a PNG of each line's attention into this folder


def translate_file(engine: Engine, source: Path | BinaryIO, output: Path | None, output_format: OutputFormat,
                   window: int | None = None, prefix_file: Path | None = None,
                   constraints: ConstraintSource | None = None) -> None:
    """Translate the lines of `source` (a file, or a binary stream such as stdin) into `output` (stdout for None),
    `window` lines at a time (default: 1000, or 1 on a terminal), each with its forced prefix (a line of
    `prefix_file`) and its constraints. A file appears whole once every line is translated, or not at all; stdout
    streams, flushed after each window."""
    with contextlib.ExitStack() as files:
        stream = files.enter_context(open(source, "rb")) if isinstance(source, Path) else source
        window = window or (1 if stream.isatty() else 1000)
        if window < 1:
            raise NmtError("--buffer-size must be at least 1")
        prefix_stream = files.enter_context(open(prefix_file, "rb")) if prefix_file else None
        sink = files.enter_context(atomic_write(output, newline="\n")) if output else sys.stdout
        lines = read_text_lines(stream, str(source) if isinstance(source, Path) else "<stdin>")
        prefixes = read_text_lines(prefix_stream, str(prefix_file)) if prefix_stream else None
        for index, translations in enumerate(engine.translate_stream(lines, window, prefixes, constraints)):
            if output_format.as_json:
                sink.write(format_json(translations, output_format.nbest))
            else:
                sink.write(format_translations(index, translations, output_format.nbest, output_format.alignment))
            if output_format.attention_plot is not None and translations[0].attention is not None:
                from nmt.plot import plot_attention
                plot_attention(translations[0], output_format.attention_plot / f"line-{index + 1:06d}.png",
                               title=f"line {index + 1}")
            if index % window == window - 1 or window == 1:
                sink.flush()
        sink.flush()
