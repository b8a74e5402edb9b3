"""HTML documents: the text of block elements translated as sentences, inline markup carried over by the word
alignment, everything else left as it was.

What is translated, and what is not (docs/translation.md, "HTML"):
- the text of every block element (p, li, td, h1, div, title, ...), sentence by sentence; text runs that sit
  between child blocks are translated on their own;
- inline elements (b, i, a, span, em, strong, ...) are kept with their attributes and wrap the target words aligned
  to the source words they wrapped; `<br>` breaks sentences and stays where it was between them;
- the attributes alt, title, placeholder and aria-label, as short texts of their own;
- left as they were: script, style, pre, code, kbd, samp, var, textarea, svg, math, comments, every other attribute,
  and any element with translate="no" or class="notranslate" (inline ones are moved with the word they followed).

The parser is Python's own HTML parser through BeautifulSoup: it never refuses a fragment, closing what was left
open, so malformed input is translated as well as it reads; the output is well-formed, has the same elements with
the same attributes, and writes characters as characters (only &, <, > and the no-break space as entities).
"""

from __future__ import annotations

from bs4 import BeautifulSoup, Doctype, Tag
from bs4.formatter import HTMLFormatter

from nmt.documents.inline import Run, inline_level, untranslated
from nmt.documents.text import TextDocument
from nmt.engines.base import Translation
from nmt.errors import NmtError

TRANSLATED_ATTRIBUTES = ("alt", "title", "placeholder", "aria-label")
MAX_DEPTH = 400  # elements nested deeper than this are refused (the walks over the tree recurse)


class _Soup(BeautifulSoup):
    """BeautifulSoup that keeps whitespace-only strings as they are: it folds them to one space or newline outside
    whitespace-preserving elements (indentation would become one newline). The document itself, put on that stack
    before parsing, counts as such an element."""

    def reset(self) -> None:
        super().reset()
        self.preserve_whitespace_tag_stack.append(self)

    def endData(self, containerClass=None) -> None:  # BeautifulSoup's names
        super().endData(_Doctype if containerClass is Doctype else containerClass)


class _Doctype(Doctype):
    """A doctype written back as it came (BeautifulSoup's adds a line break after it)."""

    SUFFIX = ">"


def _check_depth(root: Tag) -> None:
    depth = {id(root): 0}
    for tag in root.find_all(True):
        depth[id(tag)] = depth[id(tag.parent)] + 1
        if depth[id(tag)] > MAX_DEPTH:
            raise NmtError(f"the HTML nests elements more than {MAX_DEPTH} deep")


class _Layout:
    """A parsed document: its runs of translatable text and its translatable attribute values, in document
    order."""

    def __init__(self, html: str, language: str | None):
        self.root = _Soup(html, "html.parser")
        _check_depth(self.root)
        self.runs: list[Run] = []
        self.attributes: list[tuple[Tag, str, TextDocument]] = []
        self._block(self.root, language)

    def _block(self, element: Tag, language: str | None) -> None:
        run: list = []
        for child in list(element.children):
            if inline_level(child):
                run.append(child)
                if isinstance(child, Tag):
                    self._attributes(child, language)
                continue
            self._add_run(run, language)
            run = []
            if isinstance(child, Tag) and not untranslated(child):
                self._attributes(child, language, descend=False)
                self._block(child, language)
        self._add_run(run, language)

    def _attributes(self, tag: Tag, language: str | None, descend: bool = True) -> None:
        """The translatable attributes of `tag` (and, with `descend`, of the elements inside it), in document order,
        none from inside an untranslated element."""
        waiting = [tag]
        while waiting:
            current = waiting.pop()
            if untranslated(current):
                continue
            for name in TRANSLATED_ATTRIBUTES:
                value = current.get(name)
                if isinstance(value, str) and value.strip():
                    self.attributes.append((current, name, TextDocument(value, language)))
            if descend:
                waiting += reversed([child for child in current.children if isinstance(child, Tag)])

    def _add_run(self, nodes: list, language: str | None) -> None:
        if nodes:
            run = Run(nodes, language)
            if run.sentences:  # not only spaces and nodes kept whole
                self.runs.append(run)


class _Formatter(HTMLFormatter):
    """Characters as characters; &, <, > and the no-break space as entities; void elements as `<br>`; attributes
    in their order."""

    def __init__(self):
        super().__init__(entity_substitution=_escape, void_element_close_prefix=None)

    def attributes(self, tag: Tag):
        return list(tag.attrs.items())  # in the document's order (BeautifulSoup sorts them by name)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\xa0", "&nbsp;")


class HtmlDocument:
    """An HTML document or fragment as the sentences to translate (runs of text first, then attribute values) and
    the document put back together from their translations."""

    def __init__(self, html: str, language: str | None):
        self.html = html
        self.language = language
        layout = _Layout(html, language)
        self.sentences = [s for run in layout.runs for s in run.inputs]
        self.sentences += [s for _, _, text in layout.attributes for s in text.sentences]

    def assemble(self, translations: list[Translation]) -> str:
        layout = _Layout(self.html, self.language)  # a fresh tree: a document can be assembled more than once
        position = 0
        for run in layout.runs:
            count = len(run.sentences)
            run.replace(translations[position: position + count])
            position += count
        for tag, name, text in layout.attributes:
            count = len(text.sentences)
            tag[name] = text.assemble(translations[position: position + count])
            position += count
        return layout.root.decode(formatter=_Formatter())
