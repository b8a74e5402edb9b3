"""What a command must never destroy or leave open, whatever it is asked: its own inputs, a run's resume state, a
server's key. Each case through the command, as a user would type it."""

from __future__ import annotations

import os

import pytest

from conftest import run_nmt
from nmt.checkpoint import load_checkpoint


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def test_average_checkpoints_never_writes_over_its_inputs_or_a_runs_checkpoints(trained_checkpoint, tmp_path):
    run = trained_checkpoint.parent
    last = run / "checkpoint_last.pt"
    before = {path.name: path.read_bytes() for path in run.glob("checkpoint*.pt")}
    for output, force in ((last, True), (run / "checkpoint_best.pt", True), (run / "checkpoint_999.pt", True),
                          (run / "checkpoint_100.pt", True)):
        line = one_line_error(run_nmt("average-checkpoints", str(run), "--last", "2", "--output", str(output),
                                      *(["--force"] if force else []), check=False))
        assert "a training run's own checkpoint" in line
    copy = tmp_path / "a.pt"
    copy.write_bytes((run / "checkpoint_100.pt").read_bytes())
    other = tmp_path / "b.pt"
    other.write_bytes((run / "checkpoint_200.pt").read_bytes())
    line = one_line_error(run_nmt("average-checkpoints", str(copy), str(other), "--output", str(copy), "--force",
                                  check=False))
    assert "is one of the checkpoints being averaged" in line
    assert {path.name: path.read_bytes() for path in run.glob("checkpoint*.pt")} == before
    assert copy.read_bytes() == (run / "checkpoint_100.pt").read_bytes()
    # An earlier average: replaced only when asked.
    averaged = tmp_path / "averaged.pt"
    run_nmt("average-checkpoints", str(run), "--last", "2", "--output", str(averaged))
    line = one_line_error(run_nmt("average-checkpoints", str(run), "--last", "3", "--output", str(averaged),
                                  check=False))
    assert "exists; add --force" in line and len(load_checkpoint(averaged)["averaged_from"]) == 2
    run_nmt("average-checkpoints", str(run), "--last", "3", "--output", str(averaged), "--force")
    assert len(load_checkpoint(averaged)["averaged_from"]) == 3


def test_an_empty_api_key_in_the_environment_is_refused_not_an_open_server(trained_checkpoint, monkeypatch):
    monkeypatch.setitem(os.environ, "NMT_API_KEY", "")
    pytest.importorskip("starlette")
    # a process of its own, with a time limit: without the check it would serve, open, until stopped
    line = one_line_error(run_nmt("serve", "--checkpoint", str(trained_checkpoint), "--port", "1", check=False,
                                  fresh_process=True, timeout=60))
    assert "NMT_API_KEY is set but empty" in line


def test_a_glossary_saved_with_a_byte_order_mark_skips_its_first_comment(trained_checkpoint, tmp_path):
    glossary = tmp_path / "glossary.tsv"
    glossary.write_bytes("\ufeff# terms of the project\ndog\tzebra\n".encode("utf-8"))
    out = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--glossary", str(glossary), "--beam", "8",
                  input="red dog runs\n").stdout
    assert "zebra" in out


def test_error_lines_keep_the_brackets_of_paths_and_hints(tmp_path):
    """An error line is text, not Rich markup: `ref[de].txt` and `pip install 'nmt[serve]'` print as they are."""
    hypothesis = tmp_path / "hyp.txt"
    hypothesis.write_text("a\n", encoding="utf-8")
    line = one_line_error(run_nmt("score", "--ref", str(tmp_path / "ref[de].txt"), "--hyp", str(hypothesis),
                                  check=False))
    assert "ref[de].txt" in line
