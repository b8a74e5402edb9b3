"""Synthetic training corpora in `nmt prepare` (back-translation, distillation): added to the training split only,
tagged with a piece of their own, drawn by their weight each epoch; and bad input refused in one line."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_nmt, write_copy_corpus
from test_cli import one_line_error


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    """A parallel corpus (train 300, valid 40) and a synthetic one of 200 pairs from another sample."""
    folder = tmp_path_factory.mktemp("synthetic-corpora")
    write_copy_corpus(folder, seed=1, sizes=(("train", 300), ("valid", 40)))
    write_copy_corpus(folder / "made", seed=2, sizes=(("bt", 200),))
    return folder


def prepare(corpora: Path, out: Path, *more: str, check: bool = True):
    return run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(corpora / "train"),
                   "--valid", str(corpora / "valid"), "--vocab-size", "300", "--workers", "1", "--out", str(out),
                   *more, check=check)


@pytest.fixture(scope="module")
def tagged_data(corpora, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tagged") / "data"
    prepare(corpora, out, "--synthetic", str(corpora / "made" / "bt"), "--synthetic-tag", "<BT>",
            "--synthetic-weight", "0.5")
    return out


def test_a_tagged_synthetic_corpus_joins_the_training_split_only_each_source_starting_with_its_tag(corpora,
                                                                                                   tagged_data):
    from nmt.data.binary import load_manifest
    from nmt.data.dataset import ParallelDataset
    from nmt.vocab import Vocab

    manifest = load_manifest(tagged_data)
    parallel, synthetic = manifest["train_corpora"]
    assert (parallel["rows"], parallel["tag"], parallel["weight"], parallel["synthetic"]) == ([0, 300], "", 1.0, False)
    assert (synthetic["rows"], synthetic["tag"], synthetic["weight"], synthetic["synthetic"]) == \
        ([300, 500], "<BT>", 0.5, True)
    assert manifest["splits"]["valid"]["sentences"] == 40
    assert (tagged_data / "valid.tgt").read_text() == (corpora / "valid.tgt").read_text()  # the real references

    vocab = Vocab.from_folder(tagged_data, manifest)
    assert vocab.tags == ["<BT>"]
    tag = vocab.source.token_ids["<BT>"]
    train = ParallelDataset(tagged_data, "train", manifest)
    starts = [int(train.src[row][0]) for row in range(len(train))]
    assert starts[300:] == [tag] * 200 and tag not in starts[:300]
    assert all(tag not in train.src[row][1:] for row in range(len(train)))  # one piece, at the start only
    # The text after the tag is the synthetic source, segmented as it would be alone; targets carry no tag.
    made = (corpora / "made" / "bt.src").read_text().splitlines()
    assert train.src[300][1:-1].tolist() == vocab.encode_source([made[0]])[0]
    assert vocab.encode_source([f"<BT> {made[0]}"])[0] == [tag, *vocab.encode_source([made[0]])[0]]
    assert all(tag not in train.tgt[row] for row in range(len(train)))


def test_each_epoch_draws_the_synthetic_corpus_by_its_weight_and_the_same_draw_for_the_same_epoch(tagged_data):
    from nmt.config import transformer_tiny
    from nmt.train.data import epoch_plan, load_training_data

    data = load_training_data(tagged_data)
    config = transformer_tiny().train
    drawn = {epoch: np.sort(np.concatenate(epoch_plan(data, config, epoch).batches)) for epoch in (1, 2)}
    for rows in drawn.values():
        assert rows[rows < 300].tolist() == list(range(300))  # every parallel pair once
        synthetic = rows[rows >= 300]
        assert len(synthetic) == 100 == len(set(synthetic.tolist()))  # weight 0.5: half of the 200, no repeats
    assert set(drawn[1][drawn[1] >= 300].tolist()) != set(drawn[2][drawn[2] >= 300].tolist())  # another half
    again = np.sort(np.concatenate(epoch_plan(data, config, 2).batches))
    assert again.tolist() == drawn[2].tolist()  # a resumed run gets its epoch back


def test_a_weight_above_one_repeats_the_corpus_and_training_runs_on_it(corpora, tmp_path):
    from nmt.config import transformer_tiny
    from nmt.train.data import epoch_plan, load_training_data

    data_dir = tmp_path / "data"
    prepared = prepare(corpora, data_dir, "--synthetic", str(corpora / "made" / "bt"), "--synthetic-weight", "2.5")
    assert "(untagged, weight 2.5): 200 training pairs" in prepared.stdout + prepared.stderr
    data = load_training_data(data_dir)
    rows = np.concatenate(epoch_plan(data, transformer_tiny().train, 1).batches)
    counts = np.bincount(rows[rows >= 300] - 300, minlength=200)
    assert len(rows) == 300 + 500 and sorted(set(counts.tolist())) == [2, 3] and (counts == 3).sum() == 100
    result = run_nmt("train", str(data_dir), "--arch", "transformer_tiny", "--max-updates", "3", "--save-dir",
                     str(tmp_path / "run"))
    assert result.returncode == 0 and (tmp_path / "run" / "checkpoint_last.pt").is_file()
    assert "500 training pairs, 200 of them synthetic" in result.stderr and "weight 2.5)" in result.stderr


def test_a_dataset_with_the_parents_vocabulary_takes_the_tag_the_parent_reserved(corpora, tmp_path):
    parent = tmp_path / "parent"
    prepare(corpora, parent, "--reserve-tag", "<BT>")
    child = tmp_path / "child"
    prepare(corpora, child, "--vocab", str(parent / "spm.model"), "--synthetic", str(corpora / "made" / "bt"),
            "--synthetic-tag", "<BT>")
    assert (child / "spm.model").read_bytes() == (parent / "spm.model").read_bytes()
    assert json.loads((child / "manifest.json").read_text())["train_corpora"][1]["tag"] == "<BT>"
    untagged_parent = tmp_path / "untagged"
    prepare(corpora, untagged_parent)
    result = prepare(corpora, tmp_path / "refused", "--vocab", str(untagged_parent / "spm.model"), "--synthetic",
                     str(corpora / "made" / "bt"), "--synthetic-tag", "<BT>", check=False)
    one_line_error(result, "<BT> is not a piece of its own", "--reserve-tag <BT>")


def test_the_tag_does_not_decide_which_pairs_the_length_filters_keep(corpora, tmp_path):
    """Tagged and untagged, a synthetic corpus keeps the same pairs: the length ratio and limit judge the text."""
    from nmt.data.binary import load_manifest
    from nmt.data.dataset import ParallelDataset

    rng = random.Random(3)
    words = (corpora / "train.src").read_text().split()
    lengths = [(rng.randint(4, 14), rng.randint(4, 24)) for _ in range(300)]  # many near the ratio of 1.5
    for side, column in (("src", 0), ("tgt", 1)):
        (tmp_path / f"uneven.{side}").write_text(
            "".join(" ".join(rng.choice(words) for _ in range(pair[column])) + "\n" for pair in lengths))
    parent = tmp_path / "parent"
    prepare(corpora, parent, "--reserve-tag", "<BT>")
    kept_targets = {}
    for tag in ("<BT>", ""):
        out = tmp_path / f"tagged-{bool(tag)}"
        prepare(corpora, out, "--vocab", str(parent / "spm.model"), "--synthetic", str(tmp_path / "uneven"),
                *(("--synthetic-tag", tag) if tag else ()))
        manifest = load_manifest(out)
        start, end = manifest["train_corpora"][1]["rows"]
        train = ParallelDataset(out, "train", manifest)
        kept_targets[tag] = [train.tgt[row].tolist() for row in range(start, end)]
    assert 50 < len(kept_targets[""]) < 280  # the ratio filter had pairs to drop
    assert kept_targets["<BT>"] == kept_targets[""]


@pytest.mark.parametrize("options, message", [
    (["--synthetic-tag", "<s>"], "collides with a piece the vocabulary already has a meaning for"),
    (["--synthetic-tag", ">>de<<"], "collides with a piece the vocabulary already has a meaning for"),
    (["--synthetic-tag", "BT"], "is not a tag: write it <NAME>"),
    (["--synthetic-tag", "<0x41>"], "is not a tag"),
    (["--synthetic-weight", "0"], "--synthetic-weight"),
    (["--synthetic-weight", "nan"], "--synthetic-weight"),
    (["--synthetic-weight", "1", "--synthetic-weight", "2", "--synthetic-weight", "3"], "given 3 times for 1"),
    (["--synthetic-tag", "<BT>", "--synthetic-tag", "<BT>"], "given 2 times for 1"),
])
def test_a_bad_tag_or_weight_is_one_line(corpora, tmp_path, options, message):
    result = prepare(corpora, tmp_path / "data", "--synthetic", str(corpora / "made" / "bt"), *options, check=False)
    one_line_error(result, message)
    assert not (tmp_path / "data").exists()


def test_a_synthetic_corpus_whose_sides_differ_in_length_is_one_line(corpora, tmp_path):
    (tmp_path / "short.src").write_text("a red dog\nthe cat\n")
    (tmp_path / "short.tgt").write_text("a red dog\n")
    result = prepare(corpora, tmp_path / "data", "--synthetic", str(tmp_path / "short"), check=False)
    one_line_error(result, "has 2 lines but", "has 1", "the sides must pair up")
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_synthetic_corpora_need_their_files_and_a_dataset_of_one_pair(corpora, tmp_path):
    one_line_error(prepare(corpora, tmp_path / "a", "--synthetic", str(tmp_path / "missing"), check=False),
                   "missing.src: file not found")
    one_line_error(prepare(corpora, tmp_path / "b", "--synthetic-tag", "<BT>", check=False),
                   "--synthetic-tag is for --synthetic corpora")
    result = run_nmt("prepare", "multi30k-en-de", "multi30k-en-fr", "--synthetic", str(corpora / "made" / "bt"),
                     "--out", str(tmp_path / "c"), check=False)
    one_line_error(result, "for a dataset of one pair")
    given = tmp_path / "given.model"
    given.write_bytes(b"a vocabulary that is never read")
    one_line_error(prepare(corpora, tmp_path / "d", "--vocab", str(given), "--reserve-tag", "<BT>", check=False),
                   "--reserve-tag adds pieces to a vocabulary being learned")


def wait_for_lines(record: Path, at_least: int, process, seconds: float = 120) -> int:
    """The lines OUT.partial.json says are done, once there are at least AT_LEAST (or the process ended)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            done = json.loads(record.read_text())["lines"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= at_least:
            return done
        time.sleep(0.02)
    raise AssertionError(f"{record}: fewer than {at_least} lines done before the run ended or the time ran out")


def test_a_sampled_back_translation_killed_then_stopped_finishes_with_a_clean_runs_lines(trained_checkpoint,
                                                                                        tmp_path):
    """Back-translation by sampling of a large file with --resume: kill -9 mid-run, SIGTERM in the next run, a third
    run finishes; the output is line for line an uninterrupted run's, none twice, none lost."""
    rng = random.Random(5)
    words = "red blue green dog cat runs a the big ball".split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 7))) for _ in range(3000)]
    (tmp_path / "mono.txt").write_text("\n".join(lines) + "\n")
    command = ["translate", "--checkpoint", str(trained_checkpoint), "--input", "mono.txt", "--buffer-size", "100",
               "--threads", "1", "--sampling", "--topk", "5", "--temperature", "3", "--seed", "7"]
    run_nmt(*command, "--output", "clean.txt", cwd=tmp_path)
    run_nmt(*command[:-1], "8", "--output", "other-seed.txt", cwd=tmp_path)
    clean = (tmp_path / "clean.txt").read_text().splitlines()
    assert len(clean) == 3000 and clean != (tmp_path / "other-seed.txt").read_text().splitlines()  # truly sampled

    resumable = [sys.executable, "-m", "nmt", *command, "--output", "bt.txt", "--resume"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    record = tmp_path / "bt.txt.partial.json"
    first = subprocess.Popen(resumable, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env)
    killed_at = wait_for_lines(record, 300, first)
    first.kill()
    first.communicate(timeout=60)
    second = subprocess.Popen(resumable, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_lines(record, killed_at + 300, second)
    second.send_signal(signal.SIGTERM)
    assert second.communicate(timeout=60) and second.returncode == 130
    assert not (tmp_path / "bt.txt").exists()
    run_nmt(*command, "--output", "bt.txt", "--resume", cwd=tmp_path)
    assert (tmp_path / "bt.txt").read_text().splitlines() == clean
    assert not record.exists() and not (tmp_path / "bt.txt.partial").exists()


def test_logprob_keeps_the_pairs_the_model_finds_likely_and_drops_the_rest(trained_checkpoint, tmp_path):
    """Filtering a teacher's translations: `nmt logprob --keep-prefix` writes the pairs at or above the threshold
    to PREFIX.en / PREFIX.de, in order; a pair with an empty side is dropped unscored."""
    rng = random.Random(9)
    words = "red blue green dog cat runs a the big ball".split()
    sources = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 6))) for _ in range(60)]
    good = {n for n in range(60) if n % 2 == 0}  # the copy task's right answers; the others are noise
    targets = [s if n in good else " ".join(rng.choice(words[:3]) for _ in range(8)) for n, s in enumerate(sources)]
    targets[10] = ""
    (tmp_path / "pairs.en").write_text("\n".join(sources) + "\n")
    (tmp_path / "pairs.de").write_text("\n".join(targets) + "\n")
    result = run_nmt("logprob", "--checkpoint", str(trained_checkpoint), "--source", "pairs.en", "--target",
                     "pairs.de", "--keep-prefix", "kept", "--min-per-token", "-1", "--output", "scores.txt",
                     "--threads", "1", cwd=tmp_path)
    scores = [float(line.split("\t")[1]) for line in (tmp_path / "scores.txt").read_text().splitlines()]
    expected = [n for n in range(60) if scores[n] >= -1]
    assert scores[10] == float("-inf") and 10 not in expected
    assert (tmp_path / "kept.en").read_text().splitlines() == [sources[n] for n in expected]
    assert (tmp_path / "kept.de").read_text().splitlines() == [targets[n] for n in expected]
    assert len(set(expected) & good) >= 25 and not set(expected) - good  # the noise is what went
    assert f"kept {len(expected)} of 60 pairs" in result.stderr + result.stdout


def test_logprob_keep_needs_files_named_by_their_languages(trained_checkpoint, tmp_path):
    (tmp_path / "a.txt").write_text("red dog\n")
    (tmp_path / "b.txt").write_text("red dog\n")
    checkpoint = ["logprob", "--checkpoint", str(trained_checkpoint)]
    one_line_error(run_nmt(*checkpoint, "--keep-prefix", "kept", input="red dog\tred dog\n", cwd=tmp_path,
                           check=False), "give both")
    one_line_error(run_nmt(*checkpoint, "--source", "a.txt", "--target", "b.txt", "--keep-prefix", "kept",
                           cwd=tmp_path, check=False), "do not say two")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
