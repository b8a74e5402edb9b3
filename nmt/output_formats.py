"""How `nmt translate` writes each input line's translations: plain lines, Moses/Marian n-best lines, hard
alignments in Pharaoh form, or one JSON object per line. Pure functions of `Translation`s."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nmt.engines.base import Translation


@dataclass
class OutputFormat:
    """How `translate_file` writes each input line's translations."""

    nbest: int = 1  # Moses n-best lines (INDEX ||| TRANSLATION ||| SCORE) when above 1
    as_json: bool = False  # one JSON object per line instead
    alignment: bool = False  # append ` ||| SRC-TGT ...` hard alignments
    attention_plot: Path | None = None  # a PNG of each line's attention into this folder

    def format(self, index: int, translations: list[Translation]) -> str:
        """The text written for input line `index` (from 0), newline included."""
        if self.as_json:
            return format_json(translations, self.nbest)
        return format_translations(index, translations, self.nbest, self.alignment)


def format_alignment(alignment: list[tuple[int, int]] | None) -> str:
    """Pharaoh format, `SOURCE-TARGET` piece indices from 0 (fast_align, Moses, fairseq, Marian)."""
    return " ".join(f"{s}-{t}" for s, t in alignment or [])


def format_translations(index: int, translations: list[Translation], nbest: int, alignment: bool = False) -> str:
    """One line per input (with --print-alignment: `TRANSLATION ||| ALIGNMENT`, as Marian); with nbest > 1, nbest lines
    `INDEX ||| TRANSLATION ||| SCORE` (Moses/Marian n-best), alignment last."""
    if nbest <= 1:
        best = translations[0]
        return best.text + (f" ||| {format_alignment(best.alignment)}" if alignment else "") + "\n"
    return "".join(f"{index} ||| {t.text} ||| {t.score:.4f}"
                   + (f" ||| {format_alignment(t.alignment)}" if alignment else "") + "\n" for t in translations)


def translation_record(translation: Translation) -> dict:
    """A translation's JSON fields: translation, score, tokens, and alignment where it was computed."""
    record = {"translation": translation.text, "score": round(translation.score, 6), "tokens": translation.tokens}
    if translation.alignment is not None:
        record["alignment"] = format_alignment(translation.alignment)
    return record


def format_json(translations: list[Translation], nbest: int) -> str:
    """One JSON object per input line: the best translation's fields, and with nbest > 1 the list under "nbest"."""
    record = translation_record(translations[0])
    if nbest > 1:
        record["nbest"] = [translation_record(t) for t in translations]
    return json.dumps(record, ensure_ascii=False) + "\n"
