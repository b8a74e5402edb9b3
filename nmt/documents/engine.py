"""An engine over documents: each input is a text of any number of sentences and lines (or an HTML document), split
into sentences for the sentence-level engine underneath and put back together. It is an Engine itself, so that `nmt
translate`'s stream, its output formats and its file loop take it unchanged."""

from __future__ import annotations

from nmt.config import SearchConfig
from nmt.data.text import normalize
from nmt.documents.html import HtmlDocument
from nmt.documents.plan import Document, DocumentPlan
from nmt.documents.text import TextDocument
from nmt.engines.base import Engine, Translation
from nmt.terminology import ConstraintError, Glossary


def documents_of(texts: list[str], text_format: str, language: str | None, split: bool = True) -> list[Document]:
    """Each text as a document: plain text (split into sentences, or each line whole) or HTML."""
    if text_format == "html":
        return [HtmlDocument(text, language) for text in texts]
    return [TextDocument(text, language, split) for text in texts]


def piece_counter(engine: Engine):
    """How many source pieces a sentence takes, as the engine encodes it."""
    return lambda sentence: len(engine.vocab.encode_source([normalize(sentence)])[0])


def source_limit(engine: Engine) -> int:
    """The most source pieces a sentence may have: the engine's limit, less the end-of-sentence and a target
    language token."""
    return max(1, engine.max_source_tokens - 2)


def sentence_constraints(plan: DocumentPlan, constraints: list[list[str]], glossary: Glossary | None,
                         ) -> list[list[str]]:
    """Each input's constraints from its document's: a glossary's terms go to the sentences that hold the source
    term; any other phrase needs a document of one sentence (it cannot be placed otherwise)."""
    per_input: list[list[str]] = [[] for _ in plan.inputs]
    for index, (document, parts, phrases) in enumerate(zip(plan.documents, plan.parts, constraints)):
        if not phrases:
            continue
        if sum(len(p) for p in parts) == 1:  # one sentence, not cut: the phrases are its own
            per_input[parts[0][0]] = list(phrases)
            continue
        placed = set()
        for sentence, positions in zip(document.sentences, parts):
            terms = glossary.constraints(normalize(sentence)) if glossary is not None else []
            for phrase in phrases:
                if phrase in terms:
                    per_input[positions[0]].append(phrase)
                    placed.add(phrase)
        unplaced = [phrase for phrase in phrases if phrase not in placed]
        if unplaced:
            raise ConstraintError(index, f"{len(parts)} sentences: a constraint ({unplaced[0]!r}) cannot be given "
                                  "to one of them; put one sentence on a line, or give the term as a --glossary "
                                  "entry (its source term says where it goes)")
    return per_input


class DocumentEngine:
    """`engine` translating documents: `text_format` "text" (with `split`, each input's sentences one by one; without,
    each line whole) or "html". Inputs too long for the model are cut at clause marks; `cut_inputs` lists the
    positions (from 0, across calls) of the inputs where that happened."""

    def __init__(self, engine: Engine, text_format: str = "text", split: bool = True,
                 glossary: Glossary | None = None):
        self.engine = engine
        self.text_format = text_format
        self.split = split
        self.glossary = glossary
        self.cut_inputs: list[int] = []
        self._seen = 0
        self.count_pieces = piece_counter(engine)

    # The Engine protocol: the engine underneath's members, and translate() over documents.
    search = property(lambda self: self.engine.search)
    vocab = property(lambda self: self.engine.vocab)
    src_lang = property(lambda self: self.engine.src_lang)
    tgt_lang = property(lambda self: self.engine.tgt_lang)
    max_source_tokens = property(lambda self: self.engine.max_source_tokens)
    truncated = property(lambda self: self.engine.truncated)
    grown_beam = property(lambda self: self.engine.grown_beam)
    records_attention = property(lambda self: self.engine.records_attention)

    def constraint_pieces(self, phrases: list[str], search: SearchConfig, prefix_length: int = 0,
                          index: int = 0) -> list[list[int]]:
        return self.engine.constraint_pieces(phrases, search, prefix_length, index)

    def translate(self, lines: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None) -> list[list[Translation]]:
        documents = documents_of(lines, self.text_format, self.engine.src_lang, self.split)
        plan = DocumentPlan.of(documents, self.count_pieces, source_limit(self.engine))
        self.cut_inputs += [self._seen + i for i, cut in enumerate(plan.cut) if cut]
        self._seen += len(lines)
        input_prefixes = plan.prefixes(prefixes) if prefixes is not None else None
        input_constraints = None
        if constraints is not None:
            input_constraints = sentence_constraints(plan, constraints, self.glossary)
        html = self.text_format == "html"  # inline markup is placed by the word alignment
        record = (record_attention or html) if self.engine.records_attention else record_attention
        results = self.engine.translate(plan.inputs, input_prefixes, search, record, input_constraints)
        return plan.assemble(results)
