"""Sentence boundaries (sentencex, Wikimedia's segmenter for ~300 languages; why this one:
benchmarks/README.md, "Sentence splitting"), and sentences too long for the model cut at sensible points."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# The rules used for a language sentencex has none for (it then falls back to these itself; named here so that the
# docs and the message agree).
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of a text."""

    start: int
    end: int


def sentence_spans(text: str, language: str | None) -> list[Span]:
    """The sentences of one line of text, each without the whitespace around it; the text between them (spaces) is
    not part of any."""
    import sentencex

    spans = []
    for boundary in sentencex.get_sentence_boundaries(language or DEFAULT_LANGUAGE, text):
        start, end = boundary["start_index"], boundary["end_index"]
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            start += len(piece) - len(piece.lstrip())
            spans.append(Span(start, start + len(stripped)))
    return spans


# Where a too-long sentence is best cut, most natural first: after a clause's punctuation, after a dash, at a space.
_CUT_POINTS = (re.compile(r"[;:,]\s+"), re.compile(r"\s+[-–—]\s+"), re.compile(r"\s+"))


def cut_to_fit(sentence: str, count_pieces: Callable[[str], int], limit: int) -> list[str]:
    """`sentence` as parts of at most `limit` source pieces each, cut after clause punctuation where possible, else
    at a space, else (one enormous word) wherever the pieces run out. One part when it fits."""
    if count_pieces(sentence) <= limit:
        return [sentence]
    parts: list[str] = []
    rest = sentence
    while rest and count_pieces(rest) > limit:
        cut = _last_cut_that_fits(rest, count_pieces, limit)
        parts.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        parts.append(rest)
    return [part for part in parts if part]


def _last_cut_that_fits(text: str, count_pieces: Callable[[str], int], limit: int) -> int:
    """The end of the longest head of `text` that fits `limit`, ending at the most natural cut point available."""
    for pattern in _CUT_POINTS:
        ends = [match.end() for match in pattern.finditer(text)]
        fitting = _longest_fitting(ends, text, count_pieces, limit)
        if fitting is not None:
            return fitting
    # No cut point fits: the longest head by characters that fits (binary search), at least one character.
    low, high = 1, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if count_pieces(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def _longest_fitting(ends: list[int], text: str, count_pieces: Callable[[str], int], limit: int) -> int | None:
    """The largest end in `ends` whose head fits (heads grow with their end, so a binary search), or None."""
    low, high, best = 0, len(ends) - 1, None
    while low <= high:
        middle = (low + high) // 2
        if count_pieces(text[: ends[middle]].strip()) <= limit:
            best, low = ends[middle], middle + 1
        else:
            high = middle - 1
    return best
