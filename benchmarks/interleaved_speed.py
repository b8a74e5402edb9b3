"""Sentences/s of several CTranslate2 models timed in turn, in one process: the ratio between models on a machine
whose speed drifts.

`translate_speed.py` times each model in its own process, one after another; on a shared VM whose speed moves by
10-20 % within minutes, the ratio of two such figures carries that drift. Here every round translates the test set
once with each model in turn (beam 4, |Y|^0.6, 2 threads, int8, as `translate_speed.py`), and the median of the
rounds is reported.

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
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    import torch

    from nmt.config import SearchConfig
    from nmt.engines.ctranslate2 import CTranslate2Translator

    torch.set_num_threads(THREADS)
    if args.source is not None:
        lines = args.source.read_text(encoding="utf-8").splitlines()
    else:
        with gzip.open(MULTI30K / "test_2016_flickr.en.gz", "rt", encoding="utf-8") as test:
            lines = test.read().splitlines()
    search = SearchConfig(**SEARCH)
    models = dict(spec.split("=", 1) for spec in args.model)
    engines = {name: CTranslate2Translator(Path(path), search, "cpu", 6000, "int8", THREADS)
               for name, path in models.items()}
    for engine in engines.values():
        engine.translate(lines[:50])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, engine in engines.items():
            started = time.perf_counter()
            engine.translate(lines)
            seconds[name].append(time.perf_counter() - started)
    rate = {name: round(len(lines) / statistics.median(times), 1) for name, times in seconds.items()}
    reference = next(iter(rate))
    result = {"benchmark": "CTranslate2 int8, beam 4, 2 threads, models timed in turn", "sentences": len(lines),
              "rounds": args.rounds, "models": models, "sentences_per_s": rate,
              f"ratio_over_{reference}": {name: round(value / rate[reference], 2) for name, value in rate.items()},
              "seconds": {name: [round(t, 2) for t in times] for name, times in seconds.items()}}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
