"""The two making-data examples end to end on real Multi30k, with tiny models and a few hundred sentences (what
the scripts' quick-look knobs are for): every command they run, the files they hand on, their scores."""

from __future__ import annotations

import json
import os
import subprocess

from conftest import REPO, SHARED_MULTI30K, requires_multi30k


def run_example(script: str, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
                   "MIRROR": str(SHARED_MULTI30K), "ARCH": "transformer_tiny", **env}
    return subprocess.run(["bash", str(REPO / "examples" / script / "run.sh")], env=environment, cwd=REPO,
                          capture_output=True, text=True, timeout=900)


@requires_multi30k
def test_the_back_translation_example_adds_the_back_translated_half_tagged_and_untagged(trained_checkpoint,
                                                                                        tmp_path):
    work = tmp_path / "bt"
    # The copy task's model stands in for a German->English one (REVERSE: a model you have): its outputs are what
    # the rest of the script needs, text line for line.
    result = run_example("back-translation", WORK=str(work), MINUTES="0.03", MONO_LINES="200",
                         REVERSE=str(trained_checkpoint))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "text" / "half.en").read_text().count("\n") == 14500
    assert (work / "text" / "bt.en").read_text().count("\n") == 200 == (work / "text" / "bt.de").read_text().count("\n")
    tagged = json.loads((work / "data" / "tagged" / "manifest.json").read_text())
    untagged = json.loads((work / "data" / "untagged" / "manifest.json").read_text())
    assert [c["tag"] for c in tagged["train_corpora"]] == ["", "<BT>"]
    assert [c["tag"] for c in untagged["train_corpora"]] == ["", ""]
    for data in ("half", "tagged", "untagged"):  # one vocabulary for all
        assert (work / "data" / data / "spm.model").read_bytes() == (work / "data" / "half" / "spm.model").read_bytes()
    scores = [line for line in (work / "seed1" / "scores.txt").read_text().splitlines() if "BLEU = " in line]
    assert [line.split()[0] for line in scores] == ["half", "tagged", "untagged"]  # each model's score, named


@requires_multi30k
def test_the_distillation_example_filters_the_teachers_output_and_exports_the_student(tmp_path):
    work = tmp_path / "distill"
    teacher_run = tmp_path / "teacher"
    # A teacher of a few seconds: what matters here is the path from its translations to a student.
    subprocess.run([str(REPO / ".venv" / "bin" / "nmt"), "prepare", "multi30k-en-de", "--mirror",
                    str(SHARED_MULTI30K), "--out", str(tmp_path / "data")], check=True, capture_output=True)
    subprocess.run([str(REPO / ".venv" / "bin" / "nmt"), "train", str(tmp_path / "data"), "--arch",
                    "transformer_tiny", "--max-updates", "200", "--save-dir", str(teacher_run), "--no-valid-bleu"],
                   check=True, capture_output=True)
    result = run_example("distillation", WORK=str(work), MINUTES="0.03", SOURCE_LINES="300",
                         TEACHER=str(teacher_run / "checkpoint_last.pt"), STUDENT_ARCH="transformer_tiny",
                         STUDENT_ARGS="--decoder-layers 1",  # shallower than its preset, as the default student is
                         MIN_PER_TOKEN="-1000")
    assert result.returncode == 0, result.stderr[-3000:]
    kept = (work / "text" / "distilled.en").read_text().splitlines()
    assert 0 < len(kept) <= 300 and (work / "text" / "teacher.scores").read_text().count("\n") == 300
    cleaning = {name: json.loads((work / "data" / name / "manifest.json").read_text())["cleaning"]["options"]
                for name in ("original", "distilled")}
    assert cleaning["distilled"] == cleaning["original"]  # the students' data cleaned alike
    students = work / "seed1"
    config = json.loads((students / "distilled" / "config.json").read_text())
    assert config["model"]["decoder_layers"] == 1  # the student's shallow decoder
    assert (students / "distilled" / "ct2-int8" / "model.bin").is_file()
    shortlist = json.loads((students / "distilled" / "ct2-int8" / "nmt.json").read_text())["shortlist"]
    assert shortlist["data"] == str(work / "data" / "distilled") and 0 < shortlist["pairs"] <= len(kept)
    assert (students / "distilled" / "test.ct2-int8.hyp.de").read_text().count("\n") == 1000
    scored = (students / "scores.txt").read_text()
    assert "teacher.test.hyp.de" in scored and "original/test.hyp.de" in scored and "distilled/test.hyp.de" in scored
