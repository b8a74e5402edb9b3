"""The training state a checkpoint carries beside the weights, and the checks of continuing from one.

A training checkpoint's `training` entry holds what a resume needs to compute exactly the updates an uninterrupted run
would have: the optimizer and loss scaler, `TrainProgress` (update, epoch, position in the epoch's batch plan, ...),
every rank's RNG state, the world size and the number of training pairs. nmt/checkpoint.py knows the rest of the
layout; this module knows this entry, and what may differ between a checkpoint and the run that continues from it
(--resume) or starts from its weights (--init-from).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from nmt.checkpoint import interval_checkpoints, load_checkpoint, vocab_fingerprint
from nmt.config import REGULARIZATION_FIELDS, ModelConfig, TrainConfig, from_dict, matching_preset
from nmt.errors import NmtError
from nmt.vocab import Vocab


@dataclass
class TrainProgress:
    """Where training stands; saved in every checkpoint so that a resume continues exactly."""

    update: int = 0
    epoch: int = 1
    batch_position: int = 0  # the next batch of this epoch's plan
    elapsed: float = 0.0  # seconds of training before this process started
    validation_seconds: float = 0.0  # how long the last validation took: --max-time keeps that much for the final one
    best_valid_loss: float = math.inf
    best_valid_bleu: float = -1.0
    validations_without_improvement: int = 0  # of --early-stop-metric, for --patience
    skipped_nonfinite: int = 0  # updates skipped because the loss or gradient was inf/NaN
    skipped_oom: int = 0  # updates skipped because a batch ran out of device memory


def patience_exhausted(progress: TrainProgress, valid: dict, is_best_loss: bool, config: TrainConfig) -> str | None:
    """Count a validation that did not improve --early-stop-metric; the stop reason once --patience runs out."""
    if config.early_stop_metric == "bleu" and "valid_bleu" in valid:
        improved = valid["valid_bleu"] > progress.best_valid_bleu
        progress.best_valid_bleu = max(progress.best_valid_bleu, valid["valid_bleu"])
    else:
        improved = is_best_loss
    progress.validations_without_improvement = 0 if improved else progress.validations_without_improvement + 1
    if config.patience and progress.validations_without_improvement >= config.patience:
        return (f"early stop: valid {config.early_stop_metric} did not improve in {config.patience} validations "
                "(--patience)")
    return None


def training_state(optimizer, scaler, progress: TrainProgress, torch_states: list, cuda_states: list,
                   world_size: int, train_sentences: int) -> dict:
    """The `training` entry of a checkpoint; `*_states`: every rank's RNG state (gathered)."""
    return {
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler.is_enabled() else None,
        "progress": asdict(progress),
        "rng": {"torch": torch_states[0], "torch_per_rank": torch_states,
                "cuda": cuda_states[0], "cuda_per_rank": cuda_states if cuda_states[0] is not None else None},
        "world_size": world_size,
        "train_sentences": train_sentences,  # a resume checks it points at the same corpus
    }


def restore_training_state(training: dict, optimizer, scaler, rank: int, world_size: int, device: torch.device,
                           seed: int, message) -> TrainProgress:
    """Load optimizer, scaler and this rank's RNG state; the progress to continue from."""
    optimizer.load_state_dict(training["optimizer"])
    if training.get("scaler"):
        scaler.load_state_dict(training["scaler"])
    progress = TrainProgress(**training["progress"])
    rng = training["rng"]
    per_rank = rng.get("torch_per_rank") or [rng["torch"]]
    if len(per_rank) == world_size:
        torch.set_rng_state(per_rank[rank])
    else:  # another number of processes than the run had: exact continuation is impossible anyway
        message(f"resuming with {world_size} processes where the run had {len(per_rank)}: this epoch's remaining "
                "batches and the dropout draws differ from an uninterrupted run's")
        torch.manual_seed(seed + 1_000_003 * rank + progress.update)
    if device.type == "cuda" and rng.get("cuda") is not None and len(per_rank) == world_size:
        cuda_states = rng.get("cuda_per_rank") or [rng["cuda"]]
        torch.cuda.set_rng_state(cuda_states[rank])
    return progress


def resume_payload(save_dir: Path, data_dir: Path, vocab: Vocab, train_pairs: int, model_config: ModelConfig,
                   config: TrainConfig, message) -> dict:
    """The newest loadable training checkpoint of `save_dir` (checkpoint_last.pt, else the interval checkpoints
    newest first, saying so), checked against the run that continues it."""
    candidates = [save_dir / "checkpoint_last.pt"] + [path for _, path in reversed(interval_checkpoints(save_dir))]
    if not any(path.exists() for path in candidates):
        raise NmtError(f"--resume: no checkpoint_last.pt in {save_dir}")
    payload, problems = None, []
    for path in candidates:
        if not path.exists():
            continue
        try:
            payload = load_checkpoint(path)
        except NmtError as error:  # truncated by a crash, damaged on disk: fall back to the one before
            problems.append(str(error))
            continue
        if "training" not in payload:
            raise NmtError(f"{path}: a model-only checkpoint (averaged?) cannot be resumed")
        if problems:
            message(f"{problems[0]}; resuming from {path.name} instead")
        break
    if payload is None:
        raise NmtError(f"--resume: no loadable checkpoint in {save_dir} ({problems[0]})")
    check_resumable(payload, save_dir, data_dir, vocab, train_pairs, config)  # first: vocabulary, then shape
    saved = from_dict(ModelConfig, payload["model_config"])
    if saved != model_config:
        raise NmtError(f"--resume: the run in {save_dir} has another architecture "
                       f"({', '.join(_differing(saved, model_config))} differ); drop those options or use another "
                       "--save-dir")
    return payload


def check_resumable(payload: dict, save_dir: Path, data_dir: Path, vocab: Vocab, train_pairs: int,
                    config: TrainConfig) -> None:
    """Refuse a resume whose data or batching options the checkpoint's progress cannot carry over.

    The progress counts batches of an epoch's plan, and the plan is a function of the training pairs' lengths,
    --max-tokens and --seed: another corpus, vocabulary or (inside an epoch) another budget or seed would silently
    repeat some pairs and skip others. Options that only steer the run (limits, learning rate, intervals, precision)
    may change.
    """
    if vocab_fingerprint(payload) != vocab.fingerprint:
        raise NmtError(f"--resume: {data_dir}'s vocabulary is not the vocabulary the run in {save_dir} was trained "
                       "with; point at the run's data directory or use another --save-dir")
    training = payload["training"]
    pairs = training.get("train_sentences")
    if pairs is not None and pairs != train_pairs:
        raise NmtError(f"--resume: {data_dir} holds {train_pairs:,} training pairs, the run in {save_dir} was trained "
                       f"on {pairs:,}; point at the run's data directory or use another --save-dir (--init-from "
                       "fine-tunes on new data)")
    saved = payload.get("train_config") or {}
    position = training["progress"].get("batch_position", 0)
    if position:
        for name in ("max_tokens", "seed"):
            if name in saved and saved[name] != getattr(config, name):
                option = "--" + name.replace("_", "-")
                raise NmtError(f"--resume: the run stopped inside epoch {training['progress']['epoch']} (batch "
                               f"{position} of its plan), which {option} {saved[name]} made; {option} "
                               f"{getattr(config, name)} would repeat or skip pairs: keep {option} {saved[name]}")


def init_from_weights(path: Path, data_dir: Path, vocab: Vocab, model_config: ModelConfig) -> dict:
    """Fine-tuning: the weights of `path`, checked to fit the model being trained (vocabulary, architecture). What
    does not change the weights may differ: the dropouts here, and every training setting (label smoothing, the
    schedule, the learning rate), which the checkpoint does not impose."""
    payload = load_checkpoint(path)
    if vocab_fingerprint(payload) != vocab.fingerprint:
        raise NmtError(f"--init-from {path}: its vocabulary differs from {data_dir}'s; prepare the fine-tuning data "
                       f"with the checkpoint's own: nmt prepare ... --vocab {path}")
    saved = from_dict(ModelConfig, payload["model_config"])
    changed = [name for name in _differing(saved, model_config) if name not in REGULARIZATION_FIELDS]
    if changed:
        theirs, ours = matching_preset(saved), matching_preset(model_config)
        named = ""
        if theirs != ours:
            named = (f"; the checkpoint is a {theirs}" + (f", not a {ours}" if ours else "")
                     + f": drop --arch (the checkpoint's architecture is the default) or pass --arch {theirs}"
                     if theirs else "; drop --arch and the architecture options: the checkpoint's are the default")
        raise NmtError(f"--init-from {path}: another architecture ({', '.join(changed)} differ){named}")
    return payload["model"]


def _differing(a: ModelConfig, b: ModelConfig) -> list[str]:
    return [name for name in asdict(a) if getattr(a, name) != getattr(b, name)]
