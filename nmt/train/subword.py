"""Subword regularization on the fly (Kudo 2018; BPE-dropout, Provilkov et al. 2020): each training batch's
sentences segmented anew, one of the segmentations SentencePiece samples, so that the model sees a word in several
pieces and leans less on one segmentation. The binarized data stays as it is: a batch's ids are decoded back to
text (lossless for SentencePiece) and encoded again with sampling. Batches are formed, and their token budget
checked, on the data's own segmentation; a sampled one is a few pieces longer.

The sampling is seeded by the run's seed and the batch's sentences, so that every rank samples its own and a
resumed run gets back the segmentations it had. A multilingual source's language token stays as it is.
"""

from __future__ import annotations

import hashlib

import numpy as np
import sentencepiece as spm

from nmt.data.dataset import Batch, collate_ids
from nmt.vocab import Vocab


class SampledSegmentation:
    """A training split (`nmt.data.dataset.ParallelDataset`'s interface) whose batches are segmented anew with
    SentencePiece's sampling at `alpha`."""

    def __init__(self, dataset, vocab: Vocab, alpha: float, seed: int):
        self.dataset, self.vocab, self.alpha, self.seed = dataset, vocab, alpha, seed
        self.split = dataset.split
        self.tokens = set(vocab.source.token_ids.values())  # language tokens and tags: kept whole

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):  # lengths, ids, manifest: the data's own
        return getattr(self.dataset, name)

    def collate(self, indices: np.ndarray) -> Batch:
        dataset, vocab = self.dataset, self.vocab
        digest = hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes() + str(self.seed).encode()).digest()
        spm.set_random_generator_seed(int.from_bytes(digest[:4], "little") or 1)
        sources = [dataset.src[i] for i in indices]
        heads = [self._leading_tokens(ids) for ids in sources]
        src = self._resegment([ids[len(head):-1] for ids, head in zip(sources, heads)], vocab.source)
        tgt = self._resegment([dataset.tgt[i][:-1] for i in indices], vocab.target)
        eos = vocab.eos_id
        return collate_ids([np.asarray(head + ids + [eos], dtype=np.int64) for head, ids in zip(heads, src)],
                           [np.asarray(ids + [eos], dtype=np.int64) for ids in tgt], indices, dataset.pad_id,
                           dataset.bos_id)

    def _leading_tokens(self, ids: np.ndarray) -> list[int]:
        """The language token and tag a source starts with (before its text and end-of-sentence)."""
        count = 0
        while count < len(ids) - 1 and int(ids[count]) in self.tokens:
            count += 1
        return ids[:count].tolist()

    def _resegment(self, sentences: list[np.ndarray], side) -> list[list[int]]:
        texts = [side.decode(ids.tolist()) for ids in sentences]
        return side.encode_sampled(texts, self.alpha)


def with_subword_sampling(dataset, vocab: Vocab, alpha: float, seed: int):
    """The training split as it is (alpha 0), or re-segmented batch by batch."""
    return SampledSegmentation(dataset, vocab, alpha, seed) if alpha > 0 else dataset
