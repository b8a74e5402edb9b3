"""Subword regularization on the fly (`nmt train --subword-alpha`): batches segmented anew, the text unchanged,
the same batch segmented the same way (resumable), and a run that trains with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_nmt

from nmt.data.binary import load_manifest
from nmt.data.dataset import ParallelDataset
from nmt.train.subword import SampledSegmentation, with_subword_sampling
from nmt.vocab import Vocab


@pytest.fixture(scope="module")
def split(copy_data):
    manifest = load_manifest(copy_data)
    return ParallelDataset(copy_data, "train", manifest), Vocab.from_folder(copy_data, manifest)


def texts(batch, vocab, side):
    rows = batch.src_tokens if side == "src" else batch.target
    return [vocab.decode([[t for t in row.tolist() if t not in (vocab.pad_id, vocab.eos_id)]])[0] for row in rows]


def test_a_sampled_batch_holds_the_same_text_in_other_pieces(split):
    dataset, vocab = split
    indices = np.arange(0, 64)
    plain = dataset.collate(indices)
    sampled = SampledSegmentation(dataset, vocab, alpha=0.3, seed=1).collate(indices)
    assert texts(sampled, vocab, "src") == texts(plain, vocab, "src")
    assert texts(sampled, vocab, "tgt") == texts(plain, vocab, "tgt")
    assert sampled.src_count > plain.src_count and sampled.tgt_count > plain.tgt_count  # merges dropped: more pieces
    assert sampled.prev_tokens[:, 0].eq(vocab.bos_id).all() and sampled.target.eq(vocab.eos_id).sum() == 64


def test_the_same_batch_is_segmented_the_same_way_and_another_seed_differently(split):
    dataset, vocab = split
    indices = np.arange(100, 140)
    first = SampledSegmentation(dataset, vocab, alpha=0.3, seed=1).collate(indices)
    again = SampledSegmentation(dataset, vocab, alpha=0.3, seed=1).collate(indices)
    other = SampledSegmentation(dataset, vocab, alpha=0.3, seed=2).collate(indices)
    assert first.src_tokens.equal(again.src_tokens) and first.target.equal(again.target)  # what a resume gets
    assert first.src_tokens.tolist() != other.src_tokens.tolist()
    assert with_subword_sampling(dataset, vocab, 0.0, 1) is dataset  # off: the data's own segmentation


def test_training_with_subword_sampling_runs_and_is_reproducible(copy_data, tmp_path):
    def losses(save_dir):
        run_nmt("train", str(copy_data), "--arch", "transformer_tiny", "--save-dir", str(save_dir), "--max-updates",
                "20", "--log-interval", "5", "--subword-alpha", "0.1", "--no-valid-bleu", "--threads", "1")
        records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in records if "loss" in r]

    first, second = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert len(first) >= 4 and first == second
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["train"]["subword_alpha"] == 0.1
