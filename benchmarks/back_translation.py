"""Back-translation on Multi30k en-de, seed by seed: examples/back-translation/run.sh as a user runs it.

    python benchmarks/back_translation.py --seeds 1 2 3 --minutes 20
    python benchmarks/back_translation.py --seeds 1 2 3 --minutes 20 --sampling   # back-translate by sampling

Half the training pairs are the parallel data, the other half's German the monolingual text (the script's header
says how). The reverse model and its back-translations are made once; per seed, three English->German models train
the same --minutes each: on the parallel half alone, plus the back-translations tagged <BT>, plus them untagged.
Each is scored on test_2016_flickr (beam 4, length penalty 0.6, sacreBLEU). Figures go to
benchmarks/results/back_translation_{MINUTES}min[_sampling].json, rewritten after each seed; seeds already there
are kept, so a run can be continued in another session (on the same kind of machine: see `machine`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from multi30k_bleu import machine

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("half", "tagged", "untagged")


def last_training_record(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "tgt_tokens_per_s" in r]
    valid = [r for r in records if "valid_loss" in r]
    return {"updates": train[-1]["update"] if train else 0, "epochs": train[-1]["epoch"] if train else 0,
            "best_valid_loss": min((r["valid_loss"] for r in valid), default=None)}


def score(work: Path, hypotheses: Path) -> dict:
    result = subprocess.run([str(REPO / ".venv" / "bin" / "nmt"), "score", "--ref", str(work / "full" / "test.de"),
                             "--hyp", str(hypotheses), "--json"], check=True, capture_output=True, text=True)
    scores = json.loads(result.stdout)
    return {"bleu": scores["bleu"]["score"], "chrf": scores["chrf"]["score"]}


def run_seed(seed: int, minutes: float, work: Path, sampling: bool) -> dict:
    started = time.time()
    env = {**os.environ, "SEED": str(seed), "MINUTES": str(minutes), "WORK": str(work),
           "SAMPLING": "1" if sampling else "0"}
    subprocess.run(["bash", str(REPO / "examples" / "back-translation" / "run.sh")], check=True, env=env, cwd=REPO)
    runs = work / f"seed{seed}"
    result = {"seed": seed, "minutes": minutes, "pipeline_wall_s": round(time.time() - started, 1)}
    for variant in VARIANTS:
        result[variant] = {**score(work, runs / variant / "test.hyp.de"), **last_training_record(runs / variant)}
    return result


def summarize(out: Path, runs: dict[int, dict], minutes: float, sampling: bool, work: Path) -> dict:
    results = [runs[seed] for seed in sorted(runs)]
    summary = {"benchmark": "examples/back-translation/run.sh: Multi30k en-de, half parallel + back-translated half",
               "machine": machine(), "minutes_per_model": minutes,
               "back_translation": "sampling, top-k 10" if sampling else "beam 4",
               "reverse_model": last_training_record(work / "reverse"), "seeds": sorted(runs)}
    for variant in VARIANTS:
        for metric in ("bleu", "chrf"):
            values = [r[variant][metric] for r in results]
            summary[f"{variant}_{metric}_mean"] = round(statistics.mean(values), 2)
            summary[f"{variant}_{metric}_stdev"] = round(statistics.stdev(values), 2) if len(values) > 1 else 0.0
    for variant in ("tagged", "untagged"):
        summary[f"{variant}_gain_bleu"] = round(summary[f"{variant}_bleu_mean"] - summary["half_bleu_mean"], 2)
    summary["runs"] = results
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--minutes", type=float, default=20.0, help="Training minutes of each model.")
    parser.add_argument("--sampling", action="store_true", help="Back-translate by sampling (top-k 10).")
    parser.add_argument("--work", type=Path, default=None, help="Default: benchmarks/work/back-translation[-sampling].")
    args = parser.parse_args()
    suffix = "_sampling" if args.sampling else ""
    work = args.work or REPO / "benchmarks" / "work" / f"back-translation{suffix.replace('_', '-')}"
    out = REPO / "benchmarks" / "results" / f"back_translation_{args.minutes:g}min{suffix}.json"
    runs = {run["seed"]: run for run in json.loads(out.read_text())["runs"]} if out.exists() else {}
    for seed in args.seeds:
        if seed not in runs:
            runs[seed] = run_seed(seed, args.minutes, work, args.sampling)
            print(json.dumps(runs[seed]), flush=True)
            summarize(out, runs, args.minutes, args.sampling, work)  # after each seed: nothing lost
    summary = summarize(out, runs, args.minutes, args.sampling, work)
    print(" ".join(f"{v}: BLEU {summary[f'{v}_bleu_mean']} (sd {summary[f'{v}_bleu_stdev']})" for v in VARIANTS)
          + f" over seeds {sorted(runs)}; written to {out}")


if __name__ == "__main__":
    main()
