"""The trainer: an interrupted run resumed equals the uninterrupted one; limits stop it; checkpoints rotate."""

import json
from pathlib import Path

import pytest
import torch

from conftest import run_nmt
from nmt.config import replace_fields, transformer_tiny
from nmt.errors import NmtError
from nmt.train.trainer import NullReporter, Trainer


def losses(save_dir):
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["update"]: r["loss"] for r in records if "loss" in r}


def tiny(**overrides):
    preset = transformer_tiny()
    settings = {"log_interval": 10, "save_interval_updates": 30, "valid_bleu": False, "max_tokens": 512, **overrides}
    return preset.model, replace_fields(preset.train, settings)


def test_resumed_run_continues_exactly_where_it_stopped(copy_data, tmp_path):
    torch.set_num_threads(1)
    model, train = tiny(max_updates=60)
    Trainer(copy_data, tmp_path / "straight", model, train).run()

    model, first_half = tiny(max_updates=30)
    Trainer(copy_data, tmp_path / "resumed", model, first_half).run()
    model, second_half = tiny(max_updates=60)
    summary = Trainer(copy_data, tmp_path / "resumed", model, second_half, resume=True).run()

    assert summary["update"] == 60
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert [resumed[u] for u in (40, 50, 60)] == [straight[u] for u in (40, 50, 60)]
    torch.set_num_threads(2)


def test_limits_and_checkpoint_rotation(copy_data, tmp_path):
    model, train = tiny(max_epochs=1, max_updates=0, save_interval_updates=5, keep_last=2)
    summary = Trainer(copy_data, tmp_path / "run", model, train).run()
    assert summary["stop_reason"] == "reached --max-epochs 1"
    interval = sorted((tmp_path / "run").glob("checkpoint_[0-9]*.pt"))
    assert 2 <= len(interval) <= 4  # the newest 2 and the best 2 by validation loss (often the same)
    assert (tmp_path / "run" / "checkpoint_last.pt").samefile(
        max(interval, key=lambda p: int(p.stem.split("_")[1])))


def test_resume_with_another_architecture_is_refused(copy_data, tmp_path):
    model, train = tiny(max_updates=5)
    Trainer(copy_data, tmp_path / "run", model, train).run()
    wider = replace_fields(model, {"d_ff": 256})
    with pytest.raises(NmtError, match="d_ff"):
        Trainer(copy_data, tmp_path / "run", wider, train, resume=True)


def test_resume_inside_an_epoch_with_another_batch_budget_or_seed_is_refused(copy_data, tmp_path):
    """The saved position counts batches of a plan that --max-tokens and --seed made; others would skip pairs."""
    model, train = tiny(max_updates=5, max_epochs=0, save_interval_updates=5)
    Trainer(copy_data, tmp_path / "run", model, train).run()
    for changed in ({"max_tokens": 1024}, {"seed": 7}):
        with pytest.raises(NmtError, match=f"--{next(iter(changed)).replace('_', '-')} .* would repeat or skip"):
            Trainer(copy_data, tmp_path / "run", model, replace_fields(train, {**changed, "max_updates": 10}),
                    resume=True)
    # What only steers the run may change: a later limit, another learning rate, other intervals.
    steered = replace_fields(train, {"max_updates": 8, "lr": 0.5, "log_interval": 2, "save_interval_updates": 4})
    summary = Trainer(copy_data, tmp_path / "run", model, steered, resume=True).run()
    assert summary["update"] == 8


def test_resume_against_another_corpus_or_vocabulary_is_refused(copy_data, copy_corpus, tmp_path):
    from nmt.checkpoint import load_checkpoint, save_checkpoint
    from nmt.data.prepare import PrepareOptions, find_side, prepare_corpus

    model, train = tiny(max_updates=5, max_epochs=0, save_interval_updates=5)
    Trainer(copy_data, tmp_path / "run", model, train).run()
    other = tmp_path / "other-data"  # the same text, another SentencePiece model
    splits = {split: (find_side(str(copy_corpus / split), "src"), find_side(str(copy_corpus / split), "tgt"))
              for split in ("train", "valid", "test")}
    prepare_corpus(other, "src", "tgt", splits, PrepareOptions(vocab_size=420), {"recipe": "test"})
    with pytest.raises(NmtError, match="not the vocabulary the run .* was trained with"):
        Trainer(other, tmp_path / "run", model, replace_fields(train, {"max_updates": 10}), resume=True)
    # The same vocabulary over another number of pairs: as if the run had been trained on another corpus.
    last = tmp_path / "run" / "checkpoint_last.pt"
    payload = load_checkpoint(last)
    payload["training"]["train_sentences"] += 1
    save_checkpoint(payload, last)
    with pytest.raises(NmtError, match="training pairs, the run .* was trained on"):
        Trainer(copy_data, tmp_path / "run", model, replace_fields(train, {"max_updates": 10}), resume=True)


def test_bf16_autocast_trains_on_the_cpu(copy_data, tmp_path):
    """The GPU's mixed-precision path, exercised where CI runs: autocast to bf16, loss kept in fp32."""
    model, train = tiny(max_updates=20, precision="bf16", save_interval_updates=0, max_epochs=0)
    Trainer(copy_data, tmp_path / "bf16", model, train).run()
    recorded = losses(tmp_path / "bf16")
    assert recorded[20] < recorded[10] and all(value == value for value in recorded.values())  # falls, no NaN


def test_auto_precision_is_bf16_only_where_the_cpu_has_it_and_the_run_says_which(copy_data, tmp_path):
    from nmt.device import native_bf16

    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    assert native_bf16(torch.device("cpu")) == ("avx512_bf16" in flags or "amx_bf16" in flags)
    expected = "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    result = run_nmt("train", str(copy_data), "--arch", "transformer_tiny", "--precision", "auto", "--save-dir",
                     str(tmp_path / "auto"), "--max-updates", "3", "--no-valid-bleu", "--threads", "1")
    assert f"parameters on cpu in {expected}," in result.stderr
    assert json.loads((tmp_path / "auto" / "config.json").read_text())["train"]["precision"] == expected


def test_a_truncated_checkpoint_is_refused_and_the_one_before_it_used(copy_data, tmp_path):
    torch.set_num_threads(1)
    model, train = tiny(max_updates=30, save_interval_updates=10, log_interval=1)
    Trainer(copy_data, tmp_path / "straight", model, train).run()
    model, first = tiny(max_updates=20, save_interval_updates=10, log_interval=1)
    Trainer(copy_data, tmp_path / "run", model, first).run()
    last = tmp_path / "run" / "checkpoint_last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a crash mid-write (it is the same file as checkpoint_20.pt)
    messages = []

    class Recorder(NullReporter):
        def message(self, text):
            messages.append(text)

    resumed = Trainer(copy_data, tmp_path / "run", model, tiny(max_updates=30, save_interval_updates=10,
                                                                log_interval=1)[1], resume=True, reporter=Recorder())
    assert resumed.progress.update == 10
    assert "checkpoint_last.pt" in messages[0] and "checkpoint_10.pt" in messages[0]
    resumed.run()
    straight, again = losses(tmp_path / "straight"), losses(tmp_path / "run")
    assert [again[u] for u in range(11, 31)] == [straight[u] for u in range(11, 31)]
    torch.set_num_threads(2)


def test_patience_stops_a_run_whose_validation_loss_no_longer_improves(copy_data, tmp_path):
    model, train = tiny(max_updates=100, save_interval_updates=5, lr_schedule="constant", lr=1e-12, patience=2)
    summary = Trainer(copy_data, tmp_path / "run", model, train).run()
    assert summary["stop_reason"].startswith("early stop") and summary["update"] == 15


def test_init_from_starts_from_the_weights_with_a_fresh_optimizer_and_schedule(copy_data, trained_checkpoint,
                                                                                  tmp_path):
    model, train = tiny(max_updates=3, log_interval=1)
    fresh = Trainer(copy_data, tmp_path / "fresh", model, train)
    fresh.run()
    model, tuned_config = tiny(max_updates=3, log_interval=1, init_from=str(trained_checkpoint))
    tuned = Trainer(copy_data, tmp_path / "tuned", model, tuned_config)
    assert tuned.progress.update == 0 and not tuned.optimizer.state  # nothing but the weights
    tuned.run()
    assert losses(tmp_path / "tuned")[1] < losses(tmp_path / "fresh")[1] / 2  # it starts where the model was


def test_nonfinite_updates_are_skipped_counted_and_stop_the_run_when_they_persist(copy_data, tmp_path):
    model, train = tiny(max_updates=20, lr_schedule="constant", lr=1e30, max_nonfinite=3, log_interval=1)
    trainer = Trainer(copy_data, tmp_path / "run", model, train)
    with pytest.raises(NmtError, match="3 updates in a row had an inf/NaN"):
        trainer.run()
    assert trainer.progress.skipped_nonfinite == 3
