"""The binarization steps of `nmt prepare`: the training split cleaned, encoded and written shard by shard in worker
processes and merged; the valid and test splits encoded line for line, never filtered."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from nmt.data.binarize import ENCODE_BATCH, ShardTask, binarize_shard, merge_shards
from nmt.data.binary import TokenArrayWriter
from nmt.data import corpus_steps
from nmt.data.corpus_steps import ReferenceFiles, TrainIndex
from nmt.data.pool import worker_pool
from nmt.data.stamps import digest
from nmt.data.step_runner import StepRunner
from nmt.data.text import CleaningOptions, normalize
from nmt.data.vocabulary_steps import VocabularyFiles
from nmt.vocab import Vocab


class BinarizeOptions(Protocol):
    """What these steps read of nmt.data.prepare.PrepareOptions."""

    workers: int
    cleaning: CleaningOptions


def binarize_train(runner: StepRunner, index: TrainIndex, spm: VocabularyFiles, vocab_files: dict,
                   options: BinarizeOptions, src: str, tgt: str, dtype: str, tags: list[str] | None = None) -> dict:
    """Clean, encode and filter the training pairs shard by shard in --workers processes, then merge the shards into
    DATA_DIR/train.{SRC,TGT}.{bin,idx}. Returns the split's manifest entry, with the cleaning report and the pairs
    kept of each corpus (`corpus_sentences`). `tags`: the token each corpus's source lines start with ("" none)."""
    tags = tags or [""] * len(index.corpora)
    params = {"index": index.digest, "spm": spm.sha256, "cleaning": asdict(options.cleaning),
              **({"vocab_files": spm.files_sha256} if spm.files_sha256 else {}),
              **({"tags": tags} if any(tags) else {})}
    outputs = [runner.out_dir / f"train.{lang}.{ext}" for lang in (src, tgt) for ext in ("bin", "idx")]
    shard_dir = runner.work / f"shards-{digest(params)}"

    def run() -> tuple[list[Path], dict]:
        for stale in runner.work.glob("shards-*"):  # shards of other options: of no further use
            if stale != shard_dir:
                shutil.rmtree(stale, ignore_errors=True)
        shard_dir.mkdir(parents=True, exist_ok=True)
        tasks = []
        for corpus_number, corpus in enumerate(index.corpora):
            for shard_number, (src_offset, tgt_offset) in enumerate(corpus.shards):
                first = shard_number * corpus_steps.SHARD_LINES
                tasks.append(ShardTask(
                    prefix=str(shard_dir / f"{corpus_number:03d}-{shard_number:06d}"),
                    src_path=corpus.src, tgt_path=corpus.tgt, src_offset=src_offset,
                    tgt_offset=tgt_offset, first_line=first + 1,
                    lines=min(corpus_steps.SHARD_LINES, corpus.lines - first),
                    vocab_dir=str(runner.out_dir), vocab_files=tuple(sorted(vocab_files.items())), dtype=dtype,
                    cleaning=options.cleaning, tag=tags[corpus_number]))
        results = run_shards(runner, tasks, options.workers, index.pairs)
        report = {"kept": 0, "dropped": {}}
        corpus_sentences = [0] * len(index.corpora)
        for task, result in zip(tasks, results):
            corpus_sentences[int(Path(task.prefix).name.split("-")[0])] += result["kept"]
            report["kept"] += result["kept"]
            for reason, count in result["dropped"].items():
                report["dropped"][reason] = report["dropped"].get(reason, 0) + count
        prefixes = [task.prefix for task in tasks]
        src_entry = merge_shards(prefixes, "src", runner.out_dir / f"train.{src}", dtype)
        tgt_entry = merge_shards(prefixes, "tgt", runner.out_dir / f"train.{tgt}", dtype)
        shutil.rmtree(shard_dir)
        entry = {"sentences": src_entry["sentences"], "src": src_entry, "tgt": tgt_entry, "report": report,
                 "corpus_sentences": corpus_sentences,
                 "workers_peak_rss_mb": max((r.get("peak_rss_mb", 0) for r in results), default=0)}
        return outputs, entry

    result = dict(runner.step("binarize/train", params, run))
    result.pop("workers_peak_rss_mb", None)
    return result


def run_shards(runner: StepRunner, tasks: list[ShardTask], workers: int, pairs: int) -> list[dict]:
    """Each shard binarized, in order, in `workers` processes (or this one), with progress in pairs."""
    done_pairs = 0
    results = []

    def advance(task: ShardTask, result: dict) -> None:
        nonlocal done_pairs
        done_pairs += task.lines
        results.append(result)
        if runner.progress:
            runner.progress("binarize train", done_pairs, pairs, "pairs")

    if workers == 1:
        for task in tasks:
            advance(task, binarize_shard(task))
        return results
    with worker_pool(workers) as pool:
        for task, result in zip(tasks, pool.imap(binarize_shard, tasks)):
            advance(task, result)
    return results


def binarize_reference(runner: StepRunner, split: str, reference: ReferenceFiles, spm: VocabularyFiles,
                       vocab: Vocab, src: str, tgt: str, dtype: str, tags: list[str] | None = None) -> dict:
    """A valid or test split encoded line for line into DATA_DIR/SPLIT.{SRC,TGT}.{bin,idx}: its manifest entry.
    `tags`: the token each corpus's source lines start with, as in training."""
    line_tags = [tag for tag, lines in zip(tags or [], reference.corpus_lines) for _ in range(lines)] \
        if tags and any(tags) else None
    params = {"spm": spm.sha256, "references": reference.fingerprints,
              **({"vocab_files": spm.files_sha256} if spm.files_sha256 else {}),
              **({"tags": tags} if line_tags else {})}
    outputs = [runner.out_dir / f"{split}.{lang}.{ext}" for lang in (src, tgt) for ext in ("bin", "idx")]

    def run() -> tuple[list[Path], dict]:
        # Line for line and unfiltered (an empty line becomes end-of-sentence alone): the references must keep
        # their count and order. Normalized as the training text was, so the model sees the same kind of input.
        entry = {}
        for lang, path, encode in zip((src, tgt), reference.paths, (vocab.encode_source, vocab.encode_target)):
            writer = TokenArrayWriter(runner.out_dir / f"{split}.{lang}", dtype, vocab.eos_id)
            try:
                batch = []
                for number, line in enumerate(read_text(path)):
                    text = normalize(line)
                    batch.append(f"{line_tags[number]} {text}" if line_tags and lang == src and
                                 encode == vocab.encode_source else text)
                    if len(batch) == ENCODE_BATCH:
                        writer.add_many(encode(batch))
                        batch = []
                writer.add_many(encode(batch))
            except BaseException:
                writer.abort()
                raise
            entry["src" if lang == src else "tgt"] = writer.close()
        return outputs, {"sentences": entry["src"]["sentences"], **entry,
                         "text": {"src": f"{split}.{src}", "tgt": f"{split}.{tgt}"}}

    return runner.step(f"binarize/{split}", params, run)


def read_text(path: Path):
    """The lines of a UTF-8 file without their newline ('\\n' only ends a line)."""
    with open(path, encoding="utf-8", newline="\n") as handle:
        for line in handle:
            yield line[:-1] if line.endswith("\n") else line
