"""A lexical shortlist for CTranslate2 exports: which target pieces a batch may produce, given its source pieces.

A small model spends most of each decoding step on its output layer: the projection onto every target piece, the
softmax over them and the beam's top-k. Bergamot's and Marian's students restrict that layer to a shortlist: the
pieces that can plausibly appear in this batch's translations. CTranslate2 reads one from its model folder
(`vmap.txt`, its vocabulary map) and, asked to (`use_vmap`), projects each batch onto the union of the pieces its
sources map to, plus the pieces mapped from the empty key, which every batch may use.

The map is built from a prepared training split in the model's vocabulary (`nmt export ctranslate2 --shortlist
DATA_DIR`): the `frequent` most frequent target pieces are always allowed; each source piece adds the `per_source`
target pieces that most often share a training pair with it, the frequent ones aside (counted over the first
million pairs). For one source piece that order is its p(target piece present | source piece present). Marian ranks
by a lexical translation table from word alignment (fast_align) instead; on Multi30k, IBM Model 1's table covered the
valid references no better than these counts at the same shortlist size, so the simpler counts are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nmt.errors import NmtError
from nmt.ranges import check_ranges, within
from nmt.vocab import Vocab

VMAP_FILE = "vmap.txt"  # the name CTranslate2 looks for in a model folder
CHUNK = 50_000  # training pairs counted at a time: bounds the memory of the co-occurrence keys


@dataclass(frozen=True)
class ShortlistConfig:
    frequent: int = field(default=100, metadata=within(0, 10**6))  # target pieces every batch may produce
    per_source: int = field(default=20, metadata=within(1, 10**6))  # target pieces each source piece adds
    max_pairs: int = field(default=1_000_000, metadata=within(1, 10**9))  # training pairs counted: the first ones

    def validate(self) -> None:
        check_ranges(self, lambda name: f"--shortlist-{name.replace('_', '-')}")


def build_vocabulary_map(data_dir: Path, vocab: Vocab, config: ShortlistConfig) -> tuple[str, dict]:
    """The text of CTranslate2's vmap.txt for a model of VOCAB, from DATA_DIR's training split, and its facts
    (pairs counted, pieces always allowed, source pieces mapped) for the export's nmt.json."""
    import numpy as np  # here: the command line imports this module for ShortlistConfig, and starts quicker

    from nmt.data.binary import load_manifest
    from nmt.data.dataset import ParallelDataset

    config.validate()
    manifest = load_manifest(data_dir)
    if Vocab.from_folder(data_dir, manifest).fingerprint != vocab.fingerprint:
        raise NmtError(f"--shortlist {data_dir}: prepared with another vocabulary than the checkpoint's; prepare it "
                       "with `--vocab CHECKPOINT` (the ids would mean other pieces)")
    train = ParallelDataset(data_dir, "train", manifest)
    pairs = min(len(train), config.max_pairs)
    if pairs == 0:
        raise NmtError(f"--shortlist {data_dir}: the training split is empty")
    target_size = vocab.target_size
    target_counts, keys, counts = _count_pairs(train, pairs, target_size)
    frequent = [int(t) for t in np.argsort(-target_counts, kind="stable")[:config.frequent] if target_counts[t] > 0]
    sources, targets = keys // target_size, keys % target_size
    order = np.lexsort((targets, -counts, sources))  # by source piece, then most shared pairs first
    sources, targets = sources[order], targets[order]
    rest = ~np.isin(targets, frequent)
    sources, targets = sources[rest], targets[rest]
    rank = np.arange(len(sources)) - np.searchsorted(sources, sources)  # place within its source piece's list
    sources, targets = sources[rank < config.per_source], targets[rank < config.per_source]
    lines = ["\t" + " ".join(_pieces(vocab.target.piece, frequent))]
    mapped, starts = np.unique(sources, return_index=True)
    for source, chosen in zip(mapped, np.split(targets, starts[1:])):
        key = vocab.source.piece(int(source))
        if _plain(key):
            lines.append(f"{key}\t{' '.join(_pieces(vocab.target.piece, chosen.tolist()))}")
    facts = {"data": str(data_dir), "pairs": pairs, "frequent": len(frequent), "per_source": config.per_source,
             "source_pieces_mapped": len(lines) - 1}
    return "\n".join(lines) + "\n", facts


def _count_pairs(train, pairs: int, target_size: int):
    """Over the first PAIRS training pairs: each target piece's count, and each (source piece, target piece) key
    (source * target_size + target) with the number of pairs holding both."""
    import numpy as np

    target_counts = np.zeros(target_size, dtype=np.int64)
    keys, counts = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for start in range(0, pairs, CHUNK):
        chunk = []
        for index in range(start, min(start + CHUNK, pairs)):
            source = np.unique(train.src[index].astype(np.int64))
            target = train.tgt[index].astype(np.int64)
            target_counts += np.bincount(target, minlength=target_size)
            target = np.unique(target)
            chunk.append((source[:, None] * target_size + target[None, :]).ravel())
        # the keys counted so far, merged with this chunk's: each earlier key weighs its count, each new one 1
        keys, inverse = np.unique(np.concatenate([keys, *chunk]), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate([counts, np.ones(len(inverse) - len(counts))]),
                             minlength=len(keys)).astype(np.int64)
    return target_counts, keys, counts


def _pieces(piece, ids: list[int]) -> list[str]:
    return [p for p in (piece(i) for i in ids) if _plain(p)]


def _plain(piece: str) -> bool:
    """Whether the vmap file can hold PIECE: CTranslate2 splits its lines on tabs and spaces."""
    return bool(piece) and not any(c.isspace() for c in piece)
