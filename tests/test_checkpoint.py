"""Checkpoints: atomic writes, safe loading (no pickled code runs), refusal of foreign or damaged files, averaging."""

import os
import pickle

import pytest
import torch

from nmt.checkpoint import (average_checkpoints, load_checkpoint, load_model, prune_checkpoints, save_checkpoint,
                            select_checkpoints)
from nmt.errors import NmtError


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/nmt-pwned",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = "/tmp/nmt-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pt"
    torch.save({"format": "nmt-checkpoint", "payload": RunsCode()}, path)
    with pytest.raises(NmtError, match="refused to load.*(?i:unsupported global)"):  # names what it refused
        load_checkpoint(path)
    assert not os.path.exists(marker)
    path.write_bytes(pickle.dumps(RunsCode()))
    with pytest.raises(NmtError):
        load_checkpoint(path)
    assert not os.path.exists(marker)


def test_truncated_and_foreign_files_are_refused(trained_checkpoint, tmp_path):
    data = trained_checkpoint.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(NmtError, match="truncated or corrupt"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    with pytest.raises(NmtError, match="not an nmt checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(NmtError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")


def test_weights_of_another_architecture_are_refused(trained_checkpoint, tmp_path):
    payload = load_checkpoint(trained_checkpoint)
    payload["model_config"]["d_ff"] *= 2
    path = tmp_path / "mismatch.pt"
    save_checkpoint(payload, path)
    with pytest.raises(NmtError, match="do not fit the architecture"):
        load_model(path)


def test_save_is_atomic_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"x": torch.ones(3)}, path)
    save_checkpoint({"x": torch.zeros(3)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]

    class Unsaveable:
        pass
    with pytest.raises(Exception):
        save_checkpoint({"x": Unsaveable()}, path)
    assert torch.load(path, weights_only=True)["x"].sum() == 0  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_average_is_the_parameter_mean(trained_checkpoint, tmp_path):
    first = load_checkpoint(trained_checkpoint)
    second = dict(first)
    second["model"] = {name: tensor + 1.0 if tensor.is_floating_point() else tensor
                       for name, tensor in first["model"].items()}
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(first, a)
    save_checkpoint(second, b)
    averaged = average_checkpoints([a, b])
    name = "decoder_layers.0.ffn.linear1.weight"
    torch.testing.assert_close(averaged["model"][name], first["model"][name] + 0.5)
    assert "training" not in averaged


def test_selection_by_last_and_by_valid_loss(trained_checkpoint):
    save_dir = trained_checkpoint.parent
    assert [p.name for p in select_checkpoints([save_dir], last=2)] == ["checkpoint_200.pt", "checkpoint_300.pt"]
    best = select_checkpoints([save_dir], best=1)
    assert best[0].name == os.path.basename(os.path.realpath(save_dir / "checkpoint_best.pt")) or \
        os.path.samefile(best[0], save_dir / "checkpoint_best.pt")
    with pytest.raises(NmtError, match="exactly one"):
        select_checkpoints([save_dir])


def test_pruning_keeps_the_newest_and_the_best(tmp_path):
    import json
    losses = {100: 3.0, 200: 2.5, 300: 2.7, 400: 2.9, 500: 3.1}
    for update in losses:
        (tmp_path / f"checkpoint_{update}.pt").write_bytes(b"x")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"update": u, "valid_loss": v}) + "\n"
                                                    for u, v in losses.items()))
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint_*.pt")) == [
        "checkpoint_200.pt", "checkpoint_300.pt", "checkpoint_400.pt", "checkpoint_500.pt"]
