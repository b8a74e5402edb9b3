"""`nmt prepare` as a library: cleaning, SentencePiece, binarized splits and the manifest, and bad corpora."""

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_nmt, write_copy_corpus
from nmt.data.binary import load_manifest
from nmt.data.dataset import ParallelDataset
from nmt.data.prepare import PrepareOptions, find_side, prepare_corpus
from nmt.data.text import CleaningOptions, normalize, read_lines
from nmt.errors import NmtError
from nmt.vocab import EOS_ID, Vocab


def splits_of(folder, names=("train", "valid", "test")):
    return {name: (find_side(str(folder / name), "src"), find_side(str(folder / name), "tgt")) for name in names}


def test_prepared_dataset_round_trips_through_the_vocabulary(copy_corpus, copy_data):
    manifest = load_manifest(copy_data)
    assert manifest["src"] == "src" and manifest["tgt"] == "tgt"
    assert manifest["special_ids"] == {"pad": 0, "unk": 1, "bos": 2, "eos": 3}
    assert manifest["token_dtype"] == "uint16"
    vocab = Vocab.from_file(copy_data / "spm.model")
    assert len(vocab) == manifest["vocab_size"] <= 400
    test = ParallelDataset(copy_data, "test")
    raw = (copy_corpus / "test.tgt").read_text().splitlines()
    assert len(test) == len(raw) == manifest["splits"]["test"]["sentences"]
    for index in (0, 17, len(raw) - 1):
        ids = test.tgt[index]
        assert ids[-1] == EOS_ID
        assert vocab.decode([ids[:-1].tolist()])[0] == raw[index]
    assert isinstance(test.src.tokens, np.memmap)  # memory-mapped, not read whole
    assert manifest["splits"]["train"]["src"]["tokens"] == int(ParallelDataset(copy_data, "train").src_lengths.sum())


def test_valid_and_test_are_kept_verbatim_while_train_is_cleaned(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    train_src = ["a  dog\u00a0runs", "", "the cat", "x", "  ", "big red ball"] * 50
    train_tgt = ["ein Hund läuft", "leer", "die Katze", "", "nichts", "großer roter Ball"] * 50
    (corpus / "train.src").write_text("\n".join(train_src) + "\n")
    (corpus / "train.tgt").write_text("\n".join(train_tgt) + "\n")
    valid_src = ["  spaced   line ", "", "cafe\u0301"]  # odd spacing, an empty line, a decomposed é
    valid_tgt = ["x", "empty source", "Café"]
    (corpus / "valid.src").write_text("\n".join(valid_src) + "\n")
    (corpus / "valid.tgt").write_text("\n".join(valid_tgt) + "\n")
    out = tmp_path / "out"
    options = PrepareOptions(vocab_size=300, cleaning=CleaningOptions(max_ratio=3.0))
    manifest = prepare_corpus(out, "src", "tgt", splits_of(corpus, ("train", "valid")), options, {}).manifest
    report = manifest["cleaning"]["train"]
    assert report["dropped"] == {"empty": 150} and report["kept"] == 150, report
    assert (out / "valid.src").read_text().split("\n")[:3] == valid_src  # byte for byte
    assert manifest["splits"]["valid"]["sentences"] == 3
    assert normalize("a  dog\u00a0runs\r") == "a dog runs"
    assert normalize("cafe\u0301") == "caf\u00e9"


def test_gzipped_input_is_read(tmp_path, copy_corpus):
    corpus = tmp_path / "gz"
    corpus.mkdir()
    for name in ("train", "valid"):
        for side in ("src", "tgt"):
            data = (copy_corpus / f"{name}.{side}").read_bytes()
            with gzip.open(corpus / f"{name}.{side}.gz", "wb") as handle:
                handle.write(data)
    manifest = prepare_corpus(tmp_path / "out", "src", "tgt", splits_of(corpus, ("train", "valid")),
                              PrepareOptions(vocab_size=300), {}).manifest
    assert manifest["splits"]["valid"]["sentences"] == 100


def test_sides_of_different_lengths_are_an_error_naming_both_files(tmp_path, copy_corpus):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "train.src").write_text("a\nb\nc\n")
    (corpus / "train.tgt").write_text("a\nb\n")
    (corpus / "valid.src").write_text("a\n")
    (corpus / "valid.tgt").write_text("a\n")
    with pytest.raises(NmtError, match=r"train\.src has 3 lines but .*train\.tgt has 2"):
        prepare_corpus(tmp_path / "out", "src", "tgt", splits_of(corpus, ("train", "valid")), PrepareOptions(300), {})
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_invalid_utf8_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.src"
    bad.write_bytes(b"fine\nalso fine\nbroken \xff\xfe here\n")
    with pytest.raises(NmtError, match=r"bad\.src:3: not valid UTF-8"):
        list(read_lines(bad))


def test_pairs_over_the_length_ratio_are_dropped_and_counted(tmp_path):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "train.src").write_text("one two three four five six seven eight nine ten eleven twelve\nhi there\n" * 20)
    (corpus / "train.tgt").write_text("eins\nhallo da\n" * 20)
    (corpus / "valid.src").write_text("hi\n")
    (corpus / "valid.tgt").write_text("hallo\n")
    manifest = prepare_corpus(tmp_path / "out", "src", "tgt", splits_of(corpus, ("train", "valid")),
                              PrepareOptions(vocab_size=300), {}).manifest
    assert manifest["cleaning"]["train"] == {"kept": 20, "dropped": {"ratio": 20}}


def test_only_newline_ends_a_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_bytes("one\rstill one\u2028and still\r\ntwo\n".encode())
    assert list(read_lines(path)) == ["one\rstill one\u2028and still\r", "two"]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(NmtError, match="nope.src: file not found"):
        find_side(str(tmp_path / "nope"), "src")


def test_a_manifest_from_another_version_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "nmt-data", "version": 99}))
    with pytest.raises(NmtError, match="version 99"):
        load_manifest(tmp_path)


def _start_large_prepare(tmp_path):
    """`nmt prepare custom` of 150,000 pairs with 2 workers, started: (DATA_DIR, its arguments, the process)."""
    corpus = write_copy_corpus(tmp_path / "corpus", sizes=(("train", 150_000), ("valid", 50)))
    out = tmp_path / "data"
    args = ["prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(corpus / "train"),
            "--valid", str(corpus / "valid"), "--vocab-size", "300", "--workers", "2", "--out", str(out)]
    # A shell starts background jobs with SIGINT ignored, and Python keeps that; a terminal's Ctrl-C is not.
    restore_ctrl_c = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    process = subprocess.Popen([sys.executable, "-m", "nmt", *args], stderr=subprocess.PIPE, text=True,
                               preexec_fn=restore_ctrl_c,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    return out, args, process


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_leaves_no_half_written_file_and_a_rerun_resumes_where_it_stopped(tmp_path, stop):
    out, args, process = _start_large_prepare(tmp_path)
    for line in process.stderr:
        if "binarize/train" in line:  # the slow step has started: stop it at once (on a fast machine it can
            break                        # finish within half a second)
    process.send_signal(stop)
    rest = process.communicate(timeout=60)[1]
    assert process.returncode == 130 and "interrupted" in rest and "Traceback" not in rest, rest
    assert not (out / "manifest.json").exists() and not list(out.glob("train.*"))

    run_nmt(*args)
    ran = [json.loads(line)["step"] for line in (out / "prepare.jsonl").read_text().splitlines()]
    assert ran == ["index", "references/valid", "spm", "binarize/train", "binarize/valid"], "nothing ran twice"
    assert load_manifest(out)["splits"]["train"]["sentences"] == 150_000


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; it only waits to be reaped


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_prepare_takes_its_workers_with_it_and_a_rerun_completes(tmp_path):
    out, args, process = _start_large_prepare(tmp_path)
    for line in process.stderr:
        if "binarize/train" in line:  # workers are encoding shards
            break
    time.sleep(0.3)
    workers = _children(process.pid)
    assert len(workers) >= 2
    process.kill()
    process.wait()
    deadline = time.monotonic() + 1.0  # a shard takes seconds: only a worker killed with its parent is gone by then
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "orphaned workers outlived the killed prepare"
    run_nmt(*args)  # the rerun is not raced by orphans writing the same shard files
    assert load_manifest(out)["splits"]["train"]["sentences"] == 150_000
