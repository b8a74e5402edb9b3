"""Cleaning, encoding and binarizing the training data in shards, in worker processes, and merging the shards.

The index step cuts each training corpus into shards of a fixed number of lines and records where each shard starts
in both files. A worker takes a shard: it reads its lines (seeking, not scanning), normalizes and cleans them,
encodes them with SentencePiece, drops pairs outside the token limits, and writes the shard's .bin/.idx and a small
JSON of its counts. Shards are independent, so they run in any order on any number of processes, and a shard that
finished before an interruption is not redone. Merging concatenates the shards in order.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nmt.data.binary import TokenArrayWriter
from nmt.data.text import CleaningOptions, CleaningReport, clean_text_pair, keep_token_pair
from nmt.atomic import atomic_write, write_json
from nmt.errors import NmtError
from nmt.vocab import Vocab

ENCODE_BATCH = 10_000  # lines per SentencePiece call: large enough to be fast, small enough to bound memory


@dataclass(frozen=True)
class ShardTask:
    prefix: str  # the shard writes PREFIX.src.bin/.idx, PREFIX.tgt.bin/.idx and PREFIX.json
    src_path: str
    tgt_path: str
    src_offset: int  # byte offsets of the shard's first line
    tgt_offset: int
    first_line: int  # its line number (from 1), for messages
    lines: int
    vocab_dir: str  # the folder holding the vocabulary's files
    vocab_files: tuple[tuple[str, str], ...]  # (manifest key, file name) of each: spm_model, and where it has them
    dtype: str
    cleaning: CleaningOptions
    tag: str = ""  # the token each source line starts with (`>>de<<`: a multilingual dataset's target language)

    def done(self) -> dict | None:
        try:
            return json.loads(Path(self.prefix + ".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


_VOCABS: dict[tuple, Vocab] = {}  # one per worker process and vocabulary


def _vocab(folder: str, files: tuple[tuple[str, str], ...]) -> Vocab:
    if (folder, files) not in _VOCABS:
        _VOCABS[folder, files] = Vocab.from_folder(Path(folder), dict(files))
    return _VOCABS[folder, files]


def _read_lines(handle, count: int, path: str, first_line: int) -> list[bytes]:
    lines = []
    for number in range(first_line, first_line + count):
        line = handle.readline()
        if not line:
            raise NmtError(f"{path}: ends at line {number - 1}, before the indexed {first_line + count - 1} "
                           "(changed since it was indexed? run prepare again)")
        lines.append(line)
    return lines


def worker_init(parent_pid: int) -> None:
    """Set up a worker process: Ctrl-C is left to the parent, and the worker dies with it. Without the latter a
    parent killed outright (SIGKILL, OOM killer) leaves its workers running as orphans, which then write the same
    temporary files as the workers of the rerun (found by benchmarks/soak.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)


def binarize_shard(task: ShardTask) -> dict:
    """Clean, encode, filter and write one shard; returns its counts (also left in PREFIX.json)."""
    done = task.done()
    if done is not None:
        return done
    cleaning, report = task.cleaning, CleaningReport()
    with open(task.src_path, "rb") as src_file, open(task.tgt_path, "rb") as tgt_file:
        src_file.seek(task.src_offset)
        tgt_file.seek(task.tgt_offset)
        src_raw = _read_lines(src_file, task.lines, task.src_path, task.first_line)
        tgt_raw = _read_lines(tgt_file, task.lines, task.tgt_path, task.first_line)

    pairs = []
    for number, (src_bytes, tgt_bytes) in enumerate(zip(src_raw, tgt_raw), start=task.first_line):
        try:
            src_line = src_bytes.rstrip(b"\n").decode("utf-8")
            tgt_line = tgt_bytes.rstrip(b"\n").decode("utf-8")
        except UnicodeDecodeError:
            if cleaning.invalid_utf8 == "drop":
                report.dropped["invalid_utf8"] += 1
                continue
            bad = task.src_path if not _is_utf8(src_bytes) else task.tgt_path
            raise NmtError(f"{bad}:{number}: not valid UTF-8") from None
        pair = clean_text_pair(src_line, tgt_line, cleaning, report)
        if pair:
            pairs.append((f"{task.tag} {pair[0]}", pair[1]) if task.tag else pair)
    del src_raw, tgt_raw

    vocab = _vocab(task.vocab_dir, task.vocab_files)
    # Each word of the tag (a language token, `<BT>`) is one piece before the text. The length filters judge the
    # text alone, so that a tagged corpus keeps the pairs the same corpus untagged keeps.
    tag_pieces = len(task.tag.split())
    src_writer = TokenArrayWriter(Path(task.prefix + ".src"), np.dtype(task.dtype), vocab.eos_id)
    tgt_writer = TokenArrayWriter(Path(task.prefix + ".tgt"), np.dtype(task.dtype), vocab.eos_id)
    try:
        for start in range(0, len(pairs), ENCODE_BATCH):
            batch = pairs[start:start + ENCODE_BATCH]
            src_ids = vocab.encode_source([src for src, _ in batch])
            tgt_ids = vocab.encode_target([tgt for _, tgt in batch])
            keep = [keep_token_pair(len(s) - tag_pieces, len(t), cleaning, report) for s, t in zip(src_ids, tgt_ids)]
            src_writer.add_many([ids for ids, kept in zip(src_ids, keep) if kept])
            tgt_writer.add_many([ids for ids, kept in zip(tgt_ids, keep) if kept])
    except BaseException:
        src_writer.abort()
        tgt_writer.abort()
        raise
    src_entry, tgt_entry = src_writer.close(), tgt_writer.close()
    result = {**report.as_dict(), "src_tokens": src_entry["tokens"], "tgt_tokens": tgt_entry["tokens"],
              "peak_rss_mb": peak_rss_mb()}
    write_json(Path(task.prefix + ".json"), result, indent=None)
    return result


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports kibibytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def merge_shards(prefixes: list[str], side: str, out_prefix: Path, dtype: np.dtype) -> dict:
    """Concatenate the shards' `side` ("src" or "tgt") into OUT_PREFIX.bin/.idx, atomically."""
    out_prefix = Path(out_prefix)
    bin_name, idx_name = out_prefix.name + ".bin", out_prefix.name + ".idx"
    base = 0
    sentences = 0
    with atomic_write(out_prefix.with_name(bin_name), "wb") as bin_out, \
            atomic_write(out_prefix.with_name(idx_name), "wb") as idx_out:
        np.zeros(1, dtype=np.int64).tofile(idx_out)
        for prefix in prefixes:
            with open(f"{prefix}.{side}.bin", "rb") as shard:
                shutil.copyfileobj(shard, bin_out, 1 << 22)
            offsets = np.fromfile(f"{prefix}.{side}.idx", dtype=np.int64)
            (offsets[1:] + base).tofile(idx_out)
            base += int(offsets[-1])
            sentences += len(offsets) - 1
        bin_out.flush()
        if os.fstat(bin_out.fileno()).st_size != base * np.dtype(dtype).itemsize:
            raise NmtError(f"{out_prefix}: merged shards do not match their indexes (a damaged shard)")
    return {"sentences": sentences, "tokens": base, "bin": bin_name, "idx": idx_name}
