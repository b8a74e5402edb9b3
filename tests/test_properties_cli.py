"""Random bytes, random lines and random option values thrown at `nmt translate` and `nmt score` (hypothesis).

Whatever comes in, a run either succeeds and keeps the line count, or fails with one `error:` line and no traceback;
and it leaves no file behind but the one asked for. Every run has a timeout, so a hang fails the test instead of
stalling it. Examples are derandomized, so CI sees the same ones each time; NMT_PROPERTY_EXAMPLES=500 searches more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO

EXAMPLES = int(os.environ.get("NMT_PROPERTY_EXAMPLES", "8"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

WORDS = ["a", "cat", "the", "dog", "runs", "red", "bike", "über", "猫", "\u200b", "\r", "\x00", "   ", "😀"]
TEXT_LINE = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)
# Bytes as a hostile file holds them: text lines, then anything (invalid UTF-8, NULs, lone surrogates' encodings).
INPUT = st.one_of(st.lists(TEXT_LINE, max_size=6).map(lambda lines: "".join(f"{x}\n" for x in lines).encode()),
                  st.binary(max_size=120))
FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from(["abc", "", "1e999"]))
SMALL_INT = st.integers(min_value=-2, max_value=6)


def run(args: list[str], stdin: bytes, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nmt", *args], input=stdin, capture_output=True, cwd=cwd,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def line_count(data: bytes) -> int:
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def check_outcome(result: subprocess.CompletedProcess, folder: Path, allowed: set[str]) -> None:
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in stderr, stderr
    if result.returncode != 0:
        lines = stderr.strip().splitlines()
        assert result.returncode in (1, 2), stderr  # 2: a usage error (an option that is not a number)
        assert len(lines) == 1 and lines[0].startswith("error:"), stderr
        assert sorted(os.listdir(folder)) == sorted(allowed - {"out.txt"}), os.listdir(folder)
    else:
        assert sorted(os.listdir(folder)) == sorted(allowed), os.listdir(folder)


@SETTINGS
@given(data=INPUT, beam=SMALL_INT, nbest=SMALL_INT, lenpen=FLOAT, max_len_a=FLOAT, max_len_b=SMALL_INT,
       min_len=SMALL_INT, ngram=SMALL_INT, form=st.sampled_from(["plain", "json", "alignment"]),
       to_file=st.booleans())
def test_translate_keeps_the_line_count_or_fails_in_one_line(trained_checkpoint, data, beam, nbest, lenpen,
                                                              max_len_a, max_len_b, min_len, ngram, form, to_file):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        args = ["translate", "--checkpoint", str(trained_checkpoint), "--beam", str(beam), "--nbest", str(nbest),
                "--lenpen", str(lenpen), "--max-len-a", str(max_len_a), "--max-len-b", str(max_len_b), "--min-len",
                str(min_len), "--no-repeat-ngram-size", str(ngram), "--threads", "1"]
        args += {"plain": [], "json": ["--json"], "alignment": ["--print-alignment"]}[form]
        if to_file:
            args += ["--output", "out.txt"]
        result = run(args, data, folder)
        check_outcome(result, folder, {"out.txt"} if to_file else set())
        if result.returncode == 0:
            written = (folder / "out.txt").read_bytes() if to_file else result.stdout
            per_line = nbest if nbest > 1 and form != "json" else 1
            assert line_count(written) == line_count(data) * per_line
            if form == "json":
                for line in written.decode().splitlines():
                    assert "translation" in json.loads(line)


@SETTINGS
@given(hyp=INPUT, ref=INPUT, metrics=st.sampled_from(["bleu", "chrf,ter", "bleu,chrf,ter", "", "meteor", ",,"]),
       paper=st.booleans(), as_json=st.booleans(), from_stdin=st.booleans())
def test_score_scores_or_fails_in_one_line(hyp, ref, metrics, paper, as_json, from_stdin):
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "ref.de").write_bytes(ref)
        (folder / "hyp.txt").write_bytes(hyp)
        args = ["score", "--ref", "ref.de", "--metrics", metrics] + (["--paper"] if paper else []) + \
            (["--json"] if as_json else []) + ([] if from_stdin else ["--hyp", "hyp.txt"])
        result = run(args, hyp if from_stdin else b"", folder)
        check_outcome(result, folder, {"ref.de", "hyp.txt"})
        if result.returncode == 0 and as_json:
            assert isinstance(json.loads(result.stdout), dict)
