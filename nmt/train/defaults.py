"""The defaults a `nmt train` run starts from: the preset named by --arch, or else the configuration of the run it
resumes (--resume) or the architecture of the checkpoint it fine-tunes (--init-from). Explicit options override
either."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nmt.checkpoint import interval_checkpoints, read_configs
from nmt.config import ModelConfig, Preset, TrainConfig, from_dict, matching_preset, preset
from nmt.errors import NmtError

DEFAULT_ARCH = "transformer_base"


@dataclass
class RunDefaults:
    preset: Preset
    source: str  # where the defaults came from, for the user: "transformer_small", "--init-from parent.pt (...)"


def run_defaults(arch: str | None, save_dir: Path, resume: bool, init_from: Path | None) -> RunDefaults:
    if arch is not None:
        return RunDefaults(preset(arch), arch)
    if resume:
        for path in [save_dir / "checkpoint_last.pt"] + [p for _, p in reversed(interval_checkpoints(save_dir))]:
            try:
                model, train = read_configs(path)
                return RunDefaults(Preset(from_dict(ModelConfig, model),
                                          from_dict(TrainConfig, train) if train else TrainConfig()),
                                   f"the run in {save_dir} ({_preset_label(model)})")
            except NmtError:
                continue  # missing or damaged: the trainer falls back the same way, or says why it cannot resume
    elif init_from is not None:
        try:
            model, _ = read_configs(init_from)
            model_config = from_dict(ModelConfig, model)
        except NmtError as error:
            raise NmtError(f"--init-from {error}") from None
        name = matching_preset(model_config)
        # The architecture is the checkpoint's; the training defaults those of its preset (fine-tuning starts anew).
        return RunDefaults(Preset(model_config, preset(name).train if name else TrainConfig()),
                           f"--init-from {init_from} ({_preset_label(model)})")
    return RunDefaults(preset(DEFAULT_ARCH), DEFAULT_ARCH)


def _preset_label(model: dict) -> str:
    try:
        return matching_preset(from_dict(ModelConfig, model)) or "an architecture of no preset"
    except NmtError:
        return "an unreadable architecture"
