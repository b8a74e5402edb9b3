"""Train a dropout-free transformer_tiny for a few updates, saving every update's gradients (after they are
synchronized and normalized) and the final weights. Run it plainly (one process) or under torchrun (DDP); the
distributed tests compare the two.

    python train_and_record_gradients.py DATA_DIR OUT_DIR --updates K --update-freq F [--no-sync]
"""

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nmt.config import replace_fields, transformer_tiny  # noqa: E402
from nmt.train import distributed  # noqa: E402
from nmt.train.trainer import Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--update-freq", type=int, default=1)
    parser.add_argument("--no-sync", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = transformer_tiny()
    model = replace_fields(preset.model, {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0})
    train = replace_fields(preset.train, {
        "lr_schedule": "constant", "lr": 1e-3, "max_tokens": 256, "update_freq": args.update_freq,
        "max_updates": args.updates, "save_interval_updates": 0, "valid_bleu": False, "log_interval": 1,
        "clip_norm": 0.0})
    rank = int(os.environ.get("RANK", "0"))

    class RecordingTrainer(Trainer):
        """Saves every update's gradients once they are synchronized and normalized, before clipping; with
        --no-sync, leaves each rank's gradients its own (the ranks then train different models: the tests' proof
        that they would see a missing all-reduce)."""

        def _clip_gradients(self, update):
            flat = torch.cat([p.grad.detach().flatten() for p in self.model.parameters()])
            torch.save(flat.clone(), args.out_dir / f"grads_rank{rank}_update{update}.pt")
            return super()._clip_gradients(update)

        def _gradient_sync(self, last):
            return super()._gradient_sync(last and not args.no_sync)

    trainer = RecordingTrainer(args.data_dir, args.out_dir / "run", model, train)
    try:
        trainer.run()
        flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        torch.save(flat.clone(), args.out_dir / f"weights_rank{rank}.pt")
    finally:
        # As `nmt train` does: a process that exits with its gloo group alive can abort in the group's threads
        # ("terminate called without an active exception") after all is saved; see Trainer.close().
        distributed.teardown()


if __name__ == "__main__":
    main()
