"""The joint SentencePiece BPE vocabulary: training, encoding, decoding, and the special ids the model uses."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import sentencepiece as spm

from nmt.errors import NmtError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


def train_sentencepiece(text_path: Path, model_prefix: Path, vocab_size: int, max_sentences: int,
                        seed_sentencepiece_size: int = 1_000_000, threads: int = 2) -> Path:
    """Train one BPE model on `text_path` (source and target lines together); returns the .model path.

    `vocab_size` is an upper bound: a corpus too small to yield that many pieces gets fewer.
    SentencePiece samples at most `max_sentences` lines, which bounds its memory on large corpora.
    """
    spm.SentencePieceTrainer.train(
        input=str(text_path),
        model_prefix=str(model_prefix),
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,  # characters unseen in training become bytes, not <unk>: nothing is lost in translation
        hard_vocab_limit=False,  # a small corpus gets the pieces it has rather than an error: vocab_size is a cap
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        input_sentence_size=max_sentences if max_sentences > 100 else 0,  # 0: all (it refuses 1-100)
        shuffle_input_sentence=True,
        seed_sentencepiece_size=seed_sentencepiece_size,
        num_threads=threads,
        minloglevel=2,
    )
    return model_prefix.with_suffix(".model")


class Vocab:
    """A loaded SentencePiece model. Build it from a file (`from_file`) or from the bytes a checkpoint carries."""

    def __init__(self, processor: spm.SentencePieceProcessor, model_proto: bytes):
        self.processor = processor
        self.model_proto = model_proto
        ids = (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id())
        if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
            raise NmtError(f"SentencePiece model has special ids {ids}, expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}")

    @classmethod
    def from_file(cls, path: Path) -> "Vocab":
        return cls.from_bytes(Path(path).read_bytes())

    @classmethod
    def from_bytes(cls, model_proto: bytes) -> "Vocab":
        processor = spm.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_proto)
        except (RuntimeError, OSError):
            raise NmtError("not a SentencePiece model (damaged vocabulary)") from None
        return cls(processor, model_proto)

    def __len__(self) -> int:
        return self.processor.get_piece_size()

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def encode(self, lines: list[str]) -> list[list[int]]:
        """Token ids of each line, without end-of-sentence (the dataset adds it). One batched call: far faster."""
        return self.processor.encode(lines, out_type=int, num_threads=1)

    def decode(self, ids_per_line: Iterable[list[int]]) -> list[str]:
        return [self.processor.decode(list(ids)) for ids in ids_per_line]
