"""raw corpora -> plain text -> index -> joint SentencePiece BPE -> cleaned, binarized shards -> splits + manifest.

Steps, each skipped when its stamp says it is done with the same inputs and options (`nmt.data.stamps`):

  download/NAME    fetch and verify each recipe file (or check it in a --mirror folder)
  extract/NAME     stream each archive once, writing the wanted members as plain text (gunzipped, SGML parsed)
  index            count the lines of each training corpus (both sides must agree) and cut it into shards
  references       copy valid/test lines verbatim to DATA_DIR/{split}.{lang}: the references to score against
  spm              sample --spm-sample sentences of normalized training text and train SentencePiece on them
  binarize/train   clean + encode + filter + write each shard in --workers processes, then merge the shards
  binarize/SPLIT   encode valid/test line for line (never filtered)

Nothing holds a corpus in memory: corpora are streamed, shards are a bounded number of lines, SentencePiece sees a
sample. Every file is written under a temporary name and renamed when complete, and the manifest is written last:
a DATA_DIR with a manifest.json is complete, and an interrupted run picks up at the step it was in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import resource
import shutil
import signal
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from nmt.atomic import atomic_write, write_bytes, write_json
from nmt.config import ConfigError
from nmt.data.binarize import ENCODE_BATCH, ShardTask, binarize_shard, merge_shards, peak_rss_mb, worker_init
from nmt.data.binary import MANIFEST_FORMAT, MANIFEST_VERSION, TokenArrayWriter, token_dtype
from nmt.data.download import fetch_verified
from nmt.data.recipes import Corpus, Recipe
from nmt.data.sources import Progress, Source, extract
from nmt.data.stamps import Stamps, digest, file_fingerprint
from nmt.data.text import CleaningOptions, CleaningReport, clean_text_pair, normalize, read_parallel
from nmt.errors import NmtError
from nmt.vocab import Vocab, train_sentencepiece

SHARD_LINES = 100_000  # lines per binarization shard: the unit of parallel work and of resumption


@dataclass
class PrepareOptions:
    vocab_size: int | None = None  # None: the recipe's (8000 for your own corpora)
    spm_max_sentences: int = 2_000_000  # sentences (both sides together) sampled to train SentencePiece
    workers: int = 1  # processes that clean, encode and binarize the training shards
    seed: int = 1  # of the SentencePiece sample
    cleaning: CleaningOptions | None = None  # None: the recipe's (the defaults for your own corpora)
    # A vocabulary to use instead of learning one (`--vocab`: a parent model's, for fine-tuning data).
    vocab_model: Vocab | None = None
    vocab_source: str = ""  # where vocab_model came from, for the manifest
    separate_vocabs: bool = False  # a SentencePiece model and ids of its own for each side (vocab_size each)

    def resolved(self, vocab_size: int, cleaning: CleaningOptions) -> "PrepareOptions":
        """These options with the recipe's values where they are None, validated."""
        if self.vocab_model is not None:
            vocab_size = len(self.vocab_model)
            if self.vocab_size not in (None, vocab_size):
                raise ConfigError(f"--vocab-size {self.vocab_size} differs from the {vocab_size} pieces of --vocab "
                                  f"{self.vocab_source}: drop --vocab-size")
        options = replace(self, vocab_size=self.vocab_size or vocab_size, cleaning=self.cleaning or cleaning)
        options.validate()
        return options

    def validate(self) -> None:
        if self.vocab_size < 300 and self.vocab_model is None:
            raise ConfigError(f"--vocab-size must be at least 300 (256 byte pieces + specials), got {self.vocab_size}")
        if self.spm_max_sentences < 1:
            raise ConfigError("--spm-sample must be at least 1")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if not (math.isfinite(self.cleaning.max_ratio) and self.cleaning.max_ratio >= 1):
            raise ConfigError(f"--max-ratio must be a finite number of at least 1, got {self.cleaning.max_ratio}")
        if self.cleaning.max_tokens < 1:
            raise ConfigError(f"--max-tokens must be at least 1, got {self.cleaning.max_tokens}")
        if self.cleaning.invalid_utf8 not in ("error", "drop"):
            raise ConfigError(f"invalid_utf8 must be 'error' or 'drop', got {self.cleaning.invalid_utf8!r}")


Log = Callable[[str], None]


@dataclass
class Prepared:
    manifest: dict
    steps: dict[str, dict]  # step -> {"status": "ran" | "skipped", "seconds", "peak_rss_mb", ...}


def prepare_recipe(recipe: Recipe, out_dir: Path, options: PrepareOptions, mirror: str | None = None,
                   verify_checksum: bool = True, progress: Progress | None = None,
                   log: Log = lambda message: None) -> Prepared:
    """Fetch a recipe's files (or take them from `mirror`) and prepare them into `out_dir`."""
    options = options.resolved(recipe.vocab_size, recipe.cleaning)
    pipeline = _Pipeline(Path(out_dir), log, progress)
    files = {}
    for name, remote in recipe.files.items():
        params = {"name": name, "url": mirror or remote.url, "sha256": remote.sha256, "md5": remote.md5,
                  "size": remote.size, "verify": verify_checksum}

        def download(remote=remote) -> tuple[list[Path], dict]:
            path, sha256 = fetch_verified(remote, pipeline.out_dir / "downloads", mirror, verify_checksum,
                                          progress)
            return [path], {"path": str(path.resolve()), "sha256": sha256}

        result = pipeline.step(f"download/{name}", params, download, quiet=True)
        files[name] = (Path(result["path"]), result["sha256"])
    provenance = {"recipe": recipe.name,
                  "sources": {name: {"url": remote.url, "sha256": files[name][1]}
                              for name, remote in recipe.files.items()}}
    if mirror:
        provenance["mirror"] = mirror
    return pipeline.run(recipe.src, recipe.tgt, recipe.splits, files, options, provenance)


def prepare_corpus(out_dir: Path, src: str, tgt: str, split_paths: dict[str, tuple[Path, Path]],
                   options: PrepareOptions, provenance: dict, log: Log = lambda message: None,
                   progress: Progress | None = None) -> Prepared:
    """Prepare your own files: `split_paths` is {"train": (src_file, tgt_file), "valid": ..., "test": ...}."""
    options = options.resolved(8000, CleaningOptions())
    for paths in split_paths.values():
        for path in paths:
            if not Path(path).is_file():
                raise NmtError(f"{path}: file not found")
    splits = {split: [Corpus(split, Source(str(Path(s).resolve())), Source(str(Path(t).resolve())))]
              for split, (s, t) in split_paths.items()}
    # Your own files are fingerprinted by size and modification time: an edited file is prepared again.
    files = {str(Path(p).resolve()): (Path(p).resolve(), file_fingerprint(Path(p)))
             for paths in split_paths.values() for p in paths}
    provenance = {**provenance, "inputs": {split: [str(p) for p in paths] for split, paths in split_paths.items()}}
    return _Pipeline(Path(out_dir), log, progress).run(src, tgt, splits, files, options, provenance)


def find_side(prefix: str, lang: str) -> Path:
    """PREFIX.lang or PREFIX.lang.gz, whichever exists."""
    for candidate in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if candidate.is_file():
            return candidate
    raise NmtError(f"{prefix}.{lang}: file not found (nor {prefix}.{lang}.gz)")


class _Pipeline:
    def __init__(self, out_dir: Path, log: Log, progress: Progress | None):
        self.out_dir = out_dir
        self.work = out_dir / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.stamps = Stamps(self.work / "stamps", out_dir)
        self.log, self.progress = log, progress
        self.steps: dict[str, dict] = {}

    # -- the step runner ----------------------------------------------------------------------------------------

    def step(self, name: str, params: dict, work: Callable[[], tuple[list[Path], dict]], quiet: bool = False) -> dict:
        result = self.stamps.done(name, params)
        if result is not None:
            self.steps[name] = {"status": "skipped"}
            if not quiet:
                self.log(f"{name}: done already, skipped")
            return result
        (self.out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until the new one is written
        self.log(f"{name}")
        started = time.perf_counter()
        outputs, result = work()
        self.stamps.record(name, params, outputs, result)
        record = {"status": "ran", "seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": peak_rss_mb(),
                  **{key: value for key, value in result.items() if key.endswith("peak_rss_mb")}}
        self.steps[name] = record
        with open(self.out_dir / "prepare.jsonl", "a", encoding="utf-8") as handle:  # a log of what ran, and cost
            handle.write(json.dumps({"step": name, **record}) + "\n")
        return result

    # -- the pipeline ---------------------------------------------------------------------------------------------

    def run(self, src: str, tgt: str, splits: dict[str, list[Corpus]], files: dict[str, tuple[Path, str]],
            options: PrepareOptions, provenance: dict) -> Prepared:
        if src == tgt:
            raise NmtError(f"--src and --tgt are both {src!r}")
        for split in ("train", "valid"):
            if not splits.get(split):
                raise NmtError(f"a {split} split is required")
        texts = self._extract(splits, files)  # Source -> (plain text path, fingerprint)
        index = self._index(splits["train"], texts)
        references = {split: self._references(split, corpora, texts, src, tgt)
                      for split, corpora in splits.items() if split != "train"}
        spm = self._spm(index, options)
        vocab_files = spm.get("files") or {"spm_model": "spm.model"}
        vocab = Vocab.from_folder(self.out_dir, vocab_files)
        dtype = token_dtype(max(len(vocab), vocab.target_size)).name
        entries = {"train": self._binarize_train(index, spm, vocab_files, options, src, tgt, dtype)}
        for split, reference in references.items():
            entries[split] = self._binarize_reference(split, reference, spm, vocab, src, tgt, dtype)
        train_report = entries["train"].pop("report")
        if entries["train"]["sentences"] == 0:
            raise NmtError(f"no training pairs left after cleaning ({train_report})")
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "src": src,
            "tgt": tgt,
            **vocab_files,
            "vocab_size": len(vocab),
            **({"target_vocab_size": vocab.target_size} if not vocab.shared else {}),
            "token_dtype": dtype,
            "special_ids": {"pad": vocab.pad_id, "unk": vocab.unk_id, "bos": vocab.bos_id, "eos": vocab.eos_id},
            "splits": entries,
            "cleaning": {"options": asdict(options.cleaning), "train": train_report},
            "spm": ({"given": options.vocab_source, "vocab_size": len(vocab), "sha256": spm["sha256"],
                     "files_sha256": spm["files_sha256"]}
                    if options.vocab_model is not None else
                    {"vocab_size": options.vocab_size, "max_sentences": options.spm_max_sentences,
                     "sampled_sentences": spm["sample_sentences"], "seed": options.seed, "model_type": "bpe",
                     "sha256": spm["sha256"], **({"separate_vocabs": True, "files_sha256": spm["files_sha256"]}
                                                 if options.separate_vocabs else {})}),
            "corpora": {split: [corpus.name for corpus in corpora] for split, corpora in splits.items()},
            **provenance,
        }
        path = self.out_dir / "manifest.json"
        if not path.is_file() or json.loads(path.read_text(encoding="utf-8")) != json.loads(json.dumps(manifest)):
            write_json(path, manifest)
        return Prepared(manifest, self.steps)

    def _extract(self, splits: dict[str, list[Corpus]], files: dict[str, tuple[Path, str]]) -> dict:
        sources = {source for corpora in splits.values() for corpus in corpora for source in (corpus.src, corpus.tgt)}
        texts = {}
        by_file: dict[str, list[Source]] = {}
        for source in sources:
            if source.file not in files:
                raise NmtError(f"{source.file}: not among the recipe's files")
            if source.needs_extraction:
                by_file.setdefault(source.file, []).append(source)
            else:
                path, fingerprint = files[source.file]
                texts[source] = (path, fingerprint)
        for name, wanted in sorted(by_file.items()):
            wanted.sort(key=lambda source: source.inner_name)
            path, fingerprint = files[name]
            folder = self.work / "extracted"
            params = {"file": name, "fingerprint": fingerprint, "members": [s.inner_name for s in wanted]}

            def run(path=path, wanted=wanted, folder=folder) -> tuple[list[Path], dict]:
                outputs = extract(path, wanted, folder, self.progress)
                return list(outputs.values()), {}

            self.step(f"extract/{Path(name).name}", params, run)
            for source in wanted:
                texts[source] = (folder / source.extracted_name(), f"{fingerprint}:{source.inner_name}")
        return texts

    def _index(self, corpora: list[Corpus], texts: dict) -> dict:
        params = {"corpora": [[corpus.name, texts[corpus.src][1], texts[corpus.tgt][1]] for corpus in corpora],
                  "shard_lines": SHARD_LINES}

        def run() -> tuple[list[Path], dict]:
            indexed = []
            for corpus in corpora:
                src_path, tgt_path = texts[corpus.src][0], texts[corpus.tgt][0]
                src_offsets, src_lines = _shard_offsets(src_path)
                tgt_offsets, tgt_lines = _shard_offsets(tgt_path)
                if src_lines != tgt_lines:
                    raise NmtError(f"{corpus.name}: {_describe(corpus.src, src_path)} has {src_lines:,} lines but "
                                   f"{_describe(corpus.tgt, tgt_path)} has {tgt_lines:,}; the sides must pair up")
                indexed.append({"name": corpus.name, "src": str(src_path), "tgt": str(tgt_path), "lines": src_lines,
                                "shards": [[s, t] for s, t in zip(src_offsets, tgt_offsets)]})
            return [], {"corpora": indexed, "pairs": sum(c["lines"] for c in indexed)}

        result = self.step("index", params, run)
        result["digest"] = digest(params)
        return result

    def _references(self, split: str, corpora: list[Corpus], texts: dict, src: str, tgt: str) -> dict:
        """Valid/test lines exactly as they were (checked UTF-8), concatenated over the split's corpora."""
        outputs = [self.out_dir / f"{split}.{src}", self.out_dir / f"{split}.{tgt}"]
        params = {"inputs": [[texts[c.src][1], texts[c.tgt][1]] for c in corpora], "outputs": [p.name for p in outputs]}

        def run() -> tuple[list[Path], dict]:
            lines = 0
            with atomic_write(outputs[0], newline="") as src_out, atomic_write(outputs[1], newline="") as tgt_out:
                for corpus in corpora:
                    for src_line, tgt_line in read_parallel(texts[corpus.src][0], texts[corpus.tgt][0]):
                        src_out.write(src_line + "\n")
                        tgt_out.write(tgt_line + "\n")
                        lines += 1
            if lines == 0:
                for path in outputs:
                    path.unlink(missing_ok=True)
                files = ", ".join(str(texts[c.src][0]) for c in corpora)
                raise NmtError(f"the {split} split is empty ({files}): "
                               + ("nmt train validates on it; give at least one pair" if split == "valid"
                                  else "give a prefix with at least one pair, or none"))
            return outputs, {"lines": lines}

        result = self.step(f"references/{split}", params, run)
        return {"paths": outputs, "fingerprints": [file_fingerprint(p) for p in outputs], **result}

    def _spm(self, index: dict, options: PrepareOptions) -> dict:
        if options.vocab_model is not None:
            return self._given_spm(options)
        cleaning = options.cleaning
        params = {"index": index["digest"], "vocab_size": options.vocab_size, "sample": options.spm_max_sentences,
                  "seed": options.seed, "max_chars": cleaning.max_chars, "invalid_utf8": cleaning.invalid_utf8}
        # One joint model (the paper's shared vocabulary), or with --separate-vocabs one per side, each its own ids
        sides = {"spm_model": ("spm.model", None)} if not options.separate_vocabs else {
            "spm_model": ("spm.model", "src"), "target_spm_model": ("spm.target.model", "tgt")}
        if options.separate_vocabs:
            params["separate_vocabs"] = True

        def run() -> tuple[list[Path], dict]:
            outputs, sentences_used, peaks = [], 0, []
            for name, side in sides.values():
                sample_path = self.work / "spm-sample.txt"
                sentences = _write_sample(index, options, sample_path, side)
                if sentences == 0:
                    raise NmtError("no training text left after cleaning to learn a vocabulary from")
                which = {"src": "source ", "tgt": "target "}.get(side, "")
                self.log(f"spm: training a {options.vocab_size}-piece {which}BPE model on {sentences:,} sentences")
                # In a process of its own: its memory (which the sample size bounds) is returned when it ends, and
                # measured apart from the streaming steps'.
                with _worker_pool(1) as pool:
                    trained, child_peak = pool.apply_async(_train_spm, (str(sample_path), str(self.work / "spm"),
                                                           options.vocab_size, sentences, os.cpu_count() or 1)).get()
                os.replace(trained, self.out_dir / name)
                sample_path.unlink()
                (self.work / "spm.vocab").unlink(missing_ok=True)  # the pieces are in the model; this copy is unused
                outputs.append(self.out_dir / name)
                sentences_used += sentences
                peaks.append(child_peak)
            digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in outputs}
            return outputs, {"sha256": digests["spm.model"], "sample_sentences": sentences_used,
                             "spm_peak_rss_mb": max(peaks),
                             **({"files": {key: name for key, (name, _) in sides.items()},
                                 "files_sha256": {"spm.target.model": digests["spm.target.model"]}}
                                if options.separate_vocabs else {})}

        return self.step("spm", params, run)

    def _given_spm(self, options: PrepareOptions) -> dict:
        """`--vocab`: the given vocabulary's files (spm.model, and the target's model and the table of pieces where
        it has them); its fingerprint is the step's parameter, so another vocabulary redoes this step and
        everything encoded with it."""
        vocab = options.vocab_model
        files = vocab.file_entries()

        def run() -> tuple[list[Path], dict]:
            for name, data in files.values():
                write_bytes(self.out_dir / name, data)
            digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.values()}
            return [self.out_dir / name for name, _ in files.values()], {
                "sha256": digests["spm.model"], "sample_sentences": 0,
                "files": {key: name for key, (name, _) in files.items()},
                "files_sha256": {name: digest for name, digest in digests.items() if name != "spm.model"}}

        return self.step("spm", {"given": vocab.fingerprint}, run)

    def _binarize_train(self, index: dict, spm: dict, vocab_files: dict, options: PrepareOptions, src: str,
                        tgt: str, dtype: str) -> dict:
        params = {"index": index["digest"], "spm": spm["sha256"], "cleaning": asdict(options.cleaning),
                  **({"vocab_files": spm["files_sha256"]} if spm.get("files_sha256") else {})}
        outputs = [self.out_dir / f"train.{lang}.{ext}" for lang in (src, tgt) for ext in ("bin", "idx")]
        shard_dir = self.work / f"shards-{digest(params)}"

        def run() -> tuple[list[Path], dict]:
            for stale in self.work.glob("shards-*"):  # shards of other options: of no further use
                if stale != shard_dir:
                    shutil.rmtree(stale, ignore_errors=True)
            shard_dir.mkdir(parents=True, exist_ok=True)
            tasks = []
            for corpus_number, corpus in enumerate(index["corpora"]):
                for shard_number, (src_offset, tgt_offset) in enumerate(corpus["shards"]):
                    first = shard_number * SHARD_LINES
                    tasks.append(ShardTask(
                        prefix=str(shard_dir / f"{corpus_number:03d}-{shard_number:06d}"),
                        src_path=corpus["src"], tgt_path=corpus["tgt"], src_offset=src_offset,
                        tgt_offset=tgt_offset, first_line=first + 1, lines=min(SHARD_LINES, corpus["lines"] - first),
                        vocab_dir=str(self.out_dir), vocab_files=tuple(sorted(vocab_files.items())), dtype=dtype,
                        cleaning=options.cleaning))
            results = self._run_shards(tasks, options.workers, index["pairs"])
            report = {"kept": 0, "dropped": {}}
            for result in results:
                report["kept"] += result["kept"]
                for reason, count in result["dropped"].items():
                    report["dropped"][reason] = report["dropped"].get(reason, 0) + count
            prefixes = [task.prefix for task in tasks]
            src_entry = merge_shards(prefixes, "src", self.out_dir / f"train.{src}", dtype)
            tgt_entry = merge_shards(prefixes, "tgt", self.out_dir / f"train.{tgt}", dtype)
            shutil.rmtree(shard_dir)
            entry = {"sentences": src_entry["sentences"], "src": src_entry, "tgt": tgt_entry, "report": report,
                     "workers_peak_rss_mb": max((r.get("peak_rss_mb", 0) for r in results), default=0)}
            return outputs, entry

        result = dict(self.step("binarize/train", params, run))
        result.pop("workers_peak_rss_mb", None)
        return result

    def _run_shards(self, tasks: list[ShardTask], workers: int, pairs: int) -> list[dict]:
        done_pairs = 0
        results = []

        def advance(task: ShardTask, result: dict) -> None:
            nonlocal done_pairs
            done_pairs += task.lines
            results.append(result)
            if self.progress:
                self.progress("binarize train", done_pairs, pairs, "pairs")

        if workers == 1:
            for task in tasks:
                advance(task, binarize_shard(task))
            return results
        with _worker_pool(workers) as pool:
            for task, result in zip(tasks, pool.imap(binarize_shard, tasks)):
                advance(task, result)
        return results

    def _binarize_reference(self, split: str, reference: dict, spm: dict, vocab: Vocab, src: str, tgt: str,
                            dtype: str) -> dict:
        params = {"spm": spm["sha256"], "references": reference["fingerprints"],
                  **({"vocab_files": spm["files_sha256"]} if spm.get("files_sha256") else {})}
        outputs = [self.out_dir / f"{split}.{lang}.{ext}" for lang in (src, tgt) for ext in ("bin", "idx")]

        def run() -> tuple[list[Path], dict]:
            # Line for line and unfiltered (an empty line becomes end-of-sentence alone): the references must keep
            # their count and order. Normalized as the training text was, so the model sees the same kind of input.
            entry = {}
            for lang, path, encode in zip((src, tgt), reference["paths"], (vocab.encode_source, vocab.encode_target)):
                writer = TokenArrayWriter(self.out_dir / f"{split}.{lang}", dtype, vocab.eos_id)
                try:
                    batch = []
                    for line in _read_text(path):
                        batch.append(normalize(line))
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

        return self.step(f"binarize/{split}", params, run)


@contextlib.contextmanager
def _worker_pool(processes: int):
    """Fresh ("spawn") worker processes that leave Ctrl-C to this one: on an interrupt or an error they are stopped
    at once (a shard or a SentencePiece run in progress is abandoned; its temporary files never get a final name)."""
    # Ctrl-C or SIGTERM while the workers start would leave a half-started worker without the data the parent sends
    # it, and its traceback on the terminal: a signal then is only noted, and acted on once every worker has what
    # it needs. (Blocking the signals would not do: the kernel hands them to another thread, and Python runs the
    # handler in the main thread all the same.)
    pool = _start_pool(processes)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()


def _start_pool(processes: int):
    noted: list[int] = []
    stopping = (signal.SIGINT, signal.SIGTERM)
    handlers = {number: signal.getsignal(number) for number in stopping}
    for number in stopping:
        if callable(handlers[number]):  # a handler of ours or Python's; an ignored signal stays ignored
            signal.signal(number, lambda signum, frame: noted.append(signum))
    try:
        pool = get_context("spawn").Pool(processes, initializer=worker_init, initargs=(os.getpid(),))
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    if noted:
        pool.terminate()
        pool.join()
        handler = handlers[noted[0]]
        if callable(handler):
            handler(noted[0], None)  # as if it came now: KeyboardInterrupt (Ctrl-C, or nmt's SIGTERM handler)
        raise KeyboardInterrupt
    return pool


def _read_text(path: Path):
    with open(path, encoding="utf-8", newline="\n") as handle:
        for line in handle:
            yield line[:-1] if line.endswith("\n") else line


def _shard_offsets(path: Path) -> tuple[list[int], int]:
    """Byte offsets of lines 0, SHARD_LINES, 2 * SHARD_LINES, ... and the number of lines ('\\n' ends a line)."""
    offsets, lines, position = [], 0, 0
    with open(path, "rb") as handle:
        for line in handle:
            if lines % SHARD_LINES == 0:
                offsets.append(position)
            position += len(line)
            lines += 1
    return offsets, lines


def _describe(source: Source, path: Path) -> str:
    return f"{source.file}:{source.member}" if source.member else str(path)


def _write_sample(index: dict, options: PrepareOptions, sample_path: Path, side: str | None = None) -> int:
    """A seeded uniform sample of training pairs, normalized and cleaned as binarization will: both sides, or one
    (`side`: "src" or "tgt")."""
    total = index["pairs"]
    wanted_pairs = min(total, math.ceil(options.spm_max_sentences / (1 if side else 2)))
    chosen = sorted(random.Random(options.seed).sample(range(total), wanted_pairs))
    cleaning = CleaningOptions(**{**asdict(options.cleaning), "invalid_utf8": "drop"})
    sentences, base, cursor = 0, 0, 0
    with atomic_write(sample_path) as out:
        for corpus in index["corpora"]:
            end = base + corpus["lines"]
            with open(corpus["src"], "rb") as src_file, open(corpus["tgt"], "rb") as tgt_file:
                for number, (src_bytes, tgt_bytes) in enumerate(zip(src_file, tgt_file), start=base):
                    if cursor == len(chosen) or chosen[cursor] >= end:
                        break
                    if number != chosen[cursor]:
                        continue
                    cursor += 1
                    try:
                        pair = clean_text_pair(src_bytes.rstrip(b"\n").decode("utf-8"),
                                               tgt_bytes.rstrip(b"\n").decode("utf-8"), cleaning, CleaningReport())
                    except UnicodeDecodeError:
                        continue
                    if pair:
                        kept = pair if side is None else (pair[0],) if side == "src" else (pair[1],)
                        out.write("".join(f"{text}\n" for text in kept))
                        sentences += len(kept)
            base = end
    return sentences


def _train_spm(sample: str, prefix: str, vocab_size: int, sentences: int, threads: int) -> tuple[str, float]:
    try:
        model = train_sentencepiece(Path(sample), Path(prefix), vocab_size, sentences, threads=threads)
    except RuntimeError as error:
        raise NmtError(f"SentencePiece training failed: {str(error).strip().splitlines()[-1]}") from None
    return str(model), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
