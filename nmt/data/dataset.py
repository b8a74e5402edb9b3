"""The binarized format on disk and the memory-mapped parallel dataset that reads it.

A side of a split is two files: NAME.bin, every sentence's token ids (end-of-sentence included) one after another
(uint16 when the vocabulary fits, else int32), and NAME.idx, the int64 offsets of the sentences (n + 1 of them).
Both are memory-mapped: a WMT-sized corpus is never read whole into memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nmt.errors import NmtError
from nmt.vocab import BOS_ID, EOS_ID, PAD_ID

MANIFEST_FORMAT = "nmt-data"
MANIFEST_VERSION = 1


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


class TokenArrayWriter:
    """Appends sentences to PREFIX.bin/.idx under temporary names; `close()` renames them into place."""

    def __init__(self, prefix: Path, dtype: np.dtype):
        self.prefix = Path(prefix)
        self.dtype = dtype
        self.offsets = [0]
        self._bin_tmp = self.prefix.with_name(self.prefix.name + ".bin.tmp")
        self._handle = open(self._bin_tmp, "wb")

    def add(self, token_ids: list[int]) -> None:
        """One sentence; end-of-sentence is appended here."""
        array = np.asarray(token_ids + [EOS_ID], dtype=self.dtype)
        self._handle.write(array.tobytes())
        self.offsets.append(self.offsets[-1] + len(array))

    def close(self) -> dict:
        self._handle.close()
        idx_tmp = self.prefix.with_name(self.prefix.name + ".idx.tmp")
        with open(idx_tmp, "wb") as handle:
            handle.write(np.asarray(self.offsets, dtype=np.int64).tobytes())
        bin_name, idx_name = self.prefix.name + ".bin", self.prefix.name + ".idx"
        os.replace(self._bin_tmp, self.prefix.with_name(bin_name))
        os.replace(idx_tmp, self.prefix.with_name(idx_name))
        return {"sentences": len(self.offsets) - 1, "tokens": self.offsets[-1], "bin": bin_name, "idx": idx_name}

    def abort(self) -> None:
        self._handle.close()
        self._bin_tmp.unlink(missing_ok=True)


class TokenArray:
    """The sentences of one side of one split, memory-mapped."""

    def __init__(self, bin_path: Path, idx_path: Path, dtype: np.dtype):
        for path in (bin_path, idx_path):
            if not path.is_file():
                raise NmtError(f"{path}: file not found (prepare the data again with `nmt prepare`)")
        self.offsets = np.fromfile(idx_path, dtype=np.int64)
        expected = int(self.offsets[-1]) * dtype.itemsize if len(self.offsets) else 0
        if len(self.offsets) == 0 or bin_path.stat().st_size != expected:
            raise NmtError(f"{bin_path}: size does not match its index {idx_path.name} (a damaged dataset)")
        # np.memmap cannot map an empty file; an empty split has nothing to map.
        self.tokens = np.memmap(bin_path, dtype=dtype, mode="r") if expected else np.zeros(0, dtype=dtype)
        self.lengths = np.diff(self.offsets).astype(np.int64)  # end-of-sentence included

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index]:self.offsets[index + 1]]


def load_manifest(data_dir: Path) -> dict:
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise NmtError(f"{data_dir}: no manifest.json; prepare a dataset there with `nmt prepare`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise NmtError(f"{path}: not a valid JSON manifest") from None
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        raise NmtError(f"{path}: data format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                       f"this nmt reads {MANIFEST_FORMAT!r} version {MANIFEST_VERSION}: prepare the data again")
    return manifest


@dataclass
class Batch:
    src_tokens: torch.Tensor  # (B, S) padded with PAD_ID, each row ending in eos
    prev_tokens: torch.Tensor  # (B, T) bos + target without its eos: the decoder input
    target: torch.Tensor  # (B, T) target ending in eos, padded with PAD_ID
    src_count: int  # real (non-padding) source tokens
    tgt_count: int  # real target tokens, eos included
    indices: np.ndarray  # which sentences of the split

    def to(self, device) -> "Batch":
        return Batch(self.src_tokens.to(device, non_blocking=True), self.prev_tokens.to(device, non_blocking=True),
                     self.target.to(device, non_blocking=True), self.src_count, self.tgt_count, self.indices)


def pad_sequences(sequences: list[np.ndarray], pad_id: int = PAD_ID) -> np.ndarray:
    width = max((len(seq) for seq in sequences), default=0)
    out = np.full((len(sequences), width), pad_id, dtype=np.int64)
    for row, seq in enumerate(sequences):
        out[row, :len(seq)] = seq
    return out


class ParallelDataset:
    """A split of a prepared DATA_DIR: source and target sentences, memory-mapped."""

    def __init__(self, data_dir: Path, split: str, manifest: dict | None = None):
        self.data_dir = Path(data_dir)
        self.manifest = manifest or load_manifest(data_dir)
        if split not in self.manifest["splits"]:
            raise NmtError(f"{data_dir}: no {split!r} split (it has {', '.join(self.manifest['splits'])})")
        entry = self.manifest["splits"][split]
        dtype = np.dtype(self.manifest["token_dtype"])
        self.src = TokenArray(self.data_dir / entry["src"]["bin"], self.data_dir / entry["src"]["idx"], dtype)
        self.tgt = TokenArray(self.data_dir / entry["tgt"]["bin"], self.data_dir / entry["tgt"]["idx"], dtype)
        if len(self.src) != len(self.tgt):
            raise NmtError(f"{data_dir}: {split} has {len(self.src)} source and {len(self.tgt)} target sentences")
        self.split = split

    def __len__(self) -> int:
        return len(self.src)

    @property
    def src_lengths(self) -> np.ndarray:
        return self.src.lengths

    @property
    def tgt_lengths(self) -> np.ndarray:
        return self.tgt.lengths

    def collate(self, indices: np.ndarray) -> Batch:
        src = [self.src[i] for i in indices]
        tgt = [self.tgt[i] for i in indices]
        target = pad_sequences(tgt)
        prev = pad_sequences([np.concatenate(([BOS_ID], seq[:-1])) for seq in tgt])
        return Batch(
            src_tokens=torch.from_numpy(pad_sequences(src)),
            prev_tokens=torch.from_numpy(prev),
            target=torch.from_numpy(target),
            src_count=int(sum(len(seq) for seq in src)),
            tgt_count=int(sum(len(seq) for seq in tgt)),
            indices=np.asarray(indices),
        )
