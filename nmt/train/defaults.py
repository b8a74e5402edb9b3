"""The defaults a `nmt train` run starts from: the preset named by --arch, or else the configuration of the run it
resumes (--resume) or the architecture of the checkpoint it fine-tunes (--init-from). Explicit options override
either."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from nmt.config import DATA_ROOT, ModelConfig, Preset, TrainConfig, from_dict, matching_preset, preset, replace_fields
from nmt.errors import NmtError

DEFAULT_ARCH = "transformer_base"


def default_data_dir() -> Path:
    """The DATA_DIR `nmt train` uses when none is named: the one prepared dataset under data/."""
    prepared = sorted(path.parent for path in DATA_ROOT.glob("*/manifest.json"))
    if len(prepared) == 1:
        return prepared[0]
    if not prepared:
        raise NmtError("no DATA_DIR given and no prepared dataset under data/; run `nmt prepare CORPUS` first")
    raise NmtError(f"several datasets under data/ ({', '.join(map(str, prepared))}); name one as DATA_DIR")


@dataclass
class RunDefaults:
    preset: Preset
    source: str  # where the defaults came from, for the user: "transformer_small", "--init-from parent.pt (...)"


def run_defaults(arch: str | None, save_dir: Path, resume: bool, init_from: Path | None) -> RunDefaults:
    """Where a run's settings start: the preset --arch names; else the run being resumed (its saved configs); else
    the --init-from checkpoint's architecture with its preset's training defaults; else transformer_base."""
    if arch is not None:
        return RunDefaults(preset(arch), arch)
    # Only here: reading a checkpoint needs torch, which `nmt train --print-config --arch X` and dry runs do without.
    from nmt.checkpoint import interval_checkpoints, read_configs

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


def resolve_configs(defaults: RunDefaults, overrides: dict) -> tuple[ModelConfig, TrainConfig]:
    """The run's model and training configs: the defaults with every override that is not None applied, each to the
    config that has a field of its name (`nmt train --d-model 256 --lr 2` gives {"d_model": 256, "lr": 2.0}), both
    validated. Paths become strings, as a checkpoint stores them."""
    model_fields = {field.name for field in dataclasses.fields(ModelConfig)}
    train_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - model_fields - train_fields
    if unknown:
        raise TypeError(f"not fields of ModelConfig or TrainConfig: {sorted(unknown)}")
    given = {name: str(value) if isinstance(value, Path) else value for name, value in overrides.items()}
    model_config = replace_fields(defaults.preset.model, {k: v for k, v in given.items() if k in model_fields})
    train_config = replace_fields(defaults.preset.train, {k: v for k, v in given.items() if k in train_fields})
    model_config.validate()
    train_config.validate()
    return model_config, train_config


def _preset_label(model: dict) -> str:
    try:
        return matching_preset(from_dict(ModelConfig, model)) or "an architecture of no preset"
    except NmtError:
        return "an unreadable architecture"
