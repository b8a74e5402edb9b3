"""Sentences/s of several CTranslate2 models timed in turn, in one process: the ratio between models on a machine
whose speed drifts.

`translate_speed.py` times each model in its own process, one after another; on a shared VM whose speed moves by
10-20 % within minutes, the ratio of two such figures carries that drift. Here every round translates the test set
once with each model in turn (beam 4, |Y|^0.6, 2 threads, int8, as `translate_speed.py`), and the median of the
rounds is reported, with each model's BLEU against the references. A folder exported with `--shortlist` decodes with
its shortlist, as the engine always does.

    python benchmarks/interleaved_speed.py --model teacher=CT2_DIR --model student=CT2_DIR --rounds 7 \\
        --output results/x.json

The first --model is the reference the ratios are taken against.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import time
from pathlib import Path

from translate_speed import MULTI30K, SEARCH, THREADS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="NAME=DIR of a CTranslate2 export.")
    parser.add_argument("--source", type=Path, default=None, help="Sentences to translate (test_2016_flickr.en).")
    parser.add_argument("--reference", type=Path, default=None, help="Their translations (test_2016_flickr.de).")
    parser.add_argument("--max-tokens", type=int, default=6000, help="Source tokens per batch.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    import sacrebleu
    import torch

    from nmt.config import SearchConfig
    from nmt.engines.ctranslate2 import CTranslate2Translator

    torch.set_num_threads(THREADS)
    lines, references = (read(args.source, "test_2016_flickr.en.gz"), read(args.reference, "test_2016_flickr.de.gz"))
    search = SearchConfig(**SEARCH)
    models = dict(spec.split("=", 1) for spec in args.model)
    engines = {name: CTranslate2Translator(Path(path), search, "cpu", args.max_tokens, "int8", THREADS)
               for name, path in models.items()}
    for engine in engines.values():
        engine.translate(lines[:50])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    outputs = {}
    for _ in range(args.rounds):
        for name, engine in engines.items():
            started = time.perf_counter()
            outputs[name] = engine.translate(lines)
            seconds[name].append(time.perf_counter() - started)
    bleu = {name: round(sacrebleu.corpus_bleu([t[0].text for t in translated], [references]).score, 2)
            for name, translated in outputs.items()}  # each round translates alike: the last one is scored
    rate = {name: round(len(lines) / statistics.median(times), 1) for name, times in seconds.items()}
    reference = next(iter(rate))
    result = {"benchmark": "CTranslate2 int8, beam 4, 2 threads, models timed in turn", "sentences": len(lines),
              "rounds": args.rounds, "max_tokens": args.max_tokens, "models": models, "sentences_per_s": rate,
              "bleu": bleu, "shortlist": {name: engine.shortlist for name, engine in engines.items()},
              f"ratio_over_{reference}": {name: round(value / rate[reference], 2) for name, value in rate.items()},
              "seconds": {name: [round(t, 2) for t in times] for name, times in seconds.items()}}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


def read(path: Path | None, multi30k_file: str) -> list[str]:
    if path is not None:
        return path.read_text(encoding="utf-8").splitlines()
    with gzip.open(MULTI30K / multi30k_file, "rt", encoding="utf-8") as test:
        return test.read().splitlines()


if __name__ == "__main__":
    main()
