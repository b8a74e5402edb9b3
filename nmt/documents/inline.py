"""Runs of inline HTML: the text of consecutive inline nodes of one block (with its inline elements, `<br>` and
the nodes kept whole), its sentences and words, and, once translated, where each target word, inline element and
kept node goes (Bergamot's way: an element wraps the target words aligned to the source words it wrapped)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bs4 import NavigableString, Tag

from nmt.documents.alignment import target_words_of_source
from nmt.documents.sentences import Span, sentence_spans
from nmt.engines.base import Translation

INLINE = frozenset({"a", "abbr", "acronym", "b", "bdi", "bdo", "big", "cite", "data", "del", "dfn", "em", "font",
                    "i", "ins", "label", "mark", "q", "s", "small", "span", "strike", "strong", "sub", "sup", "time",
                    "tt", "u"})
# Inline elements whose content is not language: kept whole, moved with the word before them.
OPAQUE_INLINE = frozenset({"code", "kbd", "samp", "var", "img", "input", "wbr", "button", "select", "svg", "math",
                           "object", "embed", "iframe", "audio", "video", "canvas", "textarea"})
UNTRANSLATED = frozenset({"script", "style", "pre", "code", "kbd", "samp", "var", "textarea", "svg", "math",
                          "template", "noscript", "iframe", "object", "canvas"})
_INLINE_LEVEL = INLINE | OPAQUE_INLINE | {"br"}
_WORD = re.compile(r"\S+")
_WHITESPACE = re.compile(r"\s")


def untranslated(tag: Tag) -> bool:
    return (tag.name in UNTRANSLATED or str(tag.get("translate", "")).strip().lower() == "no"
            or "notranslate" in tag.get_attribute_list("class"))


def is_text(node) -> bool:
    return type(node) is NavigableString


def inline_level(node) -> bool:
    if not isinstance(node, Tag):
        return True  # text, comments
    if node.name not in _INLINE_LEVEL:
        return False
    return node.name not in INLINE or node.find(lambda t: t.name not in _INLINE_LEVEL) is None


@dataclass
class _Marker:
    """A node kept whole inside a run (br, img, code, a comment, a translate="no" span) at a character position."""

    node: object
    position: int
    glued: bool  # no space between the word before it and it: it stays before the space that follows the word
    spaced: bool = False  # a space follows it in the source


@dataclass
class _Element:
    """An inline element of a run and the characters [start, end) of the run's text it wraps."""

    tag: Tag | None  # None: the run itself
    start: int
    end: int = 0
    children: list = field(default_factory=list)  # _Element and _Marker, in order


class Run:
    """Consecutive inline nodes of one block: their text, its sentences and words, and the inline structure."""

    def __init__(self, nodes: list, language: str | None):
        self.nodes = nodes
        self.text = ""
        self.breaks: list[int] = []
        self.markers: list[_Marker] = []
        self.root = _Element(None, 0)
        for node in nodes:
            self._read(node, self.root)
        self.root.end = len(self.text)
        for marker in self.markers:
            marker.spaced = marker.position < len(self.text) and self.text[marker.position].isspace()
        self.sentences: list[list[Span]] = []  # each sentence's words
        flat = _WHITESPACE.sub(" ", self.text)  # line breaks inside HTML text are spaces
        for start, end in zip([0, *self.breaks], [*self.breaks, len(flat)]):
            for span in sentence_spans(flat[start:end], language):
                words = [Span(start + span.start + m.start(), start + span.start + m.end())
                         for m in _WORD.finditer(flat[start + span.start: start + span.end])]
                self.sentences.append(words)

    def _read(self, node, parent: _Element) -> None:
        if is_text(node):
            self.text += str(node)
        elif isinstance(node, Tag) and node.name in INLINE and not untranslated(node):
            element = _Element(node, len(self.text))
            parent.children.append(element)
            for child in list(node.children):
                self._read(child, element)
            element.end = len(self.text)
        else:
            position = len(self.text)
            marker = _Marker(node, position, position > 0 and not self.text[-1].isspace())
            parent.children.append(marker)
            self.markers.append(marker)
            if isinstance(node, Tag) and node.name == "br":
                self.breaks.append(position)

    @property
    def inputs(self) -> list[str]:
        return [" ".join(self.text[w.start: w.end] for w in words) for words in self.sentences]

    def replace(self, translations: list[Translation]) -> None:
        """Put the translated run in the place of the source nodes."""
        _Placement(self, translations).apply()


_PARTS = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)  # a word's leading punctuation, its core, what trails it


def _parts(word: str) -> tuple[str, str, str]:
    """A word as (leading punctuation, core, trailing punctuation); a word of punctuation only is all core."""
    lead, core, trail = _PARTS.match(word).groups()
    return (lead, core, trail) if core else ("", word, "")


class _Placement:
    """Where each target word, inline element and marker of a run goes, and the nodes that result. Words are
    placed as up to three tokens (leading punctuation, core, trailing punctuation), so that `<b>two</b>.` keeps its
    full stop outside the bold word in the translation too."""

    def __init__(self, run: Run, translations: list[Translation]):
        self.run = run
        self.words: list[str] = []  # target tokens
        self.gaps: list[str] = []  # gaps[i]: what follows target token i
        self.token_of: dict[tuple[int, int], int] = {}  # (target word, part) -> token
        self.word_tokens: list[list[int]] = []  # target word -> its tokens
        self.source_parts: list[list[tuple[int, Span]]] = []  # source word -> (part, characters)
        self.aligned: list[list[int]] = []  # source word -> target words
        self.sentence_of_source: list[int] = []
        self.first_target: list[int] = []  # each sentence's first target word
        target_words = 0
        for index, (words, translation) in enumerate(zip(run.sentences, translations, strict=True)):
            self.first_target.append(target_words)
            target = translation.text.split()
            if self.words and target:  # between sentences: a line break of the source, else one space (or none)
                previous_end = self.source_parts[-1][-1][1].end
                gap = run.text[previous_end: words[0].start] if words else " "
                self.gaps[-1] = gap if "\n" in gap or not gap else " "
            for word in target:
                tokens = []
                for part, text in enumerate(_parts(word)):
                    if text:
                        self.token_of[(target_words, part)] = len(self.words)
                        tokens.append(len(self.words))
                        self.words.append(text)
                        self.gaps.append("")
                self.word_tokens.append(tokens)
                self.gaps[-1] = " "
                target_words += 1
            first = self.first_target[-1]
            self.aligned += [[first + t for t in ts] for ts in target_words_of_source(translation, len(words))]
            for span in words:
                parts, start = [], span.start
                for part, text in enumerate(_parts(run.text[span.start: span.end])):
                    if text:
                        parts.append((part, Span(start, start + len(text))))
                        start += len(text)
                self.source_parts.append(parts)
            self.sentence_of_source += [index] * len(words)
        self.first_target.append(target_words)
        if self.gaps:
            self.gaps[-1] = ""

    # --- where things go -----------------------------------------------------------------------------------

    def _targets(self, element: _Element) -> list[int]:
        """The target tokens aligned to the source tokens `element` wraps, sorted."""
        covered = [(word, part) for word, parts in enumerate(self.source_parts) for part, span in parts
                   if span.start < element.end and span.end > element.start]
        tokens = set()
        for word, part in covered:
            for target in self.aligned[word] or [self._relative(word)]:
                # the same part of the target word, else its core (a part the translation does not have)
                token = self.token_of.get((target, part), self.token_of.get((target, 1)))
                tokens.add(self.word_tokens[target][0] if token is None else token)
        return sorted(tokens)

    def _relative(self, word: int) -> int:
        """The target word at the same relative place in its sentence as source word `word`."""
        sentence = self.sentence_of_source[word]
        first_source = self.sentence_of_source.index(sentence)
        source_count = self.sentence_of_source.count(sentence)
        first, end = self.first_target[sentence], self.first_target[sentence + 1]
        if end == first:
            return first
        return first + min(end - first - 1, (word - first_source) * (end - first) // source_count)

    def _point(self, position: int) -> int:
        """The target token a node at source character `position` goes before."""
        ends = [parts[-1][1].end for parts in self.source_parts]
        before = [i for i, end in enumerate(ends) if end <= position]
        after = [i for i, parts in enumerate(self.source_parts) if parts[0][1].start >= position]
        if not before or not self.word_tokens:
            return 0
        if not after:
            return len(self.words)
        previous, following = before[-1], after[0]
        if self.sentence_of_source[previous] != self.sentence_of_source[following]:
            word = self.first_target[self.sentence_of_source[following]]
            return self.word_tokens[word][0] if word < len(self.word_tokens) else len(self.words)
        word = max(self.aligned[previous] or [self._relative(previous)])
        return self.word_tokens[word][-1] + 1

    def _layout(self, element: _Element, low: int, high: int) -> list[tuple]:
        """The children of `element` inside target tokens [low, high]: (start, end, child) with end = start - 1
        for a node that takes no tokens, in order, without overlaps."""
        placed = []
        for order, child in enumerate(element.children):
            if isinstance(child, _Element) and (targets := self._targets(child)):
                start, end = max(low, targets[0]), min(high, targets[-1])
                if start <= end:
                    placed.append((start, end, order, child))
                    continue
                point = min(max(targets[0], low), high + 1)
            else:
                point = min(max(self._point(child.start if isinstance(child, _Element) else child.position), low),
                            high + 1)
            placed.append((point, point - 1, order, child))
        placed.sort(key=lambda item: (item[0], item[1] >= item[0], item[2]))
        layout, cursor = [], low
        for start, end, _, child in placed:
            start = max(start, cursor)
            if end >= start:
                cursor = end + 1
            else:
                end = start - 1  # takes no tokens (or lost them to the sibling before it): a point
            layout.append((start, end, child))
        return layout

    # --- the nodes -------------------------------------------------------------------------------------------

    def _render(self, element: _Element, low: int, high: int) -> list:
        out: list = []
        layout = self._layout(element, low, high)
        index, item = low, 0
        while True:
            while item < len(layout) and layout[item][0] == index and layout[item][1] < index:
                child = layout[item][2]
                out.append(self._node(child, index, index - 1))
                if isinstance(child, _Marker) and child.spaced and not child.glued and 0 < index <= high:
                    out.append(" ")  # `word <code>x</code> word`: the space after it too
                item += 1
            if index > high:
                return out
            if item < len(layout) and layout[item][0] == index:
                start, end, child = layout[item]
                out.append(self._node(child, start, end))
                item += 1
                index = end + 1
            else:
                out.append(self.words[index])
                index += 1
            # Markers glued to the word before them come before the space after it.
            while (item < len(layout) and layout[item][0] == index and layout[item][1] < index
                   and isinstance(layout[item][2], _Marker) and layout[item][2].glued):
                out.append(self._node(layout[item][2], index, index - 1))
                item += 1
            if index <= high:
                out.append(self.gaps[index - 1])

    def _node(self, child, start: int, end: int):
        if isinstance(child, _Marker):
            return child.node
        tag = child.tag
        for node in self._render(child, start, end):  # words and spaces are str; a comment is a str too, kept whole
            tag.append(NavigableString(node) if type(node) is str else node)
        return tag

    def apply(self) -> None:
        run = self.run
        inside = list(_descendants(run.root))
        for child in inside:
            if isinstance(child, _Element):
                child.tag.clear()
        anchor = NavigableString("")
        run.nodes[0].insert_before(anchor)
        for node in run.nodes + [child.tag if isinstance(child, _Element) else child.node for child in inside]:
            node.extract()
        # What comes before the first word and after the last (spaces, and nodes kept whole) stays as it was.
        first_start, last_end = self.source_parts[0][0][1].start, self.source_parts[-1][-1][1].end
        edges = [child for child in run.root.children if isinstance(child, _Marker)
                 and (child.position <= first_start or child.position >= last_end)]
        run.root.children = [child for child in run.root.children if not any(child is edge for edge in edges)]
        rendered = [*_interleave(run.text, 0, first_start, [m for m in edges if m.position <= first_start]),
                    *self._render(run.root, 0, len(self.words) - 1),
                    *_interleave(run.text, last_end, len(run.text), [m for m in edges if m.position > first_start])]
        merged: list = []
        for node in rendered:  # words and spaces are str; everything else a node of the tree
            if type(node) is str:
                if not node:
                    continue
                if merged and type(merged[-1]) is str:
                    merged[-1] += str(node)
                    continue
                merged.append(node)
            else:
                merged.append(node)
        for node in merged:
            anchor.insert_before(NavigableString(node) if type(node) is str else node)
        anchor.extract()


def _interleave(text: str, start: int, end: int, markers: list[_Marker]) -> list:
    """text[start:end] (spaces) with the markers at their positions in it."""
    out, at = [], start
    for marker in markers:
        out += [text[at: marker.position], marker.node]
        at = marker.position
    return [*out, text[at:end]]


def _descendants(element: _Element):
    """Every _Element and _Marker under `element`, in document order."""
    for child in element.children:
        yield child
        if isinstance(child, _Element):
            yield from _descendants(child)
