"""Inputs a user will eventually feed: a 100,000-character line, empty and unreadable files, odd option values."""

from __future__ import annotations

import json

import torch

from conftest import run_nmt, write_copy_corpus

LONG = " ".join(["red dog"] * 14_286)[:100_000]  # 100,000 characters


def one_line_error(result, *needles):
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:"), result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_a_100k_character_line_is_cut_with_a_warning_and_keeps_its_place(trained_checkpoint):
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), input=f"a cat\n{LONG}\nthe dog\n")
    lines = result.stdout.split("\n")
    assert len(lines) == 4 and lines[0] and lines[1] and lines[2] and lines[3] == ""
    assert "warning: line 2: longer than the model takes (1024 pieces); only the start of each" in result.stderr


def test_every_line_cut_at_the_models_limit_is_named(trained_checkpoint):
    """Named whatever the order decoding took them in (sorted by length) and across windows."""
    lines = ["a cat", LONG, "the dog", "a", LONG, LONG]
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--buffer-size", "4",
                     input="".join(f"{line}\n" for line in lines))
    assert result.stdout.count("\n") == 6
    assert "warning: lines 2, 5, 6: longer than the model takes" in result.stderr


def test_a_100k_character_training_pair_is_dropped_and_counted(tmp_path):
    corpus = write_copy_corpus(tmp_path / "corpus", sizes=(("train", 300), ("valid", 20)))
    for side in ("src", "tgt"):
        with open(corpus / f"train.{side}", "a", encoding="utf-8") as handle:
            handle.write(LONG + "\n")
    run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(corpus / "train"), "--valid",
            str(corpus / "valid"), "--vocab-size", "400", "--out", str(tmp_path / "data"))
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["sentences"] == 300
    assert "too_long" in json.dumps(manifest)


def test_empty_and_unreadable_files(tmp_path, trained_checkpoint):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--input", str(empty))
    assert result.stdout == ""  # nothing in, nothing out
    one_line_error(run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--input", str(tmp_path),
                           check=False), str(tmp_path))  # a folder where a file should be
    one_line_error(run_nmt("translate", "--checkpoint", str(empty), input="x\n", check=False), "empty.txt")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("train.src", "train.tgt", "valid.src", "valid.tgt"):
        (corpus / name).write_text("")
    one_line_error(run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(corpus / "train"),
                           "--valid", str(corpus / "valid"), "--out", str(tmp_path / "data"), check=False),
                   "train")
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_more_invalid_option_values(trained_checkpoint):
    for option, value in (("--topp", "0"), ("--temperature", "-1"), ("--no-repeat-ngram-size", "-2"),
                          ("--quantize", "int4"), ("--engine", "marian"), ("--max-len-b", "0")):
        one_line_error(run_nmt("translate", "--checkpoint", str(trained_checkpoint), option, value, input="x\n",
                               check=False), option)


def test_devices_threads_and_output_folders_that_do_not_exist(trained_checkpoint, copy_data, tmp_path):
    translate = ("translate", "--checkpoint", str(trained_checkpoint))
    one_line_error(run_nmt(*translate, "--threads", "-1", input="x\n", check=False),
                   "'--threads': must be between 1 and 1024")
    one_line_error(run_nmt(*translate, "--device", "banana", input="x\n", check=False), "not a device name")
    (tmp_path / "a-file").write_text("")
    one_line_error(run_nmt(*translate, "--output", str(tmp_path / "a-file" / "out.txt"), input="x\n", check=False),
                   "a-file is a file, not a folder")
    if not torch.cuda.is_available():
        one_line_error(run_nmt("train", str(copy_data), "--arch", "transformer_tiny", "--save-dir",
                               str(tmp_path / "run"), "--device", "cuda", check=False), "no CUDA GPU")


def test_nmt_logprob_names_the_pairs_whose_source_it_cut(trained_checkpoint):
    pairs = [("a cat", "a cat"), (LONG, "red dog"), ("the dog", "the dog")]
    result = run_nmt("logprob", "--checkpoint", str(trained_checkpoint),
                     input="".join(f"{s}\t{t}\n" for s, t in pairs))
    assert result.stdout.count("\n") == 3
    assert "warning: line 2: the source is longer than the model takes (1024 pieces)" in result.stderr
