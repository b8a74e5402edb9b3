"""A full disk while writing, simulated with a file-size limit (RLIMIT_FSIZE; SIGXFSZ ignored, so a write past it
fails with EFBIG as on a full file system): one clear line, a non-zero exit, and no half-written file left behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

from conftest import REPO, write_copy_corpus


def run_limited(args: list[str], limit_bytes: int) -> subprocess.CompletedProcess:
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "nmt", *args], capture_output=True, text=True, preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)


def test_a_checkpoint_that_does_not_fit_stops_training_with_one_line_and_no_partial_file(copy_data, tmp_path):
    save_dir = tmp_path / "run"
    result = run_limited(["train", str(copy_data), "--save-dir", str(save_dir), "--arch", "transformer_tiny",
                          "--threads", "1", "--max-updates", "20", "--save-interval-updates", "10",
                          "--max-tokens", "512", "--no-valid-bleu"], 200_000)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "File too large" in last and "checkpoint_10.pt" in last
    assert not [p.name for p in save_dir.iterdir() if p.name.endswith((".pt", ".tmp"))]


def test_binarized_data_that_does_not_fit_stops_prepare_without_a_manifest(tmp_path):
    corpus = write_copy_corpus(tmp_path / "corpus", sizes=(("train", 3000), ("valid", 50)))
    out = tmp_path / "data"
    result = run_limited(["prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(corpus / "train"),
                          "--valid", str(corpus / "valid"), "--vocab-size", "400", "--workers", "1",
                          "--out", str(out)], 30_000)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "File too large" in result.stderr.strip().splitlines()[-1]
    assert not (out / "manifest.json").exists()


def test_a_hugging_face_export_that_does_not_fit_leaves_the_earlier_export_whole(trained_checkpoint, tmp_path):
    import pytest
    pytest.importorskip("transformers")
    out = tmp_path / "hf"
    subprocess.run([sys.executable, "-m", "nmt", "export", "huggingface", str(trained_checkpoint), str(out)],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run_limited(["export", "huggingface", str(trained_checkpoint), str(out), "--force"], 300_000)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(out) in lines[0], result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]  # no partial folder left
