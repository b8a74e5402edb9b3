"""Constrained decoding on Multi30k test_2016_flickr: term use, BLEU and speed against unconstrained decoding.

Constraints come from the references the usual way (Post & Vilar 2018; Hu et al. 2019): decode every sentence
unconstrained, then for each sentence draw one or two reference phrases of one or two words that the unconstrained
output misses (seeded). Sentences whose output already has every reference word get none and are left out of the
constrained set. On that set the script decodes

- unconstrained and constrained, each timed as one `Translator.translate` call (batches of --max-tokens source
  tokens, sorted by length inside), the better of --repeats runs, in the same process and run;
- term use: the share of constraint phrases found in the constrained output (on word boundaries);
- BLEU (sacreBLEU) of both against the references; and peak RSS.

    python benchmarks/terminology.py --checkpoint CHECKPOINT [--threads 2] [--repeats 3] [--beam 4]

Figures go to benchmarks/results/terminology.json (one record per run, appended).
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import resource
import time
from pathlib import Path

from decode_breakdown import cpu_model  # a sibling script: benchmarks/ is on the path when run

REPO = Path(__file__).resolve().parents[1]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
RESULTS = REPO / "benchmarks" / "results" / "terminology.json"
WORD = re.compile(r"\w[\w'-]*")


def read(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        return [line.rstrip("\n") for line in stream]


def draw_constraints(reference: str, hypothesis: str, rng: random.Random) -> list[str]:
    """One or two phrases of one or two reference words, each starting with a word the hypothesis lacks."""
    words = WORD.findall(reference)
    have = set(WORD.findall(hypothesis))
    starts = [i for i, word in enumerate(words) if word not in have]
    rng.shuffle(starts)
    phrases: list[str] = []
    used: set[int] = set()
    for start in starts[: rng.choice((1, 2))]:
        span = 2 if start + 1 < len(words) and rng.random() < 0.5 else 1
        if used & set(range(start, start + span)):
            continue
        used.update(range(start, start + span))
        phrases.append(" ".join(words[start: start + span]))
    return phrases


def contains(text: str, phrase: str) -> bool:
    """On word boundaries, as `nmt score --terms` looks terms up."""
    from nmt.terminology import term_pattern

    return term_pattern([phrase]).search(text) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--lenpen", type=float, default=0.6)
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N test sentences.")
    args = parser.parse_args()

    import sacrebleu
    import torch

    from nmt.config import SearchConfig
    from nmt.engines.pytorch import Translator

    torch.set_num_threads(args.threads)
    sources = read(MULTI30K / "test_2016_flickr.en.gz")[: args.limit]
    references = read(MULTI30K / "test_2016_flickr.de.gz")[: args.limit]
    translator = Translator(args.checkpoint, SearchConfig(beam=args.beam, lenpen=args.lenpen), "cpu",
                            args.max_tokens)
    translator.translate(sources[:50])  # warm up

    def timed(lines, constraints=None):
        best, outputs = float("inf"), None
        for _ in range(args.repeats):
            started = time.perf_counter()
            outputs = [t[0].text for t in translator.translate(lines, constraints=constraints)]
            best = min(best, time.perf_counter() - started)
        return outputs, best

    unconstrained_all, _ = timed(sources)
    rng = random.Random(args.seed)
    drawn = [draw_constraints(r, h, rng) for r, h in zip(references, unconstrained_all)]
    chosen = [i for i, phrases in enumerate(drawn) if phrases]
    lines = [sources[i] for i in chosen]
    constraints = [drawn[i] for i in chosen]
    refs = [references[i] for i in chosen]

    plain, plain_s = timed(lines)
    constrained, constrained_s = timed(lines, constraints)
    phrases = sum(len(c) for c in constraints)
    used = sum(contains(output, phrase) for output, c in zip(constrained, constraints) for phrase in c)
    bleu_plain = sacrebleu.corpus_bleu(plain, [refs]).score
    bleu_constrained = sacrebleu.corpus_bleu(constrained, [refs]).score
    record = {
        "checkpoint": str(args.checkpoint), "cpu": cpu_model(),
        "threads": args.threads, "beam": args.beam, "lenpen": args.lenpen, "max_tokens": args.max_tokens,
        "sentences": len(lines), "of": len(sources), "phrases": phrases,
        "term_use_percent": round(100.0 * used / phrases, 2),
        "bleu_unconstrained": round(bleu_plain, 2), "bleu_constrained": round(bleu_constrained, 2),
        "unconstrained_sentences_per_s": round(len(lines) / plain_s, 1),
        "constrained_sentences_per_s": round(len(lines) / constrained_s, 1),
        "speed_ratio": round(plain_s / constrained_s, 3),
        "largest_beam": max(translator.grown_beam, args.beam),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(json.dumps(record, indent=1))
    missed = [(i, p) for i, (o, c) in enumerate(zip(constrained, constraints)) for p in c if not contains(o, p)]
    for index, phrase in missed[:10]:
        print(f"missed: {phrase!r} in {constrained[index]!r}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps(runs + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
