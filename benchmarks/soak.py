"""Soak: a tiny training run killed with SIGKILL at random moments, resumed each time, must end with exactly the
parameters (and per-update losses) of the same run left alone.

    python benchmarks/soak.py [--kills 50] [--updates 400] [--seed 1] [--prepare-kills 10] [--output-kills 20]

Data: a synthetic copy-task corpus prepared by `nmt prepare custom` (no download). The reference run trains
transformer_tiny with dropout 0.1 (so that every resume must restore a dropout random state) for --updates updates
(one thread, so that floats are reproducible); the soaked run is started, killed
with SIGKILL after a random delay (uniform between 0.2 s and --max-delay, which reaches from Python's start-up through
data loading, training steps, checkpoint writes and validation), restarted with --resume, and so on --kills times; then
it is resumed once more to the end. Every restart must succeed (exit 0 when it is not killed; a clear error is a
failure). Figures go to benchmarks/results/soak.json: kills, resumes, failed resumes, updates lost to the kills
(recomputed after resuming), parameter mismatches, loss mismatches.

Then the same for `nmt prepare custom` (200,000 synthetic pairs, 2 workers): killed --prepare-kills times at random
moments, rerun until it completes; its .bin/.idx files must equal an uninterrupted run's byte for byte and its SentencePiece
model piece for piece.

Last, `nmt average-checkpoints` and `nmt export ctranslate2 --force` are killed --output-kills times each while they
replace an earlier output: after every kill the output must be the earlier one or the new one, whole (a checkpoint
that loads and equals one of them; an export folder whose files equal one of them), never missing or half-written,
and the next run must leave no temporary behind.
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
              "--max-tokens", "512", "--no-valid-bleu", "--max-epochs", "0", "--dropout", "0.1"]


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


def folder_digest(folder: Path) -> dict[str, str] | None:
    """File name -> SHA-256 of an export folder (nmt.json left out: it names the checkpoint it came from)."""
    import hashlib

    if not folder.is_dir():
        return None
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.is_file() and p.name != "nmt.json"}


def hidden_temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and
                  p.name.endswith((".tmp", ".partial", ".old")))


def soak_outputs(work: Path, run: Path, kills: int, rng: random.Random) -> dict:
    """average-checkpoints and export, each killed while replacing an earlier output of its own."""
    import shutil

    import torch

    from nmt.checkpoint import interval_checkpoints, load_checkpoint

    out = work / "outputs"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    nmt = [sys.executable, "-m", "nmt"]
    oldest = interval_checkpoints(run)[0][1]
    commands = {
        "average-checkpoints": lambda last: nmt + ["average-checkpoints", str(run), "--last", str(last), "--output",
                                                   str(out / "averaged.pt")],
        "export": lambda last: nmt + ["export", "ctranslate2", str(run / "checkpoint_last.pt" if last == 5 else
                                                                   oldest), str(out / "ct2"), "--force"],
    }
    try:
        import ctranslate2  # noqa: F401
    except ImportError:
        commands.pop("export")
    results = {}
    for name, command in commands.items():
        # The two outputs an interrupted replacement may leave: the earlier one (--last 2 / checkpoint_10) and the
        # new one (--last 5 / checkpoint_last), each made once uninterrupted.
        versions = []
        for last in (5, 2):
            subprocess.run(command(last), check=True, env=environment(), capture_output=True)
            if name == "average-checkpoints":
                payload = load_checkpoint(out / "averaged.pt")["model"]
                versions.append(payload)
            else:
                versions.append(folder_digest(out / "ct2"))
        started = time.monotonic()
        subprocess.run(command(5), check=True, env=environment(), capture_output=True)
        full_s = time.monotonic() - started
        subprocess.run(command(2), check=True, env=environment(), capture_output=True)
        done = lost = half = finished = 0
        while done < kills:
            process = subprocess.Popen(command(5), env=environment(), stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            try:
                process.wait(timeout=rng.uniform(0.3, full_s * 1.1))
                finished += 1
                subprocess.run(command(2), check=True, env=environment(), capture_output=True)  # the earlier again
                continue
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                done += 1
            if name == "average-checkpoints":
                path = out / "averaged.pt"
                if not path.is_file():
                    lost += 1
                    continue
                try:
                    model = load_checkpoint(path)["model"]
                except Exception:
                    half += 1
                    continue
                if not any(all(torch.equal(model[k], v[k]) for k in v) for v in versions):
                    half += 1
            else:
                digest = folder_digest(out / "ct2")
                if digest is None:
                    lost += 1
                elif digest not in versions:
                    half += 1
        final = subprocess.run(command(5), env=environment(), capture_output=True, text=True)
        results[name] = {"kills": done, "finished_before_the_kill": finished, "outputs_lost": lost,
                         "outputs_half_written": half, "final_run_exit": final.returncode,
                         "temporaries_left_after_the_final_run": hidden_temporaries(out),
                         "uninterrupted_seconds": round(full_s, 2)}
    return results


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
    parser.add_argument("--output-kills", type=int, default=20)
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
    resume = (soaked / "checkpoint_last.pt").exists() or any(soaked.glob("checkpoint_*.pt"))
    if not resume:
        shutil.rmtree(soaked, ignore_errors=True)  # killed before its first checkpoint: nothing to resume
    final = subprocess.run(train_command(data, soaked, args.updates, resume), env=environment(),
                           capture_output=True, text=True)
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
    result["outputs"] = soak_outputs(args.work, reference, args.output_kills, rng)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "events"}, indent=1))
    outputs_bad = any(r["outputs_lost"] or r["outputs_half_written"] or r["final_run_exit"]
                      or r["temporaries_left_after_the_final_run"] for r in result["outputs"].values())
    if (failures or parameter_mismatches or loss_mismatches or result["prepare"]["failed_reruns"]
            or result["prepare"]["file_mismatches"] or outputs_bad):
        sys.exit(1)


if __name__ == "__main__":
    main()
