"""More BLEU per CPU-minute: the parameters' exponential moving average, search settings tuned on the valid split,
and TensorBoard scalars."""

import json
import shutil

import pytest
import torch

from conftest import run_nmt
from nmt.checkpoint import load_checkpoint
from nmt.config import replace_fields, transformer_tiny
from nmt.train.ema import ema_decay_at
from nmt.train.trainer import Trainer


def tiny(**overrides):
    preset = transformer_tiny()
    model = replace_fields(preset.model, {"dropout": 0.1})
    train = replace_fields(preset.train, {"max_updates": 6, "log_interval": 1, "save_interval_updates": 3,
                                          "valid_bleu": False, **overrides})
    return model, train


def test_ema_weights_follow_the_formula_after_a_few_updates(copy_data, tmp_path):
    """Each update's weights are recorded, and the EMA is recomputed from them here, step by step."""
    model, train = tiny(max_updates=4, ema_decay=0.9, save_interval_updates=0)
    trainer = Trainer(copy_data, tmp_path / "run", model, train)
    expected = [p.detach().clone() for p in trainer.model.parameters()]  # the average starts at the initial weights
    original_update = trainer.ema.update

    def record(update):
        for average, weight in zip(expected, trainer.model.parameters()):
            decay = min(0.9, (1 + update) / (10 + update))
            average.mul_(decay).add_(weight.detach(), alpha=1 - decay)
        original_update(update)

    trainer.ema.update = record
    trainer.run()
    assert trainer.progress.update == 4
    for average, ours in zip(expected, trainer.ema.model.parameters()):
        torch.testing.assert_close(ours, average, rtol=1e-5, atol=1e-6)
    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11) and ema_decay_at(0.999, 10_000) == 0.999
    # The checkpoint's model is the average; the raw weights are in the training state.
    payload = load_checkpoint(tmp_path / "run" / "checkpoint_last.pt")
    for name, tensor in trainer.ema.model.state_dict().items():
        assert torch.equal(payload["model"][name], tensor.cpu())
    raw = payload["training"]["raw_model"]
    assert any(not torch.equal(raw[name], payload["model"][name]) for name in raw)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(raw[name], tensor.cpu())


def test_resume_with_ema_is_exact(copy_data, tmp_path):
    model, train = tiny(ema_decay=0.99)
    Trainer(copy_data, tmp_path / "straight", model, train).run()
    Trainer(copy_data, tmp_path / "resumed", model, replace_fields(train, {"max_updates": 3})).run()
    Trainer(copy_data, tmp_path / "resumed", model, train, resume=True).run()

    def losses(run):
        return {r["update"]: r["loss"] for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text()
                                                     .splitlines()) if "loss" in r}
    assert losses("straight") == losses("resumed")
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint_last.pt")
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint_last.pt")
    for name in straight["model"]:
        assert torch.equal(straight["model"][name], resumed["model"][name]), name
        assert torch.equal(straight["training"]["raw_model"][name], resumed["training"]["raw_model"][name]), name


def test_ema_checkpoints_average_and_translate(copy_data, tmp_path):
    model, train = tiny(ema_decay=0.9)
    Trainer(copy_data, tmp_path / "run", model, train).run()
    run_nmt("average-checkpoints", str(tmp_path / "run"), "--last", "2", "--output", str(tmp_path / "avg.pt"))
    result = run_nmt("translate", "--checkpoint", str(tmp_path / "avg.pt"), input="red dog\n")
    assert result.stdout.count("\n") == 1


@pytest.fixture(scope="module")
def tuned(trained_checkpoint, copy_data, tmp_path_factory):
    """A copy of the trained checkpoint tuned on a data dir whose test split is gone: tuning must not need it."""
    folder = tmp_path_factory.mktemp("tune")
    checkpoint = folder / "model.pt"
    shutil.copy(trained_checkpoint, checkpoint)
    data = folder / "data"
    shutil.copytree(copy_data, data)
    for path in data.glob("test.*"):
        path.unlink()  # reading the test split would now fail
    result = run_nmt("tune", str(checkpoint), str(data), "--lenpen", "0.0,1.0,2.0", "--json")
    return checkpoint, json.loads(result.stdout)


def test_tune_chooses_on_the_valid_split_and_stores_the_winner(tuned):
    checkpoint, report = tuned
    trials = report["trials"]
    assert len(trials) == 6 and {t["lenpen_style"] for t in trials} == {"gnmt", "length"}
    best = max((t for t in trials if t["lenpen_style"] == "gnmt"), key=lambda t: t["bleu"])
    stored = load_checkpoint(checkpoint)["search"]
    assert (stored["lenpen"], stored["lenpen_style"], stored["beam"]) == (best["lenpen"], "gnmt", 4)
    assert stored["tuned_on"] == "valid" and stored["length_style"]["lenpen"] in (0.0, 1.0, 2.0)


def test_translate_uses_the_tuned_settings_unless_an_option_overrides_them(tuned, tmp_path):
    checkpoint, _ = tuned
    payload = load_checkpoint(checkpoint)
    payload["search"].update(beam=2, lenpen=1.5)  # distinct from the built-in defaults (4, 0.6)
    from nmt.checkpoint import save_checkpoint
    save_checkpoint(payload, tmp_path / "m.pt")
    line = "red dog runs with a ball\n"
    default = run_nmt("translate", "--checkpoint", str(tmp_path / "m.pt"), "--nbest", "2", input=line)
    assert "search settings `nmt tune` stored: beam 2, lenpen 1.5, the gnmt style" in default.stderr
    assert len(default.stdout.splitlines()) == 2  # nbest 2 of beam 2
    explicit = run_nmt("translate", "--checkpoint", str(tmp_path / "m.pt"), "--beam", "3", "--nbest", "3",
                       input=line)
    assert len(explicit.stdout.splitlines()) == 3
    assert "stored: lenpen 1.5, the gnmt style (beam 3 as given)" in explicit.stderr  # the user's beam is theirs
    all_given = run_nmt("translate", "--checkpoint", str(tmp_path / "m.pt"), "--beam", "3", "--lenpen", "0.6",
                        "--lenpen-style", "gnmt", input=line)
    assert "nmt tune" not in all_given.stderr
    refused = run_nmt("translate", "--checkpoint", str(tmp_path / "m.pt"), "--nbest", "3", input=line, check=False)
    assert refused.returncode == 1 and "--nbest" in refused.stderr  # beam 2 (tuned) cannot give 3


def test_tensorboard_scalars_are_written_and_read_back(copy_data, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, train = tiny(tensorboard=str(tmp_path / "tb"), valid_bleu=True)
    Trainer(copy_data, tmp_path / "run", model, train).run()
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/nll_loss", "train/lr", "train/grad_norm", "train/tgt_tokens_per_s",
            "valid/loss", "valid/bleu"} <= tags
    losses = [event.value for event in events.Scalars("train/loss")]
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses == pytest.approx([m["loss"] for m in metrics if "loss" in m])


def test_tune_stores_nothing_when_the_grid_cannot_tell_settings_apart(copy_data, trained_checkpoint, tmp_path):
    """A model that learned nothing (all weights zero) scores 0.00 with every setting: storing the grid's first would
    present an accident as a choice."""
    from nmt.checkpoint import save_checkpoint
    payload = load_checkpoint(trained_checkpoint)
    payload["model"] = {name: torch.zeros_like(tensor) for name, tensor in payload["model"].items()}
    payload.pop("search", None)
    save_checkpoint(payload, tmp_path / "blank.pt")
    result = run_nmt("tune", str(tmp_path / "blank.pt"), str(copy_data), "--beam", "1", "--lenpen", "0.2,1.0")
    assert "every setting scored the same valid BLEU (0.00)" in result.stderr and "nothing was stored" in result.stderr
    assert "train longer" in result.stderr
    assert "search" not in load_checkpoint(tmp_path / "blank.pt")
