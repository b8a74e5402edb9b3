"""Lines in -> SentencePiece -> batches by tokens -> beam search -> detokenized lines out, in input order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import torch

from nmt.checkpoint import load_model
from nmt.config import SearchConfig
from nmt.data.batching import make_batches
from nmt.data.dataset import pad_sequences
from nmt.data.text import decode_line, normalize
from nmt.device import pick_device
from nmt.search.beam import beam_search
from nmt.vocab import EOS_ID


@dataclass
class Translation:
    text: str
    score: float  # length-normalized log-probability (what the beam ranks by); 0 for an empty input
    tokens: list[str]  # target pieces


class Translator:
    """A loaded model ready to translate. `translate(lines)` keeps the input order; empty lines stay empty."""

    def __init__(self, checkpoint: Path, search: SearchConfig | None = None, device: str | None = None,
                 max_tokens: int = 6000, max_source_tokens: int = 1024):
        self.search = search or SearchConfig()
        self.search.validate()
        self.device = pick_device(device)
        self.model, self.vocab, payload = load_model(checkpoint, self.device)
        self.src_lang, self.tgt_lang = payload.get("src"), payload.get("tgt")
        self.max_tokens = max_tokens
        # Attention memory grows with the square of the length: a pathological line is cut rather than run out
        # of memory; the number of cut lines is counted here.
        self.max_source_tokens = max_source_tokens
        self.truncated = 0

    def translate(self, lines: list[str]) -> list[list[Translation]]:
        """The n-best translations of each line (a list with one empty Translation for an empty line)."""
        results: list[list[Translation]] = [[Translation("", 0.0, [])] for _ in lines]
        texts = [normalize(line) for line in lines]
        todo = [i for i, text in enumerate(texts) if text]
        if not todo:
            return results
        encoded = self.vocab.encode([texts[i] for i in todo])
        sources = []
        for ids in encoded:
            if len(ids) >= self.max_source_tokens:
                ids = ids[: self.max_source_tokens - 1]
                self.truncated += 1
            sources.append(np.asarray(ids + [EOS_ID], dtype=np.int64))
        lengths = np.array([len(s) for s in sources])
        plan = make_batches(lengths, lengths, self.max_tokens, shuffle=False)
        for batch_indices in plan.batches:
            src_tokens = torch.from_numpy(pad_sequences([sources[i] for i in batch_indices])).to(self.device)
            hypotheses = beam_search(self.model, src_tokens, self.search)
            for position, hyps in zip(batch_indices, hypotheses):
                results[todo[position]] = [
                    Translation(self.vocab.decode([h.tokens])[0], h.score, self.vocab.processor.id_to_piece(h.tokens))
                    for h in hyps]
        return results

    def translate_stream(self, lines: Iterable[str], window: int = 1000) -> Iterator[list[Translation]]:
        """Translate a stream window by window (sorting by length inside each), yielding in input order."""
        buffer: list[str] = []
        for line in lines:
            buffer.append(line)
            if len(buffer) >= window:
                yield from self.translate(buffer)
                buffer = []
        if buffer:
            yield from self.translate(buffer)


def read_text_lines(stream: BinaryIO, name: str = "<stdin>") -> Iterator[str]:
    """Lines of a byte stream, decoded as strict UTF-8 (an error names the line); only '\\n' ends a line."""
    for line_number, raw in enumerate(stream, start=1):
        yield decode_line(raw, name, line_number)


def format_translations(index: int, translations: list[Translation], nbest: int) -> str:
    """One line per input; with nbest > 1, nbest lines `INDEX ||| TRANSLATION ||| SCORE` (Moses/Marian n-best)."""
    if nbest <= 1:
        return translations[0].text + "\n"
    return "".join(f"{index} ||| {t.text} ||| {t.score:.4f}\n" for t in translations)
