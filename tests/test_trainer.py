"""The trainer: an interrupted run resumed equals the uninterrupted one; limits stop it; checkpoints rotate."""

import json

import pytest
import torch

from nmt.config import replace_fields, transformer_tiny
from nmt.errors import NmtError
from nmt.train.trainer import Trainer


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


def test_bf16_autocast_trains_on_the_cpu(copy_data, tmp_path):
    """The GPU's mixed-precision path, exercised where CI runs: autocast to bf16, loss kept in fp32."""
    model, train = tiny(max_updates=20, precision="bf16", save_interval_updates=0, max_epochs=0)
    Trainer(copy_data, tmp_path / "bf16", model, train).run()
    recorded = losses(tmp_path / "bf16")
    assert recorded[20] < recorded[10] and all(value == value for value in recorded.values())  # falls, no NaN
