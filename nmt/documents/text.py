"""Plain text as sentences: every line break, blank line and space between sentences kept, each line split into its
sentences (or kept whole), and the translations put back in their places."""

from __future__ import annotations

from nmt.documents.sentences import Span, sentence_spans
from nmt.engines.base import Translation


class TextDocument:
    """`text` as `sentences` and the `gaps` around them: text == gaps[0] + sentences[0] + gaps[1] + ... + gaps[-1].
    Gaps hold only whitespace (line breaks included), so a translation keeps the text's line structure and its
    leading and trailing spaces."""

    def __init__(self, text: str, language: str | None, split: bool = True):
        self.sentences: list[str] = []
        self.gaps: list[str] = []
        self.sentence_lines: list[int] = []  # the line (from 0) each sentence is on
        gap_start = 0
        offset = 0
        for line_number, line in enumerate(text.splitlines(keepends=True)):
            content = line.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
            spans = sentence_spans(content, language) if split else _whole(content)
            for span in spans:
                self.gaps.append(text[gap_start: offset + span.start])
                self.sentences.append(content[span.start: span.end])
                self.sentence_lines.append(line_number)
                gap_start = offset + span.end
            offset += len(line)
        self.gaps.append(text[gap_start:])

    def assemble(self, translations: list[Translation]) -> str:
        """The text with each sentence replaced by its translation."""
        return self.join([translation.text for translation in translations])

    def join(self, texts: list[str]) -> str:
        """The text with each sentence replaced by the text given for it."""
        pieces = [self.gaps[0]]
        for text, gap in zip(texts, self.gaps[1:], strict=True):
            pieces += [text, gap]
        return "".join(pieces)


def _whole(line: str) -> list[Span]:
    stripped = line.strip()
    if not stripped:
        return []
    start = len(line) - len(line.lstrip())
    return [Span(start, start + len(stripped))]
