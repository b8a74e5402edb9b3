"""The pairs of a multilingual dataset as training sees them: each pair's rows of a split, the epoch's draw of
training sentences by temperature (or, in a dataset with synthetic corpora, by each corpus's weight), and a view of
one pair's rows for its own validation.

A dataset of several pairs (`nmt prepare multi30k-en-de multi30k-en-fr ...`) keeps every pair's sentences in one
split, each pair's rows following one another; the manifest's `pairs` says which rows are whose. Sampling by
temperature (Arivazhagan et al. 2019; fairseq's translation_multi_simple_epoch): an epoch holds as many sentences as
the data, pair p's share being proportional to n_p^(1/T). T = 1 keeps the data's own proportions; a larger T
flattens them, so that a small pair is seen more often (its sentences repeated within the epoch) and a large one
less (a different sample of it each epoch). Every draw is a pure function of (seed, epoch): each DDP rank computes
the same one, and a resumed run gets back the batches it had.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pair:
    """One language pair of a dataset: its name (`en-de`), the token its sources start with, and its rows."""

    src: str
    tgt: str
    token: str
    rows: dict[str, tuple[int, int]]  # split -> [start, end)

    @property
    def name(self) -> str:
        return f"{self.src}-{self.tgt}"

    @classmethod
    def from_manifest(cls, entry: dict) -> "Pair":
        return cls(entry["src"], entry["tgt"], entry["token"],
                   {split: (int(start), int(end)) for split, (start, end) in entry["rows"].items()})


def pairs_of(manifest: dict) -> list[Pair]:
    """The pairs of a multilingual dataset's manifest; [] for a dataset of one pair."""
    return [Pair.from_manifest(entry) for entry in manifest.get("pairs") or []]


def sampling_shares(sizes: list[int], temperature: float) -> np.ndarray:
    """Each pair's share of an epoch: n_p^(1/T), normalized."""
    weights = np.asarray(sizes, dtype=np.float64) ** (1.0 / temperature)
    return weights / weights.sum()


@dataclass(frozen=True)
class WeightedCorpus:
    """One corpus of the training split (the manifest's `train_corpora`, where it has synthetic corpora): its rows
    and how many times an epoch draws its sentences."""

    name: str
    rows: tuple[int, int]
    weight: float
    synthetic: bool

    @classmethod
    def from_manifest(cls, entry: dict) -> "WeightedCorpus":
        start, end = entry["rows"]
        return cls(str(entry["name"]), (int(start), int(end)), float(entry["weight"]), bool(entry.get("synthetic")))


def weighted_corpora_of(manifest: dict) -> list[WeightedCorpus]:
    """The training corpora of a dataset with synthetic ones (nmt.data.synthetic); [] for any other."""
    return [WeightedCorpus.from_manifest(entry) for entry in manifest.get("train_corpora") or []]


def epoch_sentences(pairs: list[Pair], temperature: float, seed: int, epoch: int,
                    corpora: list[WeightedCorpus] = ()) -> np.ndarray | None:
    """The training rows of this epoch (with repeats where a pair or corpus is drawn more often than it has
    sentences), or None where every row once is the draw (one pair, or T = 1; no corpus weighted other than 1)."""
    if len(pairs) >= 2 and temperature != 1:
        ranges = [pair.rows["train"] for pair in pairs]
        sizes = [end - start for start, end in ranges]
        wanted = np.round(sampling_shares(sizes, temperature) * sum(sizes)).astype(np.int64)
    elif any(corpus.weight != 1 for corpus in corpora):
        ranges = [corpus.rows for corpus in corpora]
        wanted = [round(corpus.weight * (end - start)) for corpus, (start, end) in zip(corpora, ranges)]
    else:
        return None
    rng = np.random.default_rng([seed, epoch, 7919])
    drawn = []
    for (start, end), count in zip(ranges, wanted):
        rows = np.arange(start, end)
        whole, part = divmod(int(count), end - start)  # every sentence `whole` times, and `part` of them once more
        drawn += [rows] * whole + [rng.choice(rows, part, replace=False)]
    return np.sort(np.concatenate(drawn))


class PairRows:
    """One pair's rows of a split, with the dataset's interface (lengths, collate, len) for validation."""

    def __init__(self, dataset, start: int, end: int):
        self.dataset, self.start, self.end = dataset, start, end
        self.split = dataset.split

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def src_lengths(self) -> np.ndarray:
        return self.dataset.src_lengths[self.start:self.end]

    @property
    def tgt_lengths(self) -> np.ndarray:
        return self.dataset.tgt_lengths[self.start:self.end]

    def collate(self, indices: np.ndarray):
        return self.dataset.collate(np.asarray(indices) + self.start)
