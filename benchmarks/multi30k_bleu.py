"""BLEU of the README's main job (examples/multi30k/run.sh) over several seeds, with its training throughput.

    python benchmarks/multi30k_bleu.py --seeds 1 2 3 --minutes 20      # the 20-minute figure and its spread
    python benchmarks/multi30k_bleu.py --seeds 1 --minutes 90          # the long run
    python benchmarks/multi30k_bleu.py --seeds 1 2 3 --ema-decay 0.999  # with a moving average of the weights
    python benchmarks/multi30k_bleu.py --seeds 1 2 3 --archs small_corpus transformer_small   # two presets, compared

Each seed runs the example script as a user would (prepare -> train -> average the best 5 by valid loss -> tune the
length penalty on the valid split -> translate test_2016_flickr -> sacreBLEU) in benchmarks/work/ARCH-seedN
(ARCH-seedN_emaD with --ema-decay D). With several --archs, seed by seed the presets alternate, so that a drift of
the machine hits them alike. Each run is also scored with the paper's search settings (beam 4, GNMT length penalty
0.6) on the same averaged model, so the tuned penalty's gain is measured on the same weights. A longer --minutes on an
existing work dir resumes that run (the schedule is a function of the update number and resume restores optimizer,
RNG and batch position, so this is the trajectory of one uninterrupted run). Figures go to
benchmarks/results/multi30k_{ARCH}_{MINUTES}min[_emaD].json, rewritten after each seed; seeds already in it are
kept (and not run again), so a comparison can be continued in another session.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_seed(seed: int, minutes: float, work: Path, arch: str, ema_decay: float = 0.0) -> dict:
    started = time.time()
    env = {**os.environ, "SEED": str(seed), "MINUTES": str(minutes), "WORK": str(work), "ARCH": arch,
           "TRAIN_ARGS": f"--ema-decay {ema_decay}" if ema_decay else ""}
    subprocess.run(["bash", str(REPO / "examples" / "multi30k" / "run.sh")], check=True, env=env, cwd=REPO)
    wall = time.time() - started
    return summarize(seed, minutes, work, wall)


def test_scores(work: Path, hypotheses: Path) -> dict:
    python = REPO / ".venv" / "bin" / "python"
    scored = subprocess.run([str(python), "-m", "nmt", "score", "--ref", str(work / "data" / "test.de"), "--hyp",
                             str(hypotheses), "--json"], check=True, capture_output=True, text=True)
    return json.loads(scored.stdout)


def untuned_bleu(work: Path) -> float:
    """Test BLEU of the same averaged model with the paper's settings instead of the tuned ones."""
    python = REPO / ".venv" / "bin" / "python"
    hypotheses = work / "test.hyp.untuned.de"
    subprocess.run([str(python), "-m", "nmt", "translate", "--checkpoint", str(work / "checkpoints" / "averaged.pt"),
                    "--beam", "4", "--lenpen", "0.6", "--lenpen-style", "gnmt",
                    "--input", str(work / "data" / "test.en"), "--output", str(hypotheses)], check=True)
    return test_scores(work, hypotheses)["bleu"]["score"]


def summarize(seed: int, minutes: float, work: Path, wall: float | None = None) -> dict:
    scores = test_scores(work, work / "test.hyp.de")
    records = [json.loads(line) for line in (work / "checkpoints" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "tgt_tokens_per_s" in r]
    valid = [r for r in records if "valid_loss" in r]
    return {
        "seed": seed,
        "minutes": minutes,
        "test_bleu": scores["bleu"]["score"],
        "test_bleu_untuned": untuned_bleu(work),
        "test_chrf": scores["chrf"]["score"],
        "bleu_signature": scores["bleu"]["signature"],
        "updates": train[-1]["update"] if train else 0,
        "epochs": train[-1]["epoch"] if train else 0,
        "train_tgt_tokens_per_s_median": statistics.median(r["tgt_tokens_per_s"] for r in train),
        "train_src_tokens_per_s_median": statistics.median(r["src_tokens_per_s"] for r in train),
        "best_valid_loss": min(r["valid_loss"] for r in valid),
        "last_valid_bleu_greedy": valid[-1].get("valid_bleu"),
        "training_wall_s": train[-1]["wall"] if train else None,
        "pipeline_wall_s": round(wall, 1) if wall else None,
    }


def machine() -> str:
    """The CPU's name and whether it multiplies bf16 natively, since both move the figures (see --precision auto)."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    bf16 = "with AVX512-BF16" if "avx512_bf16" in cpuinfo else "without AVX512-BF16"
    return f"{os.cpu_count()} CPU cores, {name}, {bf16}"


def write_summary(out: Path, arch: str, ema_decay: float, runs: dict[int, dict]) -> dict:
    results = [runs[seed] for seed in sorted(runs)]
    bleus = [r["test_bleu"] for r in results]
    summary = {
        "benchmark": f"examples/multi30k/run.sh: Multi30k en-de, {arch}, test_2016_flickr",
        "arch": arch,
        "machine": machine(),
        "peak_rss_mb_children": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "bleu_mean": round(statistics.mean(bleus), 2),
        "bleu_min": min(bleus),
        "bleu_max": max(bleus),
        "bleu_stdev": round(statistics.stdev(bleus), 2) if len(bleus) > 1 else 0.0,
        "chrf_mean": round(statistics.mean(r["test_chrf"] for r in results), 2),
        "chrf_stdev": round(statistics.stdev(r["test_chrf"] for r in results), 2) if len(results) > 1 else 0.0,
        "ema_decay": ema_decay,
        "bleu_untuned_mean": round(statistics.mean(r["test_bleu_untuned"] for r in results), 2),
        "runs": results,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--archs", nargs="+", default=["small_corpus"], help="nmt train --arch of each contender")
    parser.add_argument("--work-root", type=Path, default=REPO / "benchmarks" / "work")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="nmt train --ema-decay (0: off)")
    parser.add_argument("--out", type=Path, default=None,
                        help="Results file of one arch (default: results/multi30k_{ARCH}_{MINUTES}min[_emaD].json).")
    parser.add_argument("--summarize-only", action="store_true", help="Score existing work dirs, train nothing.")
    parser.add_argument("--merge", type=Path, nargs="*", default=[],
                        help="Results files whose runs (of other seeds) join these, e.g. from an earlier invocation.")
    args = parser.parse_args()
    if args.out and len(args.archs) > 1:
        parser.error("--out names the results of one arch")

    suffix = f"_ema{args.ema_decay:g}" if args.ema_decay else ""
    outs = {arch: args.out or REPO / "benchmarks" / "results" / f"multi30k_{arch}_{args.minutes:g}min{suffix}.json"
            for arch in args.archs}
    runs: dict[str, dict[int, dict]] = {arch: {} for arch in args.archs}
    for arch, out in outs.items():
        for path in [*args.merge, *([out] if out.exists() else [])]:
            for run in json.loads(path.read_text())["runs"]:
                runs[arch][run["seed"]] = run
    for seed in args.seeds:
        for arch in args.archs:
            if seed in runs[arch] and not args.summarize_only:
                continue
            work = args.work_root / f"{arch}-seed{seed}{suffix}"
            result = (summarize(seed, args.minutes, work) if args.summarize_only
                      else run_seed(seed, args.minutes, work, arch, args.ema_decay))
            runs[arch][seed] = result
            print(json.dumps(result))
            write_summary(outs[arch], arch, args.ema_decay, runs[arch])
    for arch, out in outs.items():
        if runs[arch]:
            summary = write_summary(out, arch, args.ema_decay, runs[arch])
            print(f"{arch}: BLEU {summary['bleu_mean']} (min {summary['bleu_min']}, max {summary['bleu_max']}, "
                  f"stdev {summary['bleu_stdev']}), chrF {summary['chrf_mean']} over seeds {sorted(runs[arch])}; "
                  f"written to {out}")


if __name__ == "__main__":
    main()
