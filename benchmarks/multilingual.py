"""One multilingual model against bilingual ones at the same total CPU time, on Multi30k.

    python benchmarks/multilingual.py --minutes 30                    # en->{de,fr,cs}: 30 min one model, 10 each
    python benchmarks/multilingual.py --minutes 30 --direction x-en   # {de,fr,cs}->en the same way
    python benchmarks/multilingual.py --minutes 20 --threads 1 &      # both at once, a core each
    python benchmarks/multilingual.py --minutes 20 --threads 1 --direction x-en

The multilingual transformer_small trains on the three pairs together for --minutes; each bilingual
transformer_small on its own pair for a third of that, so that both sides spend the same CPU minutes. Each model
goes through the README's pipeline (average the 5 best checkpoints by valid loss, choose the length penalty on the
valid split, translate test_2016_flickr, sacreBLEU), the multilingual one once per direction with
--target-language. Work goes to benchmarks/work/multilingual-DIRECTION; figures to
benchmarks/results/multilingual_DIRECTION_MINUTESmin.json, and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data" / "multi30k"
OTHERS = ("de", "fr", "cs")


THREADS: list[str] = []  # --threads N for every command that computes, where given


def nmt(*args: str, stdout=None) -> None:
    python = REPO / ".venv" / "bin" / "python"
    threads = THREADS if args[0] in ("train", "tune", "translate") else []
    subprocess.run([str(python), "-m", "nmt", *args, *threads], check=True, stdout=stdout, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})


def pairs_of(direction: str) -> list[tuple[str, str]]:
    return [("en", other) if direction == "en-x" else (other, "en") for other in OTHERS]


def train_and_tune(data: Path, run: Path, minutes: float, seed: int) -> dict:
    """Train (resuming a run that stopped), average the 5 best, tune; the training's own figures."""
    resume = ["--resume"] if (run / "checkpoint_last.pt").exists() else []
    nmt("train", str(data), "--arch", "transformer_small", "--save-dir", str(run), "--max-time", str(minutes),
        "--seed", str(seed), "--valid-bleu", *resume)
    nmt("average-checkpoints", str(run), "--best", "5", "--output", str(run / "averaged.pt"), "--force")
    nmt("tune", str(run / "averaged.pt"), str(data))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "tgt_tokens_per_s" in r]
    return {"updates": train[-1]["update"], "epochs": train[-1]["epoch"],
            "training_wall_s": train[-1]["wall"],
            "train_tgt_tokens_per_s_median": statistics.median(r["tgt_tokens_per_s"] for r in train)}


def test_bleu(checkpoint: Path, source: Path, reference: Path, hypotheses: Path, language: str | None) -> dict:
    with open(hypotheses, "w", encoding="utf-8") as out:
        nmt("translate", "--checkpoint", str(checkpoint), "--input", str(source),
            *(["--target-language", language] if language else []), stdout=out)
    python = REPO / ".venv" / "bin" / "python"
    scored = subprocess.run([str(python), "-m", "nmt", "score", "--ref", str(reference), "--hyp", str(hypotheses),
                             "--json"], check=True, capture_output=True, text=True, cwd=REPO)
    scores = json.loads(scored.stdout)
    return {"bleu": scores["bleu"]["score"], "chrf": scores["chrf"]["score"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="the multilingual model's training minutes")
    parser.add_argument("--direction", choices=("en-x", "x-en"), default="en-x")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, help="CPU threads of each command (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        THREADS[:] = ["--threads", str(args.threads)]
    work = REPO / "benchmarks" / "work" / f"multilingual-{args.direction}"
    pairs = pairs_of(args.direction)
    started = time.time()
    results = {"direction": args.direction, "total_training_minutes": args.minutes, "seed": args.seed,
               "threads": args.threads,
               "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "bilingual": {},
               "multilingual": {}}

    joint = work / "data-multilingual"
    nmt("prepare", *[f"multi30k-{s}-{t}" for s, t in pairs], "--out", str(joint), "--mirror", str(MIRROR))
    run = work / "run-multilingual"
    results["multilingual"]["training"] = train_and_tune(joint, run, args.minutes, args.seed)
    for source, target in pairs:
        name = f"test.{source}-{target}"
        results["multilingual"][f"{source}-{target}"] = test_bleu(
            run / "averaged.pt", joint / f"{name}.{source}", joint / f"{name}.{target}",
            work / f"{name}.multilingual.hyp", target)

    for source, target in pairs:
        data = work / f"data-{source}-{target}"
        nmt("prepare", f"multi30k-{source}-{target}", "--out", str(data), "--mirror", str(MIRROR))
        run = work / f"run-{source}-{target}"
        training = train_and_tune(data, run, args.minutes / len(pairs), args.seed)
        results["bilingual"][f"{source}-{target}"] = {
            **test_bleu(run / "averaged.pt", data / f"test.{source}", data / f"test.{target}",
                        work / f"test.{source}-{target}.bilingual.hyp", None), "training": training}

    names = [f"{s}-{t}" for s, t in pairs]
    for kind in ("multilingual", "bilingual"):
        results[kind]["mean_bleu"] = round(statistics.mean(results[kind][n]["bleu"] for n in names), 2)
        results[kind]["mean_chrf"] = round(statistics.mean(results[kind][n]["chrf"] for n in names), 2)
    results["wall_s"] = round(time.time() - started, 1)
    out = REPO / "benchmarks" / "results" / f"multilingual_{args.direction}_{args.minutes:g}min.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{'pair':8} {'multilingual':>13} {'bilingual':>10}   (test_2016_flickr BLEU; {args.minutes:g} CPU minutes "
          f"for the one model, {args.minutes / len(pairs):g} for each bilingual one)")
    for name in names + ["mean"]:
        key = "mean_bleu" if name == "mean" else None
        multi = results["multilingual"][key] if key else results["multilingual"][name]["bleu"]
        bi = results["bilingual"][key] if key else results["bilingual"][name]["bleu"]
        print(f"{name:8} {multi:13.2f} {bi:10.2f}")
    print(f"figures in {out}")


if __name__ == "__main__":
    main()
