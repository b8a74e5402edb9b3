"""The memory-mapped parallel dataset training reads, and its batches (the files are in nmt.data.binary)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nmt.data.binary import TokenArray, load_manifest
from nmt.errors import NmtError
from nmt.vocab import BOS_ID, PAD_ID


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
        # The vocabulary's special ids (those of an imported model's vocabulary differ from nmt's own 0-3)
        specials = self.manifest.get("special_ids") or {}
        self.pad_id, self.bos_id = int(specials.get("pad", PAD_ID)), int(specials.get("bos", BOS_ID))

    def __len__(self) -> int:
        return len(self.src)

    def check_ids(self, vocab_size: int, target_vocab_size: int | None = None) -> None:
        """Every token id must index the vocabulary: a damaged or foreign .bin is named here, not by an IndexError
        deep inside the embedding."""
        for array, entry, size in ((self.src, "src", vocab_size), (self.tgt, "tgt", target_vocab_size or vocab_size)):
            vocab_size = size
            if len(array.tokens) and int(array.tokens.max()) >= vocab_size:
                name = self.manifest["splits"][self.split][entry]["bin"]
                raise NmtError(f"{self.data_dir / name}: holds token id {int(array.tokens.max())}, but the vocabulary "
                               f"has {vocab_size} pieces (a damaged or foreign file; prepare the data again)")

    @property
    def src_lengths(self) -> np.ndarray:
        return self.src.lengths

    @property
    def tgt_lengths(self) -> np.ndarray:
        return self.tgt.lengths

    def collate(self, indices: np.ndarray) -> Batch:
        return collate_ids([self.src[i] for i in indices], [self.tgt[i] for i in indices], indices, self.pad_id,
                           self.bos_id)


def collate_ids(src: list[np.ndarray], tgt: list[np.ndarray], indices: np.ndarray, pad_id: int, bos_id: int) -> Batch:
    """A batch of sentences given as ids (each ending in eos): padded, and the decoder's input shifted right."""
    target = pad_sequences(tgt, pad_id)
    prev = pad_sequences([np.concatenate(([bos_id], seq[:-1])) for seq in tgt], pad_id)
    return Batch(
        src_tokens=torch.from_numpy(pad_sequences(src, pad_id)),
        prev_tokens=torch.from_numpy(prev),
        target=torch.from_numpy(target),
        src_count=int(sum(len(seq) for seq in src)),
        tgt_count=int(sum(len(seq) for seq in tgt)),
        indices=np.asarray(indices),
    )
