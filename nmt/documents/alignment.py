"""Word alignments from a translation's piece alignment: which target words each source word became, as the HTML
layer needs to carry inline markup over (Bergamot's way). Without a usable piece alignment (the CTranslate2 engine
records none), words are paired by their relative position."""

from __future__ import annotations

from nmt.engines.base import Translation

WORD_START = "\u2581"  # SentencePiece's "▁": a piece that starts a word


def _piece_words(pieces: list[str]) -> list[int]:
    """The word (from 0) each piece belongs to; -1 for a leading language token (`>>deu<<`)."""
    words, index = [], -1
    for position, piece in enumerate(pieces):
        if piece.startswith(WORD_START) or index < 0:
            if index < 0 and position == 0 and piece.startswith(">>") and piece.endswith("<<"):
                words.append(-1)
                continue
            index += 1
        words.append(index)
    return words


def target_words_of_source(translation: Translation, source_words: int) -> list[list[int]]:
    """For each of the `source_words` words of a sentence, the target words (indices into translation.text.split())
    aligned to it, in order; by relative position where the alignment is missing or does not match the words."""
    target_words = len(translation.text.split())
    aligned: list[list[int]] = [[] for _ in range(source_words)]
    if target_words == 0 or source_words == 0:
        return aligned
    source_of_piece = _piece_words(translation.source_tokens)
    target_of_piece = _piece_words(translation.tokens)
    usable = (translation.alignment is not None and max(source_of_piece, default=-1) + 1 == source_words
              and max(target_of_piece, default=-1) + 1 == target_words)
    if usable:
        for source_piece, target_piece in translation.alignment:
            source, target = source_of_piece[source_piece], target_of_piece[target_piece]
            if source >= 0 and target not in aligned[source]:
                aligned[source].append(target)
        for targets in aligned:
            targets.sort()
        if any(aligned):
            return aligned
    for target in range(target_words):  # relative position: target word t comes from source word ~ t * S / T
        aligned[min(source_words - 1, int((target + 0.5) * source_words / target_words))].append(target)
    return aligned
