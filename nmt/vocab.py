"""The vocabulary: SentencePiece models for source and target, the model's ids of their pieces, and its special ids.

What `nmt prepare` learns is one joint SentencePiece BPE model whose own ids are the model's, with pad, unk, bos and
eos at 0-3 (`Vocab.from_bytes`). Pretrained models bring other layouts, which a Vocab holds as data:
- separate source and target SentencePiece models (`target_proto`),
- a table of pieces giving the model's id of each piece (MarianMT's vocab.json), one for both sides or one per side
  (`separate_vocabs`), with the special ids where that model has them (`pieces`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import sentencepiece as spm

from nmt.errors import NmtError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3  # the special ids of the SentencePiece models `nmt prepare` learns


def train_sentencepiece(text_path: Path, model_prefix: Path, vocab_size: int, max_sentences: int,
                        seed_sentencepiece_size: int = 1_000_000, threads: int = 2,
                        symbols: tuple[str, ...] = ()) -> Path:
    """Train one BPE model on `text_path` (source and target lines together); returns the .model path.

    `vocab_size` is an upper bound: a corpus too small to yield that many pieces gets fewer.
    SentencePiece samples at most `max_sentences` lines, which bounds its memory on large corpora.
    `symbols`: pieces of their own (a multilingual corpus's language tokens), ids right after the specials.
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
        **({"user_defined_symbols": list(symbols)} if symbols else {}),
    )
    return model_prefix.with_suffix(".model")


def is_language_token(piece: str) -> bool:
    """`>>CODE<<` with a code of letters, digits, `_` or `-` (`>>de<<`, `>>deu<<`, `>>zh_Hant<<`)."""
    code = piece[2:-2]
    return piece.startswith(">>") and piece.endswith("<<") and 0 < len(code) <= 16 and \
        code.replace("_", "").replace("-", "").isalnum() and code.isascii()


SPECIAL_PIECES = frozenset({"<s>", "</s>", "<pad>", "<unk>"})


def is_tag(piece: str) -> bool:
    """`<NAME>` with a name of letters, digits, `_` or `-` (`<BT>`, `<DIST>`), not a special piece or a byte piece
    (`<0xC3>`): the form of the tags that mark a synthetic corpus's sources (nmt.data.synthetic)."""
    name = piece[1:-1]
    return piece.startswith("<") and piece.endswith(">") and 0 < len(name) <= 16 and piece not in SPECIAL_PIECES \
        and name.replace("_", "").replace("-", "").isalnum() and name.isascii() \
        and not (len(name) == 4 and name.startswith("0x"))


def leading_token(line: str) -> str | None:
    """The `>>xx<<` or `<TAG>` a line starts with, or None."""
    if line.startswith(">>"):
        end = line.find("<<")
        return line[:end + 2] if end != -1 else None
    if line.startswith("<"):
        end = line.find(">")
        return line[:end + 1] if end != -1 else None
    return None


def language_token(code: str) -> str:
    """The source-side token that asks a multilingual model for language CODE."""
    return f">>{code}<<"


def fingerprint(model_proto: bytes, target_proto: bytes | None, pieces: dict | None) -> str:
    """A vocabulary's identity from its parts as stored, without loading them (a damaged one is just another)."""
    digest = hashlib.sha256(model_proto)
    digest.update(b"\0target\0" + (target_proto or b""))
    digest.update(json.dumps(pieces, sort_keys=True).encode() if pieces else b"")
    return digest.hexdigest()


def _processor(model_proto: bytes, side: str) -> spm.SentencePieceProcessor:
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(model_proto)
    except (RuntimeError, OSError):
        raise NmtError(f"not a SentencePiece model (damaged {side} vocabulary)") from None
    return processor


@dataclass
class Side:
    """One side's SentencePiece model and, where the model's ids are not SentencePiece's own, its table of pieces."""

    processor: spm.SentencePieceProcessor
    pieces: list[str] | None  # the model's id -> piece; None: SentencePiece's ids are the model's
    unk_id: int

    def __post_init__(self) -> None:
        self.index = {piece: i for i, piece in enumerate(self.pieces)} if self.pieces is not None else None
        self._languages: dict[str, int] | None = None

    @property
    def language_ids(self) -> dict[str, int]:
        """Its language tokens (`>>de<<`, `>>deu<<`: whole pieces of the form >>CODE<<) and their ids."""
        return {piece: i for piece, i in self.token_ids.items() if is_language_token(piece)}

    @property
    def token_ids(self) -> dict[str, int]:
        """The pieces a source may start with that are tokens rather than text, and their ids: language tokens and
        tags (`<BT>`). In a SentencePiece model of nmt's, a tag must be a user-defined piece (score 0, as
        `nmt prepare` adds them), so that a piece BPE learned from text (`<br>`) is never taken for one."""
        if self._languages is None:
            size = len(self.pieces) if self.pieces is not None else self.processor.get_piece_size()
            tokens = {}
            for i in range(size):
                piece = self.piece(i)
                if is_language_token(piece) or (is_tag(piece) and (self.pieces is not None or (
                        self.processor.get_score(i) == 0 and not self.processor.is_byte(i)
                        and not self.processor.is_control(i) and not self.processor.is_unknown(i)))):
                    tokens[piece] = i
            self._languages = tokens
        return self._languages

    def __len__(self) -> int:
        return len(self.pieces) if self.pieces is not None else self.processor.get_piece_size()

    def encode(self, lines: list[str]) -> list[list[int]]:
        if self.index is None:  # one batched call: far faster
            return self.processor.encode(lines, out_type=int, num_threads=1)
        unk, index = self.unk_id, self.index
        return [[index.get(piece, unk) for piece in pieces]
                for pieces in self.processor.encode(lines, out_type=str, num_threads=1)]

    def encode_sampled(self, lines: list[str], alpha: float) -> list[list[int]]:
        """One of the segmentations SentencePiece samples (subword regularization): for a BPE model each merge
        dropped with probability `alpha` (BPE-dropout), for a unigram model sampled with smoothing `alpha`. Seeded
        by spm.set_random_generator_seed."""
        if self.index is None:
            return self.processor.encode(lines, out_type=int, enable_sampling=True, alpha=alpha, nbest_size=-1,
                                         num_threads=1)
        unk, index = self.unk_id, self.index
        return [[index.get(piece, unk) for piece in pieces] for pieces in self.processor.encode(
            lines, out_type=str, enable_sampling=True, alpha=alpha, nbest_size=-1, num_threads=1)]

    def piece(self, token: int) -> str:
        return self.pieces[token] if self.pieces is not None else self.processor.id_to_piece(token)

    def decode(self, ids: list[int]) -> str:
        if self.pieces is None:
            return self.processor.decode(list(ids))
        return self.processor.decode_pieces([self.pieces[i] for i in ids])


class Vocab:
    """Source and target SentencePiece models (one joint model, or one each) over the model's ids.

    `pieces`, where the model's ids are not SentencePiece's: {"source": [piece of id 0, ...], "target": [...]
    (absent: the source's table serves both sides), "specials": {"pad": id, "unk": id, "bos": id, "eos": id}}, bos
    being the decoder's first input."""

    def __init__(self, model_proto: bytes, target_proto: bytes | None = None, pieces: dict | None = None):
        self.model_proto = model_proto  # the source's (or joint) SentencePiece model
        self.target_proto = target_proto  # None: the same model serves the target
        self.pieces = pieces
        source = _processor(model_proto, "source")
        target = _processor(target_proto, "target") if target_proto is not None else source
        if pieces is None:
            ids = (source.pad_id(), source.unk_id(), source.bos_id(), source.eos_id())
            if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID) or (target is not source and (
                    target.pad_id(), target.unk_id(), target.bos_id(), target.eos_id()) != ids):
                raise NmtError(f"SentencePiece model has special ids {ids}, expected {(PAD_ID, UNK_ID, BOS_ID, EOS_ID)}")
            self.pad_id, self.unk_id, self.bos_id, self.eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID
            self.source, self.target = Side(source, None, UNK_ID), Side(target, None, UNK_ID)
            return
        specials = pieces.get("specials", {})
        try:
            self.pad_id, self.unk_id, self.bos_id, self.eos_id = (int(specials[k]) for k in ("pad", "unk", "bos", "eos"))
            source_pieces = [str(p) for p in pieces["source"]]
            target_pieces = [str(p) for p in pieces.get("target") or source_pieces]
        except (KeyError, TypeError, ValueError):
            raise NmtError("the vocabulary's table of pieces is damaged (no pieces or special ids)") from None
        for name, table in (("source", source_pieces), ("target", target_pieces)):
            if not all(0 <= i < len(table) for i in (self.pad_id, self.unk_id, self.eos_id, self.bos_id)):
                raise NmtError(f"the vocabulary's special ids lie outside its {name} table of {len(table)} pieces")
        self.source = Side(source, source_pieces, self.unk_id)
        self.target = Side(target, target_pieces, self.unk_id)

    @classmethod
    def from_file(cls, path: Path) -> "Vocab":
        return cls.from_bytes(Path(path).read_bytes())

    @classmethod
    def from_bytes(cls, model_proto: bytes) -> "Vocab":
        """A joint SentencePiece model whose ids are the model's (what `nmt prepare` learns)."""
        return cls(model_proto)

    @property
    def shared(self) -> bool:
        """Whether source and target share one id space (and so may share one embedding matrix)."""
        if self.pieces is None:
            return self.target_proto is None
        return not self.pieces.get("target") or self.pieces["target"] == self.pieces["source"]

    @property
    def fingerprint(self) -> str:
        """What makes two vocabularies one: the same models, tables and special ids."""
        return fingerprint(self.model_proto, self.target_proto, self.pieces)

    def __len__(self) -> int:
        """The source's (or the joint) vocabulary size: the model's vocab_size."""
        return len(self.source)

    @property
    def target_size(self) -> int:
        return len(self.target)

    def encode_source(self, lines: list[str]) -> list[list[int]]:
        """Token ids of each line, without end-of-sentence (the dataset adds it). Leading tokens the vocabulary has
        as pieces of their own (a language token, `>>deu<<`; a synthetic corpus's tag, `<BT>`; or both, separated by
        a space) are each that one piece: SentencePiece alone would put a word-start piece before them."""
        if not any(line.startswith(("<", ">")) for line in lines) or not self.source.token_ids:
            return self.source.encode(lines)
        return [self._encode_with_tokens(line) for line in lines]

    def _encode_with_tokens(self, line: str) -> list[int]:
        tokens, ids = self.source.token_ids, []
        while (token := leading_token(line)) in tokens:
            ids.append(tokens[token])
            line = line[len(token):]
            if line.startswith(" ") and leading_token(line[1:]) in tokens:
                line = line[1:]
        return ids + self.source.encode([line])[0]

    def encode_target(self, lines: list[str]) -> list[list[int]]:
        return self.target.encode(lines)

    def decode(self, ids_per_line: Iterable[list[int]]) -> list[str]:
        """Target ids to text."""
        return [self.target.decode(ids) for ids in ids_per_line]

    @property
    def tags(self) -> list[str]:
        """The tags (`<BT>`) the source side has as pieces of their own, in id order."""
        return [piece for piece in self.source.token_ids if is_tag(piece)]

    @property
    def language_tokens(self) -> list[str]:
        """The target-language tokens a multilingual model's source starts with (`>>de<<` as `nmt prepare` adds
        them, `>>deu<<` in OPUS-MT's models), in id order."""
        return list(self.source.language_ids)

    # --- as a checkpoint carries it, and as a prepared data folder holds it -------------------------------------

    def payload_entries(self) -> dict:
        import torch
        entries = {"vocab": torch.frombuffer(bytearray(self.model_proto), dtype=torch.uint8)}
        if self.target_proto is not None:
            entries["target_vocab"] = torch.frombuffer(bytearray(self.target_proto), dtype=torch.uint8)
        if self.pieces is not None:
            entries["vocab_pieces"] = self.pieces
        return entries

    @staticmethod
    def payload_parts(payload: dict) -> tuple[bytes, bytes | None, dict | None]:
        target = payload.get("target_vocab")
        return (payload["vocab"].numpy().tobytes(), target.numpy().tobytes() if target is not None else None,
                payload.get("vocab_pieces"))

    @classmethod
    def from_payload(cls, payload: dict) -> "Vocab":
        return cls(*cls.payload_parts(payload))

    def file_entries(self) -> dict[str, bytes]:
        """The files of a prepared data folder that hold this vocabulary, by the manifest key naming each."""
        files = {"spm_model": ("spm.model", self.model_proto)}
        if self.target_proto is not None:
            files["target_spm_model"] = ("spm.target.model", self.target_proto)
        if self.pieces is not None:
            files["vocab_pieces"] = ("pieces.json", json.dumps(self.pieces, ensure_ascii=False).encode())
        return files

    @classmethod
    def from_folder(cls, folder: Path, manifest: dict) -> "Vocab":
        def read(key: str) -> bytes | None:
            name = manifest.get(key)
            if name is None:
                return None
            path = Path(folder) / name
            try:
                return path.read_bytes()
            except OSError as error:
                raise NmtError(f"{path}: cannot read the vocabulary ({error.strerror or error})") from None
        pieces = read("vocab_pieces")
        try:
            table = json.loads(pieces) if pieces is not None else None
        except ValueError:
            raise NmtError(f"{Path(folder) / manifest['vocab_pieces']}: not a table of pieces (damaged?)") from None
        return cls(read("spm_model"), read("target_spm_model"), table)


class TargetLanguage:
    """The target-language token a multilingual model's source starts with (`>>deu<<`, OPUS-MT's multilingual
    models): added to every line for `--target-language deu`; without it, each line must start with one."""

    def __init__(self, tokens: list[str], language: str | None):
        self.tokens = set(tokens)
        self.token = None
        if language:
            token = language if language.startswith(">>") else f">>{language}<<"
            if token not in self.tokens:
                known = ", ".join(sorted(t[2:-2] for t in tokens)[:12]) or "none: the model is not multilingual"
                raise NmtError(f"--target-language {language}: not a language of this model (it has {known}"
                               + (", ..." if len(tokens) > 12 else "") + ")")
            self.token = token

    def mark(self, texts: list[str]) -> list[str]:
        if self.token is not None:
            return [f"{self.token} {text}" for text in texts]
        if self.tokens:
            for text in texts:
                if not (text.startswith(">>") and text[:text.find("<<") + 2] in self.tokens):
                    codes = ", ".join(sorted(t[2:-2] for t in self.tokens)[:6])
                    raise NmtError(f"this model is multilingual: start each text with its output language's "
                                   f"token, e.g. >>{sorted(self.tokens)[0][2:-2]}<< (one of {codes}"
                                   f"{', ...' if len(self.tokens) > 6 else ''}), or give one language for all "
                                   "(--target-language of nmt translate and nmt serve)")
        return texts
