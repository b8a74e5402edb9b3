"""`--tensorboard DIR`: the scalars of metrics.jsonl as TensorBoard event files, written by rank 0 (metrics.jsonl stays
the record; this is a view of it). Training records go under train/, validation records under valid/ without their
valid_ prefix: train/loss, train/lr, train/grad_norm, train/tgt_tokens_per_s, valid/loss, valid/bleu, ..."""

from __future__ import annotations

from pathlib import Path

from nmt.errors import NmtError

SKIPPED = ("update", "epoch", "wall")


class TensorBoardScalars:
    def __init__(self, folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise NmtError("--tensorboard needs the tensorboard package: pip install 'nmt[tensorboard]'") from None
        self.writer = SummaryWriter(log_dir=str(folder))

    def write(self, record: dict) -> None:
        validation = any(key.startswith("valid_") for key in record)
        for key, value in record.items():
            if key in SKIPPED or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            name = f"valid/{key.removeprefix('valid_')}" if validation else f"train/{key}"
            self.writer.add_scalar(name, value, record["update"])
        for pair, figures in record.get("pairs", {}).items():  # a multilingual run's figures of each pair
            for key, value in figures.items():
                self.writer.add_scalar(f"valid/{pair}/{key.removeprefix('valid_')}", value, record["update"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
