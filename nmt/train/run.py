"""One training run from Python, as `nmt train` starts it: the host set up, the trainer run, the processes torn down.

    from nmt.train.run import train
    summary = train(Path("data/multi30k-en-de"), Path("runs/small"), *resolve_configs(run_defaults(...), {}))
"""

from __future__ import annotations

from pathlib import Path

from nmt.config import ModelConfig, TrainConfig
from nmt.device import pick_device
from nmt.train import distributed
from nmt.train.host_memory import keep_freed_memory
from nmt.train.reporter import TrainReporter
from nmt.train.trainer import Trainer


def train(data_dir: Path, save_dir: Path, model_config: ModelConfig, train_config: TrainConfig, resume: bool = False,
          device: str | None = None, reporter: TrainReporter | None = None) -> dict | None:
    """Train until a limit, a signal or --patience stops the run (see nmt.train.trainer.Trainer). Returns the run's
    summary (stop reason, update, best valid loss, skipped updates) on the main process, None on the other ranks of
    a torchrun launch, which report nothing."""
    if pick_device(device).type == "cpu":
        keep_freed_memory()  # ~5% of a CPU step went to page faults on freshly mapped tensors
    try:
        trainer = Trainer(data_dir, save_dir, model_config, train_config, resume=resume, device=device,
                          reporter=reporter)
        summary = trainer.run()
    finally:
        distributed.teardown()
    return summary if trainer.ranks.is_main else None
