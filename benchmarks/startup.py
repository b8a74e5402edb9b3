"""How long `nmt` takes to start, in this tree and in another (e.g. a `git worktree` of an earlier commit).

Each command runs as `python -m nmt ...` from its tree (the working folder comes first on sys.path), alternating
between the trees so that both see the same machine load; the median of the runs is reported. The option checks
must cost nothing a user can feel: `--help` and a dry run import neither torch nor the model.

    git worktree add /tmp/nmt-old COMMIT
    python benchmarks/startup.py --old /tmp/nmt-old --checkpoint checkpoints/averaged.pt

Writes benchmarks/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(tree: Path, args: list[str], stdin: bytes, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nmt", *args], cwd=tree, input=stdin, capture_output=True, check=True,
                   env=env)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the tree to compare with")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint to translate one line with")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "startup.json")
    options = parser.parse_args()
    checkpoint = str(options.checkpoint.resolve())
    commands = {
        "nmt --help": (["--help"], b"", {}),
        "nmt translate --help": (["translate", "--help"], b"", {}),
        "nmt translate (dry run)": (["translate", "--checkpoint", checkpoint, "--beam", "5"], b"", {"NMT_DRY_RUN": "1"}),
        "nmt train (dry run)": (["train", "data/x", "--arch", "transformer_tiny"], b"", {"NMT_DRY_RUN": "1"}),
        "nmt translate, one line": (["translate", "--checkpoint", checkpoint, "--threads", "1"], b"red dog\n", {}),
    }
    trees = {"old": options.old.resolve(), "new": REPO}
    results = {}
    for name, (args, stdin, extra) in commands.items():
        env = {**os.environ, **extra}
        times = {label: [] for label in trees}
        for _ in range(options.runs):
            for label, tree in trees.items():
                times[label].append(timed(tree, args, stdin, env))
        results[name] = {label: round(statistics.median(values), 3) for label, values in times.items()}
        print(f"{name:28s} old {results[name]['old']:.3f} s   new {results[name]['new']:.3f} s")
    options.out.write_text(json.dumps({"runs": options.runs, "old": str(options.old), "median_seconds": results},
                                      indent=1) + "\n")


if __name__ == "__main__":
    main()
