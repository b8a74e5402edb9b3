"""What every engine gives its callers: `Translation`, the `Engine` protocol, and the input side they share
(normalized lines, the target-language token of multilingual models, encoding and cutting over-long sources)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from nmt.config import SearchConfig
from nmt.data.text import normalize
from nmt.vocab import TargetLanguage, Vocab

@dataclass
class Translation:
    text: str
    score: float  # length-normalized log-probability (what the beam ranks by); 0 for an empty input
    tokens: list[str]  # target pieces
    source_tokens: list[str] = field(default_factory=list)  # source pieces
    # Encoder-decoder attention when asked for: (decoder layers, target pieces + eos, source pieces + eos),
    # averaged over heads, and the hard alignment it gives: (source piece, target piece) index pairs.
    attention: np.ndarray | None = None
    alignment: list[tuple[int, int]] | None = None
    # A text translated as a document (nmt.documents): its sentences' translations, each with its own pieces,
    # alignment and attention; None for a sentence translated as one.
    sentences: list["Translation"] | None = None
    source: str | None = None  # the source sentence, for each of `sentences`
    cut: int = 0  # sentences of the text too long for the model, translated in parts
    truncated: bool = False  # the source was longer than the model takes: its end was cut off, untranslated


def sampling_seed(seed: int, lines: list[str]) -> int:
    """The seed of one call's sampling: a function of --seed and the call's lines alone, so that a window of lines
    gets the same samples however the run got to it (a run resumed after a stop gives the lines of an uninterrupted
    one) and whatever was translated before it."""
    digest = hashlib.sha256(f"{seed}\0".encode() + "\0".join(lines).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "little")


class Engine(Protocol):
    """What `nmt translate`, `nmt serve` and `nmt tune` use of a translator, all of it: `nmt.engines.pytorch.Translator`
    and `nmt.engines.ctranslate2.CTranslate2Translator` both have every member."""

    search: SearchConfig  # the default search; a call may pass its own
    vocab: Vocab
    src_lang: str | None  # the language pair, where the model records it (`mul`: several)
    tgt_lang: str | None
    pairs: list[tuple[str, str]]  # a multilingual model's pairs as trained ([] for one pair, or not recorded)
    language: TargetLanguage  # its language tokens, and the one every text gets (--target-language)
    max_source_tokens: int  # longer inputs are cut to this many pieces ...
    truncated: int  # ... and counted here
    grown_beam: int  # the widest beam constrained lines needed beyond the search's (0: none did)
    records_attention: bool  # whether translate(record_attention=True) is possible (it gives alignments)

    def translate(self, lines: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None,
                  abandoned: Callable[[], set[int]] | None = None) -> list[list[Translation]]:
        """The n-best translations of each line, in order (one empty Translation for an empty line); a stream goes
        through nmt.translate.translate_stream, window by window. `abandoned()`: the lines (positions) nobody waits
        for any more, asked as decoding goes (a server's timed-out requests): their work stops, and they keep an
        empty Translation."""
        ...

    def constraint_pieces(self, phrases: list[str], search: SearchConfig, prefix_length: int = 0,
                          index: int = 0) -> list[list[int]]:
        """A line's constraint phrases as target ids, checked (NmtError where they cannot be honoured)."""
        ...


@dataclass
class EncodedLines:
    """A call's lines as both engines take them: `results` holds an empty Translation for every line (the empty
    lines keep theirs), `todo` the positions of the non-empty ones, `ids` their source ids (without eos), each cut to
    leave room for eos within `max_source_tokens`; `cut_lines` which were cut."""

    results: list[list[Translation]]
    texts: list[str]  # every line, normalized
    todo: list[int]
    ids: list[list[int]]
    cut_lines: list[int] = field(default_factory=list)  # positions in `texts` of the lines cut

    @property
    def truncated(self) -> int:
        return len(self.cut_lines)

    def mark_truncated(self, results: list[list[Translation]]) -> list[list[Translation]]:
        """RESULTS with the translations of the lines that were cut marked as such."""
        for position in self.cut_lines:
            for translation in results[position]:
                translation.truncated = True
        return results


def encode_lines(lines: list[str], vocab: Vocab, language: TargetLanguage, max_source_tokens: int) -> EncodedLines:
    """Normalize, mark with the target-language token, encode and cut: the input side both engines share."""
    results: list[list[Translation]] = [[Translation("", 0.0, [])] for _ in lines]
    texts = [normalize(line) for line in lines]
    todo = [i for i, text in enumerate(texts) if text]
    if not todo:
        return EncodedLines(results, texts, todo, [])
    ids, cut_lines = [], []
    for position, line_ids in zip(todo, vocab.encode_source(language.mark([texts[i] for i in todo]))):
        if len(line_ids) >= max_source_tokens:  # room for the eos after it
            line_ids = line_ids[: max_source_tokens - 1]
            cut_lines.append(position)
        ids.append(line_ids)
    return EncodedLines(results, texts, todo, ids, cut_lines)
