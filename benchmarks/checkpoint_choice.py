"""Which checkpoints to average: the 5 best by valid loss (what `nmt average-checkpoints --best 5` and the README's
job pick), the 5 best by greedy valid BLEU (`--valid-bleu`'s figure in metrics.jsonl), or the last 5.

    python benchmarks/checkpoint_choice.py sc1:benchmarks/work/verdict/small_corpus-seed1 \\
        sc90:benchmarks/work/long/small_corpus-seed1:benchmarks/work/long/keep/small_corpus

Each NAME:RUN_DIR[:CHECKPOINT_DIR] is a run of examples/multi30k/run.sh (its metrics.jsonl and data/); the
checkpoints are read from CHECKPOINT_DIR where given (e.g. hard links taken while the run pruned its own). Each
average is scored on test_2016_flickr with beam 4 and GNMT length penalty 0.6 (no tuning, so the choice alone
differs). Figures go to benchmarks/results/checkpoint_choice.json (runs already there are kept).
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from multi30k_bleu import test_scores

REPO = Path(__file__).resolve().parent.parent
NMT = str(REPO / ".venv" / "bin" / "nmt")
RESULTS = REPO / "benchmarks" / "results" / "checkpoint_choice.json"


def choices(records: list[dict]) -> dict[str, list[dict]]:
    return {"best_5_by_valid_loss": sorted(records, key=lambda r: r["valid_loss"])[:5],
            "best_5_by_valid_bleu": sorted(records, key=lambda r: -r["valid_bleu"])[:5],
            "last_5": sorted(records, key=lambda r: r["update"])[-5:]}


def averaged_test_bleu(paths: list[Path], work: Path, scratch: Path) -> float:
    averaged, hypotheses = scratch / "averaged.pt", scratch / "test.hyp"
    subprocess.run([NMT, "average-checkpoints", *map(str, paths), "--output", str(averaged), "--force"],
                   check=True, capture_output=True)
    subprocess.run([NMT, "translate", "--checkpoint", str(averaged), "--beam", "4", "--lenpen", "0.6",
                    "--lenpen-style", "gnmt", "--input", str(work / "data" / "test.en"), "--output", str(hypotheses)],
                   check=True, capture_output=True)
    return test_scores(work, hypotheses)["bleu"]["score"]


def main(specs: list[str]) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for spec in specs:
        name, work, *rest = spec.split(":")
        work = Path(work)
        checkpoints = Path(rest[0]) if rest else work / "checkpoints"
        records = [json.loads(line) for line in (work / "checkpoints" / "metrics.jsonl").read_text().splitlines()]
        records = [r for r in records if "valid_loss" in r and "valid_bleu" in r
                   and (checkpoints / f"checkpoint_{r['update']}.pt").is_file()]
        run = {}
        for choice, chosen in choices(records).items():
            paths = [checkpoints / f"checkpoint_{r['update']}.pt" for r in chosen]
            with tempfile.TemporaryDirectory() as scratch:
                bleu = averaged_test_bleu(paths, work, Path(scratch))
            run[choice] = {"updates": sorted(r["update"] for r in chosen), "test_bleu": bleu}
            print(name, choice, run[choice], flush=True)
        results[name] = run
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    main(sys.argv[1:])
