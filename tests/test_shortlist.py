"""`nmt export ctranslate2 --shortlist DATA_DIR`: a lexical shortlist (CTranslate2's vocabulary map) beside the model,
which the CTranslate2 engine decodes with: each batch's output layer covers only the target pieces its sources map to.
On the tiny copy-task model and its real vocabulary."""

from __future__ import annotations

import json
import math

import pytest

from conftest import run_nmt, write_copy_corpus

pytest.importorskip("ctranslate2")


def vocabulary_map(folder) -> dict[str, list[str]]:
    """vmap.txt as {source piece: target pieces}; the empty key holds the pieces every batch may use."""
    rules = {}
    for line in (folder / "vmap.txt").read_text(encoding="utf-8").splitlines():
        key, _, values = line.partition("\t")
        rules[key] = values.split()
    return rules


@pytest.fixture(scope="module")
def copy_shortlist(trained_checkpoint, copy_data, tmp_path_factory):
    exported = tmp_path_factory.mktemp("shortlist") / "ct2"
    run_nmt("export", "ctranslate2", str(trained_checkpoint), str(exported), "--shortlist", str(copy_data),
            "--shortlist-frequent", "10", "--shortlist-per-source", "5")
    return exported


def test_the_shortlist_maps_each_source_piece_to_the_targets_it_is_seen_with(copy_shortlist, copy_data):
    rules = vocabulary_map(copy_shortlist)
    assert len(rules[""]) == 10  # the ten most frequent target pieces, in every batch
    mapped = {key: values for key, values in rules.items() if key}
    assert len(mapped) >= 20 and all(0 < len(values) <= 5 for values in mapped.values())
    # The copy task: a source piece is most often seen with itself (unless it is among the frequent ones).
    itself = sum(key in values for key, values in mapped.items() if key not in rules[""])
    assert itself >= 0.9 * sum(key not in rules[""] for key in mapped)
    marker = json.loads((copy_shortlist / "nmt.json").read_text(encoding="utf-8"))
    assert marker["shortlist"] == {"data": str(copy_data), "pairs": 3000, "frequent": 10, "per_source": 5,
                                   "source_pieces_mapped": len(mapped)}


def test_a_shortlist_that_covers_the_output_translates_as_the_full_vocabulary(trained_checkpoint, copy_shortlist,
                                                                                copy_data, tmp_path):
    full = tmp_path / "full"
    run_nmt("export", "ctranslate2", str(trained_checkpoint), str(full))
    options = ["--engine", "ctranslate2", "--beam", "4", "--input", str(copy_data / "test.src")]
    everything = run_nmt("translate", "--checkpoint", str(full), *options).stdout.splitlines()
    shortlisted = run_nmt("translate", "--checkpoint", str(copy_shortlist), *options).stdout.splitlines()
    assert len(shortlisted) == len(everything) == 100
    same = sum(a == b for a, b in zip(everything, shortlisted))
    assert same >= math.ceil(0.98 * len(everything)), [(a, b) for a, b in zip(everything, shortlisted) if a != b]


def test_each_batch_decodes_only_over_the_pieces_its_sources_map_to(trained_checkpoint, tmp_path):
    # Training pairs whose every target is "blue": the shortlist lets any source produce only blue's pieces.
    corpus = write_copy_corpus(tmp_path / "corpus", sizes=(("train", 200), ("valid", 5), ("test", 5)))
    lines = (corpus / "train.src").read_text(encoding="utf-8").splitlines()
    (corpus / "train.tgt").write_text("blue\n" * len(lines), encoding="utf-8")
    prefix = str(corpus / "train")
    run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", prefix, "--valid", str(corpus / "valid"),
            "--test", str(corpus / "test"), "--vocab", str(trained_checkpoint), "--out", str(tmp_path / "blue"))
    exported = tmp_path / "ct2"
    run_nmt("export", "ctranslate2", str(trained_checkpoint), str(exported), "--shortlist", str(tmp_path / "blue"),
            "--shortlist-frequent", "0")
    allowed = set(vocabulary_map(exported)["▁red"])
    assert allowed and allowed == set(vocabulary_map(exported)["▁dog"])
    full = tmp_path / "full"
    run_nmt("export", "ctranslate2", str(trained_checkpoint), str(full))
    sentence = "red dog runs near the water\n"
    unrestricted = run_nmt("translate", "--engine", "ctranslate2", "--checkpoint", str(full), input=sentence)
    assert unrestricted.stdout == sentence  # the model copies
    # At least 3 pieces (eos counted): the model would rather stop at once than say anything but its copy.
    restricted = run_nmt("translate", "--engine", "ctranslate2", "--checkpoint", str(exported), "--json",
                         "--min-len", "3", input=sentence)
    pieces = json.loads(restricted.stdout)["tokens"]
    assert "▁blue" in pieces and set(pieces) <= allowed | {"<unk>", "<s>"}, pieces  # CTranslate2 adds the specials


def test_a_shortlist_from_data_in_another_vocabulary_or_no_data_is_refused_in_one_line(trained_checkpoint,
                                                                                     tmp_path):
    corpus = write_copy_corpus(tmp_path / "corpus", sizes=(("train", 3000), ("valid", 5), ("test", 5)))
    other = tmp_path / "other"  # the same text, a vocabulary of its own
    run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(corpus / "train"), "--valid",
            str(corpus / "valid"), "--test", str(corpus / "test"), "--vocab-size", "300", "--out", str(other))
    for data, message in ((other, "prepared with another vocabulary than the checkpoint's"),
                          (tmp_path / "missing", "no such folder")):
        failed = run_nmt("export", "ctranslate2", str(trained_checkpoint), str(tmp_path / "ct2"), "--shortlist",
                         str(data), check=False)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1 and not (tmp_path / "ct2").exists()
