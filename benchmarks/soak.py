"""Soak: a tiny training run killed with SIGKILL at random moments, resumed each time, must end with exactly the
parameters (and per-update losses) of the same run left alone.

    python benchmarks/soak.py [--kills 50] [--updates 400] [--seed 1] [--prepare-kills 10]

Data: a synthetic copy-task corpus prepared by `nmt prepare custom` (no download). The reference run trains
transformer_tiny for --updates updates (one thread, so that floats are reproducible); the soaked run is started, killed
with SIGKILL after a random delay (uniform between 0.2 s and --max-delay, which reaches from Python's start-up through
data loading, training steps, checkpoint writes and validation), restarted with --resume, and so on --kills times; then
it is resumed once more to the end. Every restart must succeed (exit 0 when it is not killed; a clear error is a
failure). Figures go to benchmarks/results/soak.json: kills, resumes, failed resumes, updates lost to the kills
(recomputed after resuming), parameter mismatches, loss mismatches.

Then the same for `nmt prepare custom` (200,000 synthetic pairs, 2 workers): killed --prepare-kills times at random
moments, rerun until it completes; its .bin/.idx files must equal an uninterrupted run's byte for byte and its SentencePiece
model piece for piece.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
WORDS = "red blue green dog cat runs jumps a the big small man woman bike street water ball plays with near".split()
TRAIN_ARGS = ["--arch", "transformer_tiny", "--threads", "1", "--log-interval", "1", "--save-interval-updates", "10",
              "--max-tokens", "512", "--no-valid-bleu", "--max-epochs", "0"]


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def make_data(work: Path) -> Path:
    data = work / "data"
    if (data / "manifest.json").is_file():
        return data
    rng = random.Random(0)
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 3000), ("valid", 100)):
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))) for _ in range(count)]
        for side in ("src", "tgt"):
            (corpus / f"{split}.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "nmt", "prepare", "custom", "--src", "src", "--tgt", "tgt",
                    "--train", str(corpus / "train"), "--valid", str(corpus / "valid"), "--vocab-size", "400",
                    "--out", str(data)], check=True, env=environment(), capture_output=True)
    return data


def same_file(a: Path, b: Path) -> bool:
    """Byte equality; for a SentencePiece model, equal pieces and scores (its bytes also hold the paths it was
    trained from, which differ between the two output folders)."""
    if a.suffix != ".model":
        return a.read_bytes() == b.read_bytes()
    import sentencepiece

    left, right = (sentencepiece.SentencePieceProcessor(model_file=str(p)) for p in (a, b))
    return left.get_piece_size() == right.get_piece_size() and all(
        left.id_to_piece(i) == right.id_to_piece(i) and left.get_score(i) == right.get_score(i)
        for i in range(left.get_piece_size()))


def prepare_command(corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "nmt", "prepare", "custom", "--src", "src", "--tgt", "tgt", "--train",
            str(corpus / "big"), "--valid", str(corpus / "valid"), "--vocab-size", "400", "--workers", "2",
            "--out", str(out)]


def soak_prepare(work: Path, kills: int, max_delay: float, rng: random.Random) -> dict:
    """`nmt prepare` killed with SIGKILL at random moments and rerun until it completes; its files must equal
    those of an uninterrupted preparation byte for byte."""
    import shutil

    corpus = work / "corpus"
    if not (corpus / "big.src").is_file():
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 30))) for _ in range(200_000)]
        for side in ("src", "tgt"):
            (corpus / f"big.{side}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    reference, soaked = work / "prepare-reference", work / "prepare-soaked"
    for folder in (reference, soaked):
        shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(prepare_command(corpus, reference), check=True, env=environment(), capture_output=True)
    reference_s = time.monotonic() - started
    done_kills = failures = 0
    while done_kills < kills:
        process = subprocess.Popen(prepare_command(corpus, soaked), env=environment(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)
        try:
            process.wait(timeout=rng.uniform(0.2, max_delay))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            done_kills += 1
            continue
        if process.returncode != 0:
            failures += 1
            break
        shutil.rmtree(soaked)  # finished before the kill: start over, the soak needs kills
    final = subprocess.run(prepare_command(corpus, soaked), env=environment(), capture_output=True, text=True)
    failures += final.returncode != 0
    names = sorted(p.name for p in reference.iterdir() if p.suffix in (".bin", ".idx", ".model"))
    mismatches = [name for name in names if not (soaked / name).is_file() or not same_file(soaked / name,
                                                                                           reference / name)]
    return {"kills": done_kills, "failed_reruns": failures, "files_compared": len(names),
            "file_mismatches": mismatches, "reference_seconds": round(reference_s, 1)}


def train_command(data: Path, save_dir: Path, updates: int, resume: bool) -> list[str]:
    command = [sys.executable, "-m", "nmt", "train", str(data), "--save-dir", str(save_dir), *TRAIN_ARGS,
               "--max-updates", str(updates)]
    return command + (["--resume"] if resume else [])


def losses(save_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["update"]: r["loss"] for r in records if "loss" in r}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nmt-soak"))
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--max-delay", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--prepare-kills", type=int, default=10)
    parser.add_argument("--prepare-max-delay", type=float, default=8.0)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args()
    import shutil

    import torch

    from nmt.checkpoint import load_checkpoint

    args.work.mkdir(parents=True, exist_ok=True)
    data = make_data(args.work)
    reference, soaked = args.work / "reference", args.work / "soaked"
    for folder in (reference, soaked):
        shutil.rmtree(folder, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(train_command(data, reference, args.updates, False), check=True, env=environment(),
                   capture_output=True)
    reference_s = time.monotonic() - started

    rng = random.Random(args.seed)
    kills = resumes = failures = 0
    updates_at_kill = []
    events = []
    started = time.monotonic()
    while kills < args.kills:
        resume = (soaked / "checkpoint_last.pt").exists() or any(soaked.glob("checkpoint_*.pt"))
        resumes += resume
        process = subprocess.Popen(train_command(data, soaked, args.updates, resume), env=environment(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(0.2, args.max_delay)
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            done = max(losses(soaked)) if (soaked / "metrics.jsonl").is_file() and losses(soaked) else 0
            updates_at_kill.append(done)
            events.append({"kill": kills, "after_s": round(delay, 2), "resumed": resume, "logged_updates": done})
            continue
        stderr = process.stderr.read()
        if process.returncode != 0:
            failures += 1
            events.append({"failure": stderr.strip().splitlines()[-1:] if stderr else [], "resumed": resume})
            if failures > 5:
                break
            continue
        # The run finished before the kill: start it over from nothing (the soak needs kills), keeping counts.
        events.append({"finished_early_at_kill": kills})
        shutil.rmtree(soaked)
    final = subprocess.run(train_command(data, soaked, args.updates, True), env=environment(), capture_output=True,
                           text=True)
    resumes += 1
    if final.returncode != 0:
        failures += 1
    soak_s = time.monotonic() - started

    mine = load_checkpoint(soaked / "checkpoint_last.pt")["model"]
    theirs = load_checkpoint(reference / "checkpoint_last.pt")["model"]
    parameter_mismatches = sum(not torch.equal(mine[name], theirs[name]) for name in theirs)
    reference_losses, soaked_losses = losses(reference), losses(soaked)
    loss_mismatches = sum(soaked_losses.get(u) != loss for u, loss in reference_losses.items())
    result = {"kills": kills, "resumes": resumes, "failed_resumes": failures, "updates": args.updates,
              "parameter_tensors": len(theirs), "parameter_mismatches": parameter_mismatches,
              "loss_mismatches": loss_mismatches, "updates_logged": len(soaked_losses),
              "reference_seconds": round(reference_s, 1), "soak_seconds": round(soak_s, 1), "events": events}
    result["prepare"] = soak_prepare(args.work, args.prepare_kills, args.prepare_max_delay, rng)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "events"}, indent=1))
    if (failures or parameter_mismatches or loss_mismatches or result["prepare"]["failed_reruns"]
            or result["prepare"]["file_mismatches"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
