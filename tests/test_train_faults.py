"""`nmt train` killed outright (kill -9) or asked to stop (SIGTERM), as a cluster scheduler does it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_nmt
from nmt.checkpoint import load_checkpoint

ARGS = ["--arch", "transformer_tiny", "--threads", "1", "--log-interval", "1", "--save-interval-updates", "10",
        "--max-tokens", "512", "--no-valid-bleu"]


def start(data, save_dir, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nmt", "train", str(data), "--save-dir", str(save_dir), *ARGS,
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def wait_for(path, process, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"training ended early: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def per_update_losses(save_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    return {record["update"]: record["loss"] for record in records if "loss" in record}


@pytest.mark.parametrize("dropout", ["0.0", "0.1"])  # 0.1: the resume must restore the dropout masks' RNG too
def test_kill_9_then_resume_gives_exactly_the_losses_of_an_uninterrupted_run(copy_data, tmp_path, dropout):
    options = [*ARGS, "--dropout", dropout, "--max-updates", "60"]
    run_nmt("train", str(copy_data), "--save-dir", str(tmp_path / "straight"), *options)

    process = start(copy_data, tmp_path / "killed", *options[len(ARGS):])
    wait_for(tmp_path / "killed" / "checkpoint_10.pt", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "killed" / "checkpoint_60.pt").exists(), "killed before the end"

    resumed = run_nmt("train", str(copy_data), "--save-dir", str(tmp_path / "killed"), *options, "--resume")
    started_at = int(resumed.stderr.split("resuming at update ")[1].split()[0])
    assert started_at >= 10
    straight, killed = per_update_losses(tmp_path / "straight"), per_update_losses(tmp_path / "killed")
    assert sorted(killed) == list(range(1, 61)), "every update logged once"
    assert killed == straight  # bit for bit: same floats


def test_sigterm_saves_a_loadable_checkpoint_and_exits_cleanly(copy_data, tmp_path):
    process = start(copy_data, tmp_path / "run", "--max-updates", "100000")
    wait_for(tmp_path / "run" / "checkpoint_10.pt", process)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "stopped by SIGTERM" in stderr
    payload = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    assert payload["update"] > 10 and "optimizer" in payload["training"]


def test_a_second_run_on_a_save_dir_in_use_is_refused_and_the_first_goes_on(copy_data, tmp_path):
    first = start(copy_data, tmp_path / "run", "--max-updates", "100000")
    wait_for(tmp_path / "run" / "checkpoint_10.pt", first)
    for extra in ([], ["--resume"]):
        second = run_nmt("train", str(copy_data), "--save-dir", str(tmp_path / "run"), *ARGS, *extra, check=False)
        assert second.returncode == 1 and "in use by another nmt train (pid" in second.stderr
        assert "Traceback" not in second.stderr
    assert first.poll() is None  # untouched by the refused runs
    first.send_signal(signal.SIGKILL)  # the kernel drops the lock with the process
    first.wait()
    resumed = run_nmt("train", str(copy_data), "--save-dir", str(tmp_path / "run"), *ARGS, "--resume",
                      "--max-updates", "12")
    assert "resuming at update" in resumed.stderr
