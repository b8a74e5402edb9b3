"""DDP under torchrun (2 gloo processes on the CPU) computes what one process with --update-freq 2 computes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nmt.data.batching import make_batches
from nmt.data.dataset import ParallelDataset

HELPER = Path(__file__).parent / "helpers" / "train_and_record_gradients.py"
UPDATES = 3


def run(args: list[str], torchrun: bool) -> None:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] \
        if torchrun else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    result = subprocess.run(launcher + [str(HELPER), *args], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(copy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    run([str(copy_data), str(out / "single"), "--updates", str(UPDATES), "--update-freq", "2"], torchrun=False)
    run([str(copy_data), str(out / "ddp"), "--updates", str(UPDATES)], torchrun=True)
    run([str(copy_data), str(out / "nosync"), "--updates", str(UPDATES), "--no-sync"], torchrun=True)
    return out


def test_the_ranks_get_unequal_token_counts(copy_data):
    data = ParallelDataset(copy_data, "train")
    counts = [[int(data.tgt_lengths[batch].sum()) for batch in
               make_batches(data.src_lengths, data.tgt_lengths, 256, seed=1, epoch=1, rank=rank,
                            world_size=2).batches[:UPDATES]] for rank in (0, 1)]
    assert all(a != b for a, b in zip(*counts)), counts


def test_two_ranks_have_the_gradients_and_weights_of_one_process_accumulating_two_batches(runs):
    for update in range(1, UPDATES + 1):
        single = torch.load(runs / "single" / f"grads_rank0_update{update}.pt")
        for rank in (0, 1):
            synchronized = torch.load(runs / "ddp" / f"grads_rank{rank}_update{update}.pt")
            torch.testing.assert_close(synchronized, single, rtol=1e-5, atol=1e-7)
    single = torch.load(runs / "single" / "weights_rank0.pt")
    for rank in (0, 1):
        torch.testing.assert_close(torch.load(runs / "ddp" / f"weights_rank{rank}.pt"), single, rtol=1e-5,
                                   atol=1e-6)
    assert (runs / "ddp" / "run" / f"checkpoint_{UPDATES}.pt").is_file()  # rank 0 wrote it


def test_without_gradient_synchronization_the_comparison_fails(runs):
    single = torch.load(runs / "single" / "grads_rank0_update1.pt")
    local = torch.load(runs / "nosync" / "grads_rank0_update1.pt")
    assert not torch.allclose(local, single, rtol=1e-5, atol=1e-7)
    weights = [torch.load(runs / "nosync" / f"weights_rank{rank}.pt") for rank in (0, 1)]
    assert not torch.allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6)  # the ranks drifted apart
    assert np.isfinite(local.numpy()).all()
