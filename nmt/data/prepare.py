"""raw corpora -> normalized, cleaned text -> joint SentencePiece BPE -> binarized splits + manifest.json.

Only the training split is cleaned. Valid and test are never filtered or altered: their raw lines are copied to
DATA_DIR/{split}.{lang} as the references to score against, and binarized line for line.
The manifest is written last: a DATA_DIR with a manifest.json is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from nmt.config import ConfigError
from nmt.data.dataset import MANIFEST_FORMAT, MANIFEST_VERSION, TokenArrayWriter, token_dtype
from nmt.data.download import ProgressHook, fetch
from nmt.data.recipes import Recipe
from nmt.data.text import (CleaningOptions, CleaningReport, clean_text_pair, keep_token_pair, normalize,
                           read_lines, read_parallel)
from nmt.errors import NmtError
from nmt.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab, train_sentencepiece

ENCODE_CHUNK = 20_000  # lines per SentencePiece batch call


@dataclass
class PrepareOptions:
    vocab_size: int = 8000
    spm_max_sentences: int = 2_000_000  # SentencePiece samples at most this many lines (bounds its memory)
    cleaning: CleaningOptions = field(default_factory=CleaningOptions)

    def validate(self) -> None:
        if self.vocab_size < 300:
            raise ConfigError(f"--vocab-size must be at least 300 (256 byte pieces + specials), got {self.vocab_size}")
        if self.spm_max_sentences < 1:
            raise ConfigError("--spm-sample must be at least 1")


Log = Callable[[str], None]


def prepare_recipe(recipe: Recipe, out_dir: Path, options: PrepareOptions, mirror: str | None = None,
                   verify_checksum: bool = True, progress: ProgressHook | None = None,
                   log: Log = lambda message: None) -> dict:
    """Fetch a recipe's files (or take them from `mirror`) and prepare them into `out_dir`."""
    raw_dir = Path(out_dir) / "raw"
    local = {name: fetch(remote, raw_dir, mirror, verify_checksum, progress) for name, remote in recipe.files.items()}
    split_paths = {split: (local[src], local[tgt]) for split, (src, tgt) in recipe.splits.items()}
    sources = {name: (mirror or remote.url) for name, remote in recipe.files.items()}
    return prepare_corpus(out_dir, recipe.src, recipe.tgt, split_paths, options, {"recipe": recipe.name,
                                                                                "sources": sources}, log)


def find_side(prefix: str, lang: str) -> Path:
    """PREFIX.lang or PREFIX.lang.gz, whichever exists."""
    for candidate in (Path(f"{prefix}.{lang}"), Path(f"{prefix}.{lang}.gz")):
        if candidate.is_file():
            return candidate
    raise NmtError(f"{prefix}.{lang}: file not found (nor {prefix}.{lang}.gz)")


def prepare_corpus(out_dir: Path, src: str, tgt: str, split_paths: dict[str, tuple[Path, Path]],
                   options: PrepareOptions, provenance: dict, log: Log = lambda message: None) -> dict:
    """Prepare `split_paths` ({"train": (src_file, tgt_file), "valid": ..., "test": ...}) into `out_dir`."""
    options.validate()
    if src == tgt:
        raise NmtError(f"--src and --tgt are both {src!r}")
    for split in ("train", "valid"):
        if split not in split_paths:
            raise NmtError(f"a {split} split is required")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until the new one is written

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".prepare-") as work:
        work = Path(work)
        log("cleaning the training data")
        report = CleaningReport()
        clean_src, clean_tgt = work / f"train.{src}", work / f"train.{tgt}"
        with open(clean_src, "w", encoding="utf-8") as src_out, open(clean_tgt, "w", encoding="utf-8") as tgt_out:
            for src_line, tgt_line in read_parallel(*split_paths["train"]):
                pair = clean_text_pair(src_line, tgt_line, options.cleaning, report)
                if pair:
                    src_out.write(pair[0] + "\n")
                    tgt_out.write(pair[1] + "\n")
        for split, (src_path, tgt_path) in split_paths.items():
            if split != "train":  # read every file once before the slow steps: bad input fails early
                for _ in read_parallel(src_path, tgt_path):
                    pass

        log(f"training a joint SentencePiece BPE model ({options.vocab_size} pieces)")
        corpus = work / "spm-input.txt"
        with open(corpus, "wb") as out:
            for path in (clean_src, clean_tgt):
                with open(path, "rb") as handle:
                    shutil.copyfileobj(handle, out)
        if corpus.stat().st_size == 0:
            raise NmtError(f"{split_paths['train'][0]}: no training pairs left after cleaning ({report.as_dict()})")
        try:
            model_path = train_sentencepiece(corpus, work / "spm", options.vocab_size, options.spm_max_sentences)
        except RuntimeError as error:
            raise NmtError(f"SentencePiece training failed: {str(error).strip().splitlines()[-1]}") from None
        os.replace(model_path, out_dir / "spm.model")
        vocab = Vocab.from_file(out_dir / "spm.model")
        dtype = token_dtype(len(vocab))

        splits = {}
        log("encoding and binarizing")
        splits["train"] = _binarize_pairs(
            _chunks(zip(read_lines(clean_src), read_lines(clean_tgt))), vocab, out_dir, "train", src, tgt, dtype,
            keep=lambda s, t: keep_token_pair(s, t, options.cleaning, report))
        for split, (src_path, tgt_path) in split_paths.items():
            if split == "train":
                continue
            _copy_text(read_parallel(src_path, tgt_path), out_dir / f"{split}.{src}", out_dir / f"{split}.{tgt}")
            pairs = ((normalize(s), normalize(t)) for s, t in read_parallel(src_path, tgt_path))
            splits[split] = _binarize_pairs(_chunks(pairs), vocab, out_dir, split, src, tgt, dtype)
            splits[split]["text"] = {"src": f"{split}.{src}", "tgt": f"{split}.{tgt}"}
        if splits["train"]["sentences"] == 0:
            raise NmtError(f"no training pairs left after cleaning ({report.as_dict()})")

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "src": src,
        "tgt": tgt,
        "spm_model": "spm.model",
        "vocab_size": len(vocab),
        "token_dtype": dtype.name,
        "special_ids": {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID},
        "splits": splits,
        "cleaning": {"options": asdict(options.cleaning), "train": report.as_dict()},
        "spm": {"vocab_size": options.vocab_size, "max_sentences": options.spm_max_sentences, "model_type": "bpe"},
        "inputs": {split: [str(p) for p in paths] for split, paths in split_paths.items()},
        **provenance,
    }
    _write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def _chunks(pairs, size: int = ENCODE_CHUNK):
    chunk = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _binarize_pairs(chunks, vocab: Vocab, out_dir: Path, split: str, src: str, tgt: str, dtype, keep=None) -> dict:
    src_writer = TokenArrayWriter(out_dir / f"{split}.{src}", dtype)
    tgt_writer = TokenArrayWriter(out_dir / f"{split}.{tgt}", dtype)
    try:
        for chunk in chunks:
            src_ids = vocab.encode([s for s, _ in chunk])
            tgt_ids = vocab.encode([t for _, t in chunk])
            for s, t in zip(src_ids, tgt_ids):
                if keep is None or keep(len(s), len(t)):
                    src_writer.add(s)
                    tgt_writer.add(t)
    except BaseException:
        src_writer.abort()
        tgt_writer.abort()
        raise
    src_entry, tgt_entry = src_writer.close(), tgt_writer.close()
    return {"sentences": src_entry["sentences"], "src": src_entry, "tgt": tgt_entry}


def _copy_text(pairs, src_path: Path, tgt_path: Path) -> None:
    """The lines exactly as they were (decoded and checked UTF-8), one per line."""
    src_tmp, tgt_tmp = src_path.with_name(src_path.name + ".tmp"), tgt_path.with_name(tgt_path.name + ".tmp")
    with open(src_tmp, "w", encoding="utf-8", newline="") as src_out, \
            open(tgt_tmp, "w", encoding="utf-8", newline="") as tgt_out:
        for src_line, tgt_line in pairs:
            src_out.write(src_line + "\n")
            tgt_out.write(tgt_line + "\n")
    os.replace(src_tmp, src_path)
    os.replace(tgt_tmp, tgt_path)


def _write_json_atomic(path: Path, value) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
