"""Scores of hypotheses against references: sacreBLEU's BLEU, chrF and TER with the signatures that make them
comparable, the paper's tokenized BLEU with compound splitting, and paired bootstrap significance between systems.

The paper's procedure. Vaswani et al. (2017) report BLEU as computed by tensor2tensor's `get_ende_bleu.sh`: both the
hypotheses and the references are tokenized with Moses' `tokenizer.perl -l LANG` (its default escaping of
`& | < > ' " [ ]` included), hyphenated compounds are split the way GNMT and ConvS2S did (`s{(\\S)-(\\S)}{$1 ##AT##-##AT##
$2}g`: "Pre-Trainings-Daten" becomes "Pre ##AT##-##AT## Trainings-Daten", non-overlapping left to right, exactly as
Perl's substitution), and `multi-bleu.perl` scores the result as whitespace-separated tokens, case-sensitive. Here
sacremoses does the tokenization and sacreBLEU, with its tokenizer turned off, the counting. That figure depends on
the tokenization and is only comparable with figures made the same way; detokenized sacreBLEU, printed beside it,
is the one to compare across papers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from sacrebleu.metrics import BLEU, CHRF, TER

from nmt.errors import NmtError
from nmt.terminology import Glossary, TermAccuracy, term_accuracy

METRICS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}
PAPER_LABEL = "tokenized BLEU as in the paper (Moses tokenizer, ##AT## compound splitting)"
_COMPOUND = re.compile(r"(\S)-(\S)")


@dataclass
class Score:
    metric: str
    score: float
    signature: str
    text: str  # sacreBLEU's own one-line rendering, e.g. "BLEU = 34.12 66.1/41.9/28.4/19.2 (BP = ...)"


def check_streams(hypotheses: list[str], references: list[list[str]]) -> None:
    if not references:
        raise NmtError("no reference given (--ref FILE)")
    for number, stream in enumerate(references, start=1):
        if len(stream) != len(hypotheses):
            raise NmtError(f"{len(hypotheses)} hypotheses but reference {number} has {len(stream)} lines")
    if not hypotheses:
        raise NmtError("nothing to score: the hypotheses and the references are empty")


def make_metric(name: str):
    """sacreBLEU's metric object for bleu, chrf or ter (its default settings: what the signatures record)."""
    if name not in METRICS:
        raise NmtError(f"--metrics: unknown {name} (choose from {', '.join(METRICS)})")
    return METRICS[name]()


def score(hypotheses: list[str], references: list[list[str]], metrics: list[str]) -> list[Score]:
    """Corpus-level scores. `references` is a list of reference streams, each as long as `hypotheses`."""
    check_streams(hypotheses, references)
    results = []
    for name in metrics:
        metric = make_metric(name)
        corpus_score = metric.corpus_score(hypotheses, references)
        results.append(Score(name, round(corpus_score.score, 2), str(metric.get_signature()),
                             corpus_score.format()))
    return results


def split_compounds(tokenized: str) -> str:
    """The ##AT##-##AT## split of hyphenated compounds (the Perl `s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g`)."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", tokenized)


class PaperTokenizer:
    """Moses tokenization with escaping, as `tokenizer.perl -l LANG`, then the compound split."""

    def __init__(self, lang: str):
        from sacremoses import MosesTokenizer

        self.lang = lang
        self.moses = MosesTokenizer(lang=lang)

    def __call__(self, line: str) -> str:
        return split_compounds(self.moses.tokenize(line, escape=True, return_str=True))


def paper_bleu(hypotheses: list[str], references: list[list[str]], lang: str) -> Score:
    """The paper's tokenized, compound-split BLEU (see the module's docstring)."""
    check_streams(hypotheses, references)
    tokenize = PaperTokenizer(lang)
    metric = BLEU(tokenize="none", force=True)
    corpus_score = metric.corpus_score([tokenize(line) for line in hypotheses],
                                       [[tokenize(line) for line in stream] for stream in references])
    signature = f"moses-{lang}-escape+atat|{metric.get_signature()}"
    return Score("paper_bleu", round(corpus_score.score, 2), signature, corpus_score.format())


@dataclass
class Comparison:
    system: str
    metric: str
    score: float
    mean: float  # of the bootstrap resamples
    ci: float  # half-width of the 95% confidence interval around the mean
    p_value: float | None  # None for the baseline


def paired_bootstrap(systems: list[tuple[str, list[str]]], references: list[list[str]], metrics: list[str],
                     samples: int = 1000) -> tuple[list[Comparison], dict[str, str]]:
    """sacreBLEU's paired bootstrap resampling (Koehn, 2004): every system against the first, the baseline.

    Returns one Comparison per system and metric, and each metric's signature (which records the seed and the
    number of resamples; SACREBLEU_SEED changes the seed as for sacrebleu itself).
    """
    from sacrebleu.significance import PairedTest

    if len(systems) < 2:
        raise NmtError("--paired-bs compares systems: give the baseline and at least one more --hyp")
    for _, hypotheses in systems:
        check_streams(hypotheses, references)
    test = PairedTest(systems, {name: make_metric(name) for name in metrics}, references, test_type="bs",
                      n_samples=samples)
    signatures, table = test()
    names = table.pop("System")
    comparisons = [Comparison(names[row], metric, round(result.score, 2), round(result.mean, 2),
                              round(result.ci, 2), None if row == 0 else round(result.p_value, 4))
                   for metric, results in table.items() for row, result in enumerate(results)]
    return comparisons, {metric: str(signature) for metric, signature in signatures.items()}


def language_of(reference: Path) -> str:
    """The reference file's extension as a Moses language code (newstest2014.de -> de), else English."""
    suffix = reference.suffix[1:] if reference.suffix != ".gz" else Path(reference.stem).suffix[1:]
    return suffix.lower() if len(suffix) == 2 and suffix.isalpha() else "en"


@dataclass
class SystemScores:
    name: str  # the hypotheses' file, or "stdin"
    results: list[Score]
    terms: TermAccuracy | None = None


@dataclass
class ScoreReport:
    """What `nmt score` prints, as text (`text()`) or one JSON object (`json()`)."""

    systems: list[SystemScores]
    paper: bool = False
    reference_terms: TermAccuracy | None = None
    paired_bs_n: int = 0  # resamples of the paired bootstrap (0: none)
    comparisons: list[Comparison] = field(default_factory=list)
    signatures: dict[str, str] = field(default_factory=dict)  # of the paired bootstrap, per metric

    def json(self) -> str:
        report: dict[str, dict] = {}
        for system in self.systems:
            report[system.name] = {r.metric: {"score": r.score, "signature": r.signature} for r in system.results}
            if system.terms is not None:
                report[system.name]["term_accuracy"] = {
                    "score": round(system.terms.score, 2), "found": system.terms.found, "total": system.terms.total,
                    "reference": round(self.reference_terms.score, 2), "reference_found": self.reference_terms.found}
        output: dict = report[self.systems[0].name] if len(self.systems) == 1 else {"systems": report}
        if self.paired_bs_n:
            output["paired_bs"] = [vars(c) for c in self.comparisons]
        return json.dumps(output)

    def text(self) -> str:
        lines = []
        for system in self.systems:
            if len(self.systems) > 1:
                lines.append(f"{system.name}:")
            for result in system.results:
                label = f"{PAPER_LABEL}: " if result.metric == "paper_bleu" else ""
                if result.metric == "bleu" and self.paper:
                    label = "detokenized sacreBLEU: "
                lines += [f"{label}{result.text}", f"  signature: {result.signature}"]
            if system.terms is not None:
                found, reference = system.terms, self.reference_terms
                lines.append(f"term accuracy = {found.score:.2f} ({found.found} of {found.total} source-term "
                             f"occurrences have their target term; the reference: {reference.score:.2f}, "
                             f"{reference.found} of {reference.total})")
        if self.paired_bs_n:
            lines.append(f"paired bootstrap resampling ({self.paired_bs_n} resamples), against "
                         f"{self.systems[0].name}:")
            for c in self.comparisons:
                verdict = "baseline" if c.p_value is None else f"p = {c.p_value:.4f}" + (
                    " (significant at 0.05)" if c.p_value < 0.05 else "")
                lines.append(f"  {c.metric:6} {c.system}: {c.score:.2f} (mean {c.mean:.2f} +- {c.ci:.2f}) {verdict}")
            lines += [f"  {metric} signature: {signature}" for metric, signature in self.signatures.items()]
        return "\n".join(lines) + "\n"


def score_systems(systems: list[tuple[str, list[str]]], references: list[list[str]], metrics: list[str],
                  paper_lang: str | None = None, glossary: Glossary | None = None, sources: list[str] | None = None,
                  paired_bs_n: int = 0) -> ScoreReport:
    """Every system (name, hypotheses) scored against the references with `metrics`; `paper_lang`: also the paper's
    tokenized BLEU with that Moses language; `glossary` with `sources`: term accuracy of each system and of the
    first reference; `paired_bs_n`: paired bootstrap resampling of every system against the first."""
    if sources is not None and len(sources) != len(references[0]):
        raise NmtError(f"--source has {len(sources)} lines but the reference has {len(references[0])}")
    report = ScoreReport([], paper=paper_lang is not None, paired_bs_n=paired_bs_n)
    if glossary is not None:
        report.reference_terms = term_accuracy(glossary, sources, references[0])
    for name, hypotheses in systems:
        results = score(hypotheses, references, metrics)
        if paper_lang is not None:
            results.append(paper_bleu(hypotheses, references, paper_lang))
        terms = term_accuracy(glossary, sources, hypotheses) if glossary is not None else None
        report.systems.append(SystemScores(name, results, terms))
    if paired_bs_n:
        report.comparisons, report.signatures = paired_bootstrap(systems, references, metrics, paired_bs_n)
    return report
