"""Search settings chosen on the valid split: `nmt tune CHECKPOINT DATA_DIR`.

A grid over the length penalty alpha (and the beam size, when several are given) is decoded on the valid split, and
the setting with the best sacreBLEU is stored in the checkpoint under `search`: the beam, alpha and its style (the
paper's GNMT penalty), and the best alpha of the |Y|^alpha style as well, the only one CTranslate2 and Hugging Face
implement, for the exports to carry. `nmt translate` (and what serves a checkpoint) decodes with the stored settings
unless an option overrides them. Only the valid split is read: the test split stays untouched until the final
score.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import sacrebleu

from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.config import SearchConfig
from nmt.data.binary import load_manifest
from nmt.data.text import read_lines
from nmt.errors import NmtError
from nmt.ranges import field_range
from nmt.engines.pytorch import Translator

STYLES = ("gnmt", "length")


@dataclass
class TrialResult:
    beam: int
    lenpen: float
    lenpen_style: str
    bleu: float
    brevity_penalty: float


def valid_split(data_dir: Path) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """The valid split's source lines and references, as `nmt prepare` kept them, and the rows of each pair (one
    range for a dataset of one pair); a multilingual dataset's sources start with their pair's language token."""
    manifest = load_manifest(data_dir)
    text = manifest["splits"].get("valid", {}).get("text") if isinstance(manifest["splits"], dict) else None
    if not isinstance(text, dict) or "src" not in text or "tgt" not in text:
        raise NmtError(f"{data_dir}: the manifest names no valid split text to tune on")
    sources = list(read_lines(Path(data_dir) / text["src"]))
    references = list(read_lines(Path(data_dir) / text["tgt"]))
    if not sources or len(sources) != len(references):
        raise NmtError(f"{data_dir}: the valid split's text is empty or its sides differ in length")
    groups = [(0, len(sources))]
    if manifest.get("pairs"):
        groups = [tuple(pair["rows"]["valid"]) for pair in manifest["pairs"]]
        for pair, (start, end) in zip(manifest["pairs"], groups):
            sources[start:end] = [f"{pair['token']} {line}" for line in sources[start:end]]
    return sources, references, groups


def mean_bleu(hypotheses: list[str], references: list[str], groups: list[tuple[int, int]]) -> tuple[float, float]:
    """sacreBLEU and its brevity penalty, over each group of rows (pair) on its own, then their mean."""
    scores = [sacrebleu.corpus_bleu(hypotheses[start:end], [references[start:end]]) for start, end in groups]
    return sum(s.score for s in scores) / len(scores), sum(s.bp for s in scores) / len(scores)


def tune(checkpoint: Path, data_dir: Path, lenpens: list[float], beams: list[int], max_tokens: int = 6000,
         device: str | None = None, progress=lambda result: None) -> list[TrialResult]:
    """Decode the valid split with every (beam, alpha, style) of the grid; the results in grid order."""
    sources, references, groups = valid_split(data_dir)
    translator = Translator(checkpoint, device=device, max_tokens=max_tokens)
    results = []
    for beam in beams:
        for style in STYLES:
            for lenpen in lenpens:
                translator.search = replace(SearchConfig(), beam=beam, lenpen=lenpen, lenpen_style=style)
                translator.search.validate()
                hypotheses = [hyps[0].text for hyps in translator.translate(sources)]
                bleu, brevity = mean_bleu(hypotheses, references, groups)  # of the pairs, each counted alike
                results.append(TrialResult(beam, lenpen, style, round(bleu, 2), round(brevity, 3)))
                progress(results[-1])
    return results


def best_settings(results: list[TrialResult]) -> dict:
    """The checkpoint's `search` entry: the best setting of the GNMT style, and the best alpha of the length style
    (for exports), each the first of equal scores in grid order."""
    def best(style: str) -> TrialResult:
        return max((r for r in results if r.lenpen_style == style), key=lambda r: r.bleu)

    gnmt, length = best("gnmt"), best("length")
    return {"beam": gnmt.beam, "lenpen": gnmt.lenpen, "lenpen_style": "gnmt", "valid_bleu": gnmt.bleu,
            "length_style": {"beam": length.beam, "lenpen": length.lenpen, "valid_bleu": length.bleu},
            "tuned_on": "valid"}


def store_settings(checkpoint: Path, settings: dict) -> None:
    """Rewrite the checkpoint (atomically) with `settings` as its search defaults."""
    payload = load_checkpoint(checkpoint)
    payload["search"] = settings
    save_checkpoint(payload, checkpoint)


def parse_grid(lenpens: str, beams: str) -> tuple[list[float], list[int]]:
    """`nmt tune --lenpen 0.2,0.6 --beam 4,8` as the lists to try, each value in the range `nmt translate` takes."""
    alphas = _number_list(lenpens, float, "--lenpen")
    beam_sizes = _number_list(beams, int, "--beam")
    for option, values, field in (("--lenpen", alphas, "lenpen"), ("--beam", beam_sizes, "beam")):
        limits = field_range(SearchConfig, field)
        for value in values:
            if not limits.holds(value):
                raise NmtError(f"{option}: each value must be {limits.describe()}, got {value}")
    return alphas, beam_sizes


def _number_list(text: str, kind, option: str) -> list:
    try:
        values = [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise NmtError(f"{option}: a comma-separated list of numbers, got {text!r}") from None
    if not values:
        raise NmtError(f"{option}: give at least one value")
    return values
