"""The vocabulary step of `nmt prepare`: SentencePiece BPE learned on a seeded sample of the cleaned training text, or
a given vocabulary (a parent model's) taken as it is."""

from __future__ import annotations

import hashlib
import math
import os
import random
import resource
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from nmt.atomic import atomic_write, write_bytes
from nmt.data.corpus_steps import TrainIndex
from nmt.data.pool import worker_pool
from nmt.data.step_runner import StepRunner
from nmt.data.text import CleaningOptions, CleaningReport, clean_text_pair
from nmt.errors import NmtError
from nmt.vocab import Vocab, train_sentencepiece


class VocabularyOptions(Protocol):
    """What this step reads of nmt.data.prepare.PrepareOptions."""

    vocab_size: int
    spm_max_sentences: int
    seed: int
    cleaning: CleaningOptions
    vocab_model: Vocab | None
    separate_vocabs: bool


@dataclass
class VocabularyFiles:
    sha256: str  # of spm.model
    sample_sentences: int  # sentences SentencePiece learned from (0: a given vocabulary)
    files: dict | None = None  # manifest key -> file name, where there is more than spm.model
    files_sha256: dict | None = None  # of the files besides spm.model

    @classmethod
    def from_result(cls, result: dict) -> "VocabularyFiles":
        return cls(result["sha256"], result["sample_sentences"], result.get("files"), result.get("files_sha256"))


def vocabulary_step(runner: StepRunner, index: TrainIndex, options: VocabularyOptions,
                    pairs: list[tuple[str, str]] | None = None, tags: tuple[str, ...] = (),
                    symbols: tuple[str, ...] = ()) -> VocabularyFiles:
    """The SentencePiece model(s) in DATA_DIR: learned on a sample of the training text (one joint model, or one per
    side with --separate-vocabs), or the given vocabulary's files (--vocab). A dataset of several pairs (`pairs`:
    each training corpus's languages) learns from a sample balanced by language, and `tags` (its language tokens)
    are pieces of their own, as are `symbols` (the tags of synthetic corpora, nmt.data.synthetic)."""
    if options.vocab_model is not None:
        check_language_tokens(options, tags)
        return _given_vocabulary(runner, options.vocab_model)
    cleaning = options.cleaning
    params = {"index": index.digest, "vocab_size": options.vocab_size, "sample": options.spm_max_sentences,
              "seed": options.seed, "max_chars": cleaning.max_chars, "invalid_utf8": cleaning.invalid_utf8}
    balanced = pairs is not None and len(set(pairs)) > 1
    if balanced:
        params.update(pairs=[f"{a}-{b}" for a, b in pairs], tags=list(tags), sample_by="language, equal shares")
    # One joint model (the paper's shared vocabulary), or with --separate-vocabs one per side, each its own ids
    sides = {"spm_model": ("spm.model", None)} if not options.separate_vocabs else {
        "spm_model": ("spm.model", "src"), "target_spm_model": ("spm.target.model", "tgt")}
    if options.separate_vocabs:
        params["separate_vocabs"] = True
    if symbols:
        params["symbols"] = list(symbols)

    def run() -> tuple[list[Path], dict]:
        outputs, sentences_used, peaks = [], 0, []
        for name, side in sides.values():
            sample_path = runner.work / "spm-sample.txt"
            sentences = write_balanced_sample(index, options, sample_path, pairs, side) if balanced else \
                write_sample(index, options, sample_path, side)
            if sentences == 0:
                raise NmtError("no training text left after cleaning to learn a vocabulary from")
            which = {"src": "source ", "tgt": "target "}.get(side, "")
            runner.log(f"spm: training a {options.vocab_size}-piece {which}BPE model on {sentences:,} sentences")
            # In a process of its own: its memory (which the sample size bounds) is returned when it ends, and
            # measured apart from the streaming steps'.
            with worker_pool(1) as pool:
                trained, child_peak = pool.apply_async(_train_spm, (str(sample_path), str(runner.work / "spm"),
                                                       options.vocab_size, sentences, os.cpu_count() or 1,
                                                       (*tags, *symbols) if side != "tgt" else ())).get()
            os.replace(trained, runner.out_dir / name)
            sample_path.unlink()
            (runner.work / "spm.vocab").unlink(missing_ok=True)  # the pieces are in the model; this copy is unused
            outputs.append(runner.out_dir / name)
            sentences_used += sentences
            peaks.append(child_peak)
        digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in outputs}
        return outputs, {"sha256": digests["spm.model"], "sample_sentences": sentences_used,
                         "spm_peak_rss_mb": max(peaks),
                         **({"files": {key: name for key, (name, _) in sides.items()},
                             "files_sha256": {"spm.target.model": digests["spm.target.model"]}}
                            if options.separate_vocabs else {})}

    return VocabularyFiles.from_result(runner.step("spm", params, run))


def check_language_tokens(options: VocabularyOptions, tags: tuple[str, ...]) -> None:
    """A given vocabulary (--vocab) must have a piece for each language token the sources start with."""
    if options.vocab_model is None:
        return
    missing = [tag for tag in tags if tag not in options.vocab_model.language_tokens]
    if missing:
        have = ", ".join(options.vocab_model.language_tokens) or "none"
        raise NmtError(f"--vocab {options.vocab_source}: has no piece for the language token"
                       f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} that this dataset's sources start "
                       f"with (its language tokens: {have}); give a vocabulary prepared for these pairs, or none")


def _given_vocabulary(runner: StepRunner, vocab: Vocab) -> VocabularyFiles:
    """`--vocab`: the given vocabulary's files (spm.model, and the target's model and the table of pieces where
    it has them); its fingerprint is the step's parameter, so another vocabulary redoes this step and
    everything encoded with it."""
    files = vocab.file_entries()

    def run() -> tuple[list[Path], dict]:
        for name, data in files.values():
            write_bytes(runner.out_dir / name, data)
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.values()}
        return [runner.out_dir / name for name, _ in files.values()], {
            "sha256": digests["spm.model"], "sample_sentences": 0,
            "files": {key: name for key, (name, _) in files.items()},
            "files_sha256": {name: digest for name, digest in digests.items() if name != "spm.model"}}

    return VocabularyFiles.from_result(runner.step("spm", {"given": vocab.fingerprint}, run))


def write_sample(index: TrainIndex, options: VocabularyOptions, sample_path: Path, side: str | None = None) -> int:
    """A seeded uniform sample of training pairs, normalized and cleaned as binarization will: both sides, or one
    (`side`: "src" or "tgt")."""
    total = index.pairs
    wanted_pairs = min(total, math.ceil(options.spm_max_sentences / (1 if side else 2)))
    chosen = sorted(random.Random(options.seed).sample(range(total), wanted_pairs))
    cleaning = CleaningOptions(**{**asdict(options.cleaning), "invalid_utf8": "drop"})
    sentences, base, cursor = 0, 0, 0
    with atomic_write(sample_path) as out:
        for corpus in index.corpora:
            end = base + corpus.lines
            with open(corpus.src, "rb") as src_file, open(corpus.tgt, "rb") as tgt_file:
                for number, (src_bytes, tgt_bytes) in enumerate(zip(src_file, tgt_file), start=base):
                    if cursor == len(chosen) or chosen[cursor] >= end:
                        break
                    if number != chosen[cursor]:
                        continue
                    cursor += 1
                    pair = _cleaned(src_bytes, tgt_bytes, cleaning)
                    if pair:
                        kept = pair if side is None else (pair[0],) if side == "src" else (pair[1],)
                        out.write("".join(f"{text}\n" for text in kept))
                        sentences += len(kept)
            base = end
    return sentences


def write_balanced_sample(index: TrainIndex, options: VocabularyOptions, sample_path: Path,
                          pairs: list[tuple[str, str]], side: str | None = None) -> int:
    """A seeded sample in which every language has an equal share (of the corpora's sides that hold it, each an
    equal part; as many sentences as the language with the fewest has), so that a language with more corpora or
    more lines does not crowd the others out of the vocabulary: English as the source of three pairs gets a
    quarter of an en->{de,fr,cs} sample, not half.
    Normalized and cleaned as binarization will, one sentence a line."""
    sides = [(number, position) for number, pair in enumerate(pairs)
             for position in ((0, 1) if side is None else (0,) if side == "src" else (1,))]
    languages = sorted({pairs[number][position] for number, position in sides})
    holders = {lang: [s for s in sides if pairs[s[0]][s[1]] == lang] for lang in languages}
    # Each language's share: an equal part of the sample, and no more than the language with the fewest lines has
    # (English as the source of three Multi30k pairs has the same 29,000 captions three times over).
    share = min([options.spm_max_sentences / len(languages)]
                + [max(index.corpora[number].lines for number, _ in holders[lang]) for lang in languages])
    quota = {s: share / len(holders[pairs[s[0]][s[1]]]) for s in sides}
    rng = random.Random(options.seed)
    cleaning = CleaningOptions(**{**asdict(options.cleaning), "invalid_utf8": "drop"})
    sentences = 0
    with atomic_write(sample_path) as out:
        for number, corpus in enumerate(index.corpora):
            wanted = {position: set(rng.sample(range(corpus.lines), min(corpus.lines, math.ceil(quota[(number,
                      position)])))) for position in (0, 1) if (number, position) in quota}
            if not wanted:
                continue
            with open(corpus.src, "rb") as src_file, open(corpus.tgt, "rb") as tgt_file:
                for line, (src_bytes, tgt_bytes) in enumerate(zip(src_file, tgt_file)):
                    chosen = [position for position, lines in wanted.items() if line in lines]
                    if not chosen:
                        continue
                    pair = _cleaned(src_bytes, tgt_bytes, cleaning)
                    if pair:
                        out.write("".join(f"{pair[position]}\n" for position in chosen))
                        sentences += len(chosen)
    return sentences


def _cleaned(src_bytes: bytes, tgt_bytes: bytes, cleaning: CleaningOptions) -> tuple[str, str] | None:
    """A sampled line pair normalized and cleaned as binarization will; None where cleaning (or UTF-8) drops it."""
    try:
        return clean_text_pair(src_bytes.rstrip(b"\n").decode("utf-8"), tgt_bytes.rstrip(b"\n").decode("utf-8"),
                               cleaning, CleaningReport())
    except UnicodeDecodeError:
        return None


def _train_spm(sample: str, prefix: str, vocab_size: int, sentences: int, threads: int,
               symbols: tuple[str, ...] = ()) -> tuple[str, float]:
    """SentencePiece trained on `sample` (in a worker process): the model's path and the process's peak memory."""
    try:
        model = train_sentencepiece(Path(sample), Path(prefix), vocab_size, sentences, threads=threads,
                                    symbols=tuple(symbols))
    except RuntimeError as error:
        raise NmtError(f"SentencePiece training failed: {str(error).strip().splitlines()[-1]}") from None
    return str(model), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
