"""Many documents as one list of sentences for the model, and the model's answers as documents again.

A plan flattens the sentences of every document (texts or HTML) into the inputs a sentence-level engine takes, with
each sentence too long for the model cut into parts that fit; `assemble` joins each document's translated sentences
back into one Translation per alternative. `nmt translate` hands the inputs to its engine in one call; `nmt serve`
queues them like any other sentences, so one long document is spread over the batches."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from nmt.documents.sentences import cut_to_fit
from nmt.engines.base import Translation


class Document(Protocol):
    """Something with sentences to translate, put back together from their translations."""

    sentences: list[str]

    def assemble(self, translations: list[Translation]) -> str:
        """The document with each sentence replaced by its translation (in order)."""
        ...


@dataclass
class DocumentPlan:
    """`inputs`: what the engine translates; `parts[d][s]`: the input positions of document d's sentence s (one, or
    several where it was cut)."""

    documents: list[Document]
    inputs: list[str] = field(default_factory=list)
    parts: list[list[list[int]]] = field(default_factory=list)

    @classmethod
    def of(cls, documents: list[Document], count_pieces: Callable[[str], int], limit: int) -> DocumentPlan:
        """The plan of `documents`, every input at most `limit` source pieces as `count_pieces` counts them."""
        plan = cls(documents)
        for document in documents:
            positions = []
            for sentence in document.sentences:
                pieces = cut_to_fit(sentence, count_pieces, limit)
                positions.append(list(range(len(plan.inputs), len(plan.inputs) + len(pieces))))
                plan.inputs += pieces
            plan.parts.append(positions)
        return plan

    @property
    def cut(self) -> list[int]:
        """How many of each document's sentences were cut into parts."""
        return [_cut(positions) for positions in self.parts]

    def prefixes(self, per_document: list[str]) -> list[str]:
        """Each input's forced prefix: a document's starts its first sentence; the others have none."""
        per_input = [""] * len(self.inputs)
        for positions, prefix in zip(self.parts, per_document):
            if positions:
                per_input[positions[0][0]] = prefix
        return per_input

    def assemble(self, results: list[list[Translation]]) -> list[list[Translation]]:
        """Each document's n-best (as many alternatives as its sentences' longest n-best; a sentence with fewer
        repeats its last), from the n-best of every input."""
        answers = []
        for document, positions in zip(self.documents, self.parts):
            alternatives = max((len(results[p]) for sentence in positions for p in sentence), default=1)
            answers.append([self._document(document, positions, results, k) for k in range(alternatives)])
        return answers

    @staticmethod
    def _document(document: Document, positions: list[list[int]], results: list[list[Translation]],
                  k: int) -> Translation:
        if not positions:  # nothing to translate: the text as it was (its spaces; an HTML document's markup)
            return Translation(document.assemble([]), 0.0, [])
        sentences = [dataclasses.replace(merge([results[p][min(k, len(results[p]) - 1)] for p in parts], " "),
                                         source=source) for parts, source in zip(positions, document.sentences)]
        merged = merge(sentences, " ")
        return dataclasses.replace(merged, text=document.assemble(sentences), sentences=sentences,
                                   cut=_cut(positions))


def _cut(positions: list[list[int]]) -> int:
    return sum(len(parts) > 1 for parts in positions)


def merge(translations: list[Translation], separator: str) -> Translation:
    """Consecutive translations as one: texts joined, pieces concatenated, alignments shifted, the score the mean
    over target pieces (the attention only where there is one translation)."""
    if len(translations) == 1:
        return translations[0]
    tokens, source_tokens, alignment = [], [], []
    aligned = all(t.alignment is not None for t in translations)
    weighted, weights = 0.0, 0
    for translation in translations:
        if aligned:
            alignment += [(s + len(source_tokens), t + len(tokens)) for s, t in translation.alignment]
        tokens += translation.tokens
        source_tokens += translation.source_tokens
        weight = len(translation.tokens) + 1  # the eos the score also counts
        weighted += translation.score * weight if math.isfinite(translation.score) else -math.inf
        weights += weight
    return Translation(separator.join(t.text for t in translations), weighted / weights if weights else 0.0,
                       tokens, source_tokens, None, alignment if aligned else None)
