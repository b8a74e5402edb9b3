"""Forced-scoring speed (`nmt logprob`): pairs/s and target tokens/s on this machine's CPU.

Multi30k en-de, the first --pairs training pairs (source and reference), scored by transformer_small and
transformer_base. The cost of teacher-forced scoring does not depend on what the weights are, so the models are
freshly initialized (no training needed); each runs in its own process (its own peak RSS): load, score 200 pairs to
warm up, then all the pairs once per repeat (the median is reported), batches of --max-tokens tokens, 2 threads.

    python benchmarks/forced_scoring.py [--pairs 10000] [--repeats 3]     # results/forced_scoring.json

Needs ../shared/data/multi30k (the Multi30k mirror).
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from flops import cpu_bf16_support  # noqa: E402
from translate_speed import MULTI30K, THREADS, environment, prepare  # noqa: E402

ARCHS = ("transformer_small", "transformer_base")


def make_checkpoint(data: Path, arch: str, out: Path) -> Path:
    """A freshly initialized model of `arch` over the data's vocabulary, saved as a checkpoint."""
    import torch

    from nmt.checkpoint import make_payload, save_checkpoint
    from nmt.config import preset, replace_fields
    from nmt.model.transformer import build_model
    from nmt.vocab import Vocab

    vocab = Vocab.from_file(data / "spm.model")
    torch.manual_seed(1)
    model = build_model(replace_fields(preset(arch).model, {"vocab_size": len(vocab)}))
    save_checkpoint(make_payload(model, vocab, None, "en", "de", 0, 0), out)
    return out


def read_pairs(count: int) -> tuple[list[str], list[str]]:
    sides = []
    for lang in ("en", "de"):
        with gzip.open(MULTI30K / f"train.{lang}.gz", "rt", encoding="utf-8") as handle:
            sides.append([line.rstrip("\n") for _, line in zip(range(count), handle)])
    return sides[0], sides[1]


def worker(checkpoint: Path, pairs: int, repeats: int, max_tokens: int) -> dict:
    import torch

    from nmt.logprob import ForcedScorer

    torch.set_num_threads(THREADS)
    sources, targets = read_pairs(pairs)
    scorer = ForcedScorer(checkpoint, "cpu", max_tokens)
    scorer.score(sources[:200], targets[:200])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        results = scorer.score(sources, targets)
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times)
    target_tokens = sum(len(r.pieces) for r in results)
    return {"pairs": pairs, "seconds": [round(t, 2) for t in times], "pairs_per_s": round(pairs / seconds, 1),
            "target_tokens_per_s": round(target_tokens / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "forced_scoring")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.pairs, args.repeats, args.max_tokens)))
        return
    if not MULTI30K.is_dir():
        sys.exit(f"{MULTI30K} is absent: this benchmark reads the Multi30k mirror")
    data = prepare(args.work)
    figures = {}
    for arch in ARCHS:
        checkpoint = make_checkpoint(data, arch, args.work / f"{arch}.pt")
        output = subprocess.run([sys.executable, __file__, "--worker", str(checkpoint), "--pairs", str(args.pairs),
                                 "--repeats", str(args.repeats), "--max-tokens", str(args.max_tokens)],
                                check=True, capture_output=True, text=True, env=environment()).stdout
        figures[arch] = json.loads(output.strip().splitlines()[-1])
        print(f"{arch}: {figures[arch]}", flush=True)
    result = {"machine": {**cpu_bf16_support(), "threads": THREADS, "python": platform.python_version()},
              "max_tokens": args.max_tokens, "models": figures}
    out = REPO / "benchmarks" / "results" / "forced_scoring.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
