"""Terminology: constraint files, glossaries, the checks a line's constraints must pass, and term accuracy.

- A constraints file has a line per input line: target phrases separated by tabs (an empty line: none).
- A glossary is a TSV of `source term<TAB>target term` pairs. Where an input line contains a source term, matched
  on word boundaries with the case as given, its target term becomes a constraint of that line.
- Term accuracy: of the glossary's source-term occurrences, the share whose target term appears in the output (the
  same word-boundary match), as a terminology test set reports it.

The search that honours the constraints is `nmt.search.lexical`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from nmt.data.text import check_input_file, normalize, read_text_lines
from nmt.errors import NmtError


class ConstraintError(NmtError):
    """A line whose constraints cannot be honoured; `index` is the line's position in the call that raised it, so
    that callers reading files can name the file and line."""

    def __init__(self, index: int, message: str):
        super().__init__(message)
        self.index, self.message = index, message


def term_pattern(terms: Iterable[str]) -> re.Pattern:
    """Any of `terms` between word boundaries, the longest first where two start at the same place."""
    alternatives = "|".join(re.escape(term) for term in sorted(set(terms), key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


@dataclass
class Glossary:
    """Source term -> target term, read from a TSV (`Glossary.load`)."""

    terms: dict[str, str]

    def __post_init__(self):
        self._pattern = term_pattern(self.terms) if self.terms else None

    @classmethod
    def load(cls, path: Path) -> "Glossary":
        """Read a glossary TSV (`source term<TAB>target term` a line; `#` comments and blank lines skipped), checked:
        a bad line is one error naming the file and line."""
        terms: dict[str, str] = {}
        first_line: dict[str, int] = {}
        check_input_file(path)
        with open(path, "rb") as stream:
            for number, line in enumerate(read_text_lines(stream, str(path)), start=1):
                if number == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark, as editors on Windows save UTF-8
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.split("\t")
                if len(fields) != 2:
                    raise NmtError(f"{path}:{number}: expected `source term<TAB>target term`, found "
                                   + ("no tab" if len(fields) == 1 else f"{len(fields)} tab-separated fields"))
                source, target = (normalize(field) for field in fields)
                if not source or not target:
                    raise NmtError(f"{path}:{number}: empty {'source' if not source else 'target'} term")
                if source in terms and terms[source] != target:
                    raise NmtError(f"{path}:{number}: {source!r} is already given as {terms[source]!r} on line "
                                   f"{first_line[source]}")
                terms.setdefault(source, target)
                first_line.setdefault(source, number)
        if not terms:
            raise NmtError(f"{path}: no terms (expected lines of `source term<TAB>target term`)")
        return cls(terms)

    def occurrences(self, source: str) -> dict[str, int]:
        """Each source term found in `source` (word boundaries, case as given) -> how often."""
        counts: dict[str, int] = {}
        for match in self._pattern.finditer(source) if self._pattern else ():
            counts[match.group(0)] = counts.get(match.group(0), 0) + 1
        return counts

    def constraints(self, source: str) -> list[str]:
        """The target terms `source` calls for, in the order their source terms appear, each once."""
        return list(dict.fromkeys(self.terms[term] for term in self.occurrences(source)))


def read_constraints(path: Path) -> Iterator[list[str]]:
    """A constraints file, a list of phrases per line; an empty term (two tabs together, a tab at an end) is an
    error naming the file and line."""
    check_input_file(path)
    with open(path, "rb") as stream:
        for number, line in enumerate(read_text_lines(stream, str(path)), start=1):
            if not line.strip():
                yield []
                continue
            phrases = [normalize(field) for field in line.split("\t")]
            if not all(phrases):
                raise NmtError(f"{path}:{number}: an empty constraint (tabs separate phrases; nothing may lie "
                               "between two tabs or beside a tab at the line's ends)")
            yield phrases


class ConstraintSource:
    """Each input line's constraints, from a constraints file, a glossary, or both (the file's phrases first),
    aligned with the input as it streams."""

    def __init__(self, constraints_file: Path | None, glossary: Glossary | None):
        if constraints_file is not None:
            check_input_file(constraints_file)  # now, before a model loads
        self.constraints_file = constraints_file
        self.glossary = glossary
        self._lines = read_constraints(constraints_file) if constraints_file else None
        self.read = 0

    def next_for(self, source: str) -> list[str]:
        phrases: list[str] = []
        if self._lines is not None:
            given = next(self._lines, None)
            if given is None:
                raise NmtError(f"{self.constraints_file} has fewer lines than the input ({self.read} against "
                               f"{self.read + 1} or more)")
            phrases = given
        self.read += 1
        if self.glossary is not None:
            phrases = list(dict.fromkeys(phrases + self.glossary.constraints(normalize(source))))
        return phrases

    def check_finished(self) -> None:
        if self._lines is not None and next(self._lines, None) is not None:
            raise NmtError(f"{self.constraints_file} has more lines than the input ({self.read})")

    def where(self, line: int) -> str:
        """How an error about input line `line` (from 1) names it."""
        if self.constraints_file is not None:
            return f"{self.constraints_file}:{line}"
        return f"input line {line} (its glossary terms)"


def repeated_ngram(phrases: list[list[int]], n: int) -> tuple[int, ...] | None:
    """An n-gram of pieces that occurs twice among `phrases`: an output holding them all would repeat it, which
    --no-repeat-ngram-size n forbids."""
    seen: set[tuple[int, ...]] = set()
    for pieces in phrases:
        for start in range(len(pieces) - n + 1):
            ngram = tuple(pieces[start: start + n])
            if ngram in seen:
                return ngram
            seen.add(ngram)
    return None


@dataclass
class TermAccuracy:
    found: int  # source-term occurrences whose target term the text holds
    total: int  # source-term occurrences

    @property
    def score(self) -> float:
        return 100.0 * self.found / self.total if self.total else 100.0


def term_accuracy(glossary: Glossary, sources: list[str], outputs: list[str]) -> TermAccuracy:
    """Of the glossary's source-term occurrences in `sources`, how many have their target term in the output line
    (a term twice in a source needs its target twice)."""
    if len(sources) != len(outputs):
        raise NmtError(f"--source has {len(sources)} lines but the text scored has {len(outputs)}")
    found = total = 0
    patterns: dict[str, re.Pattern] = {}
    for source, output in zip(sources, outputs):
        for term, count in glossary.occurrences(normalize(source)).items():
            target = glossary.terms[term]
            pattern = patterns.setdefault(target, term_pattern([target]))
            found += min(count, len(pattern.findall(normalize(output))))
            total += count
    return TermAccuracy(found, total)
