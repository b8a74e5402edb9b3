"""sacreBLEU's BLEU, chrF and TER of hypotheses against references, with the signatures that make them comparable."""

from __future__ import annotations

from dataclasses import dataclass

from sacrebleu.metrics import BLEU, CHRF, TER

from nmt.errors import NmtError

METRICS = {"bleu": BLEU, "chrf": CHRF, "ter": TER}


@dataclass
class Score:
    metric: str
    score: float
    signature: str
    text: str  # sacreBLEU's own one-line rendering, e.g. "BLEU = 34.12 66.1/41.9/28.4/19.2 (BP = ...)"


def score(hypotheses: list[str], references: list[list[str]], metrics: list[str]) -> list[Score]:
    """Corpus-level scores. `references` is a list of reference streams, each as long as `hypotheses`."""
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise NmtError(f"--metrics: unknown {', '.join(unknown)} (choose from {', '.join(METRICS)})")
    for number, stream in enumerate(references, start=1):
        if len(stream) != len(hypotheses):
            raise NmtError(f"{len(hypotheses)} hypotheses but reference {number} has {len(stream)} lines")
    results = []
    for name in metrics:
        metric = METRICS[name]()
        corpus_score = metric.corpus_score(hypotheses, references)
        results.append(Score(name, round(corpus_score.score, 2), str(metric.get_signature()),
                             corpus_score.format()))
    return results
