"""The update loop: batches -> label-smoothed loss -> Adam with the paper's schedule -> validation -> checkpoints.

The trainer knows nothing of how progress is shown: it calls a `TrainReporter` (the CLI's draws a Rich bar).
A run can be stopped (SIGTERM/SIGINT, --max-time) and resumed (`resume=True`) from checkpoint_last.pt, which holds the
optimizer, the RNG state and the position in the epoch's batches as well as the weights.
"""

from __future__ import annotations

import json
import math
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import sacrebleu
import torch

from nmt.checkpoint import link_checkpoint, load_checkpoint, make_payload, prune_checkpoints, save_checkpoint
from nmt.config import ModelConfig, SearchConfig, TrainConfig, from_dict, replace_fields
from nmt.data.batching import make_batches
from nmt.data.binary import load_manifest
from nmt.data.dataset import ParallelDataset
from nmt.device import pick_device
from nmt.errors import NmtError
from nmt.model.transformer import build_model, count_parameters
from nmt.search.beam import beam_search
from nmt.train.loss import label_smoothed_nll_loss
from nmt.train.schedule import inverse_sqrt_lr
from nmt.vocab import Vocab

# Validation decodes greedily with a tight length limit: early models repeat themselves until the limit.
VALID_SEARCH = SearchConfig(beam=1, max_len_a=1.5, max_len_b=10)


class TrainReporter(Protocol):
    def start(self, first_update: int, total_updates: int | None, info: dict) -> None: ...
    def advance(self, update: int) -> None: ...
    def record(self, record: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


class NullReporter:
    def start(self, first_update, total_updates, info): pass
    def advance(self, update): pass
    def record(self, record): pass
    def message(self, text): pass
    def stop(self): pass


@dataclass
class TrainProgress:
    """Where training stands; saved in every checkpoint so that a resume continues exactly."""

    update: int = 0
    epoch: int = 1
    batch_position: int = 0  # the next batch of this epoch's plan
    elapsed: float = 0.0  # seconds of training before this process started
    best_valid_loss: float = math.inf


class Trainer:
    def __init__(self, data_dir: Path, save_dir: Path, model_config: ModelConfig, train_config: TrainConfig,
                 resume: bool = False, device: str | None = None, reporter: TrainReporter | None = None):
        train_config.validate()
        self.data_dir, self.save_dir = Path(data_dir), Path(save_dir)
        self.config = train_config
        self.reporter = reporter or NullReporter()
        self.device = pick_device(device)
        self.manifest = load_manifest(self.data_dir)
        self.vocab = Vocab.from_file(self.data_dir / self.manifest["spm_model"])
        self.train_data = ParallelDataset(self.data_dir, "train", self.manifest)
        self.valid_data = ParallelDataset(self.data_dir, "valid", self.manifest)
        self.valid_refs = (self.data_dir / self.manifest["splits"]["valid"]["text"]["tgt"]).read_text(
            encoding="utf-8").split("\n")[: len(self.valid_data)]

        model_config = replace_fields(model_config, {"vocab_size": len(self.vocab)})
        self.progress = TrainProgress()
        resume_payload = self._resume_payload(resume, model_config)
        if resume_payload is not None:
            model_config = from_dict(ModelConfig, resume_payload["model_config"])
        torch.manual_seed(train_config.seed)
        self.model = build_model(model_config).to(self.device)
        self.optimizer = self._make_optimizer()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=train_config.precision == "fp16")
        if resume_payload is not None:
            self._restore(resume_payload)
        self.metrics_path = self.save_dir / "metrics.jsonl"

    # --- setup -----------------------------------------------------------------------------------------------

    def _resume_payload(self, resume: bool, model_config: ModelConfig) -> dict | None:
        last = self.save_dir / "checkpoint_last.pt"
        if not resume:
            if last.exists():
                raise NmtError(f"{self.save_dir} already holds a run (checkpoint_last.pt): pass --resume to continue "
                               "it, or choose another --save-dir")
            return None
        if not last.exists():
            raise NmtError(f"--resume: no checkpoint_last.pt in {self.save_dir}")
        payload = load_checkpoint(last)
        if "training" not in payload:
            raise NmtError(f"{last}: a model-only checkpoint (averaged?) cannot be resumed")
        saved = from_dict(ModelConfig, payload["model_config"])
        if saved != model_config:
            changed = [name for name in asdict(saved) if getattr(saved, name) != getattr(model_config, name)]
            raise NmtError(f"--resume: the run in {self.save_dir} has another architecture ({', '.join(changed)} "
                           "differ); drop those options or use another --save-dir")
        return payload

    def _make_optimizer(self) -> torch.optim.Optimizer:
        config = self.config
        kwargs = dict(lr=0.0, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps,
                      weight_decay=config.weight_decay)
        try:  # one fused kernel for all parameters instead of several small ones per tensor
            return torch.optim.Adam(self.model.parameters(), fused=True, **kwargs)
        except (RuntimeError, TypeError):
            return torch.optim.Adam(self.model.parameters(), **kwargs)

    def _restore(self, payload: dict) -> None:
        self.model.load_state_dict(payload["model"])
        training = payload["training"]
        self.optimizer.load_state_dict(training["optimizer"])
        if training.get("scaler"):
            self.scaler.load_state_dict(training["scaler"])
        self.progress = TrainProgress(**training["progress"])
        torch.set_rng_state(training["rng"]["torch"])
        if self.device.type == "cuda" and training["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(training["rng"]["cuda"])

    # --- the loop --------------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Train until a limit is reached or a stop is requested; returns a summary."""
        config, progress = self.config, self.progress
        self.save_dir.mkdir(parents=True, exist_ok=True)
        (self.save_dir / "config.json").write_text(json.dumps(
            {"model": asdict(self.model.config), "train": asdict(config), "data_dir": str(self.data_dir)}, indent=2))
        self.started = time.monotonic()
        self.stop_reason = self._limit_reached()  # a resumed run may already be done
        self.last_saved_update = progress.update if progress.update else -1  # resumed: that update is on disk
        previous_handlers = self._install_signal_handlers()
        total = config.max_updates or None
        self.reporter.start(progress.update, total, {
            "parameters": count_parameters(self.model), "device": str(self.device),
            "train_sentences": len(self.train_data), "resumed_at": progress.update})
        self._reset_log_window()
        try:
            while self.stop_reason is None:
                plan = make_batches(self.train_data.src_lengths, self.train_data.tgt_lengths, config.max_tokens,
                                    seed=config.seed, epoch=progress.epoch)
                if progress.batch_position == 0 and plan.oversized:
                    self.reporter.message(f"epoch {progress.epoch}: {plan.oversized} sentence pairs are longer than "
                                          f"--max-tokens {config.max_tokens}; each is trained alone in its batch")
                self.padding_ratio = plan.padding_ratio
                while progress.batch_position < len(plan.batches) and self.stop_reason is None:
                    group = plan.batches[progress.batch_position: progress.batch_position + config.update_freq]
                    self._train_update(group)
                    progress.batch_position += len(group)
                    self._after_update(epoch_done=progress.batch_position >= len(plan.batches))
                if progress.batch_position >= len(plan.batches):
                    progress.epoch += 1
                    progress.batch_position = 0
                    self.stop_reason = self.stop_reason or self._limit_reached()
            if self.last_saved_update != progress.update:
                # A stop by signal saves at once; validation could outlast the grace period of a scheduler.
                self._save(validate=not self.stop_reason.startswith("stopped by"))
        finally:
            self._restore_signal_handlers(previous_handlers)
            self.reporter.stop()
        return {"update": progress.update, "epoch": progress.epoch, "stop_reason": self.stop_reason,
                "best_valid_loss": progress.best_valid_loss, "save_dir": str(self.save_dir)}

    def _train_update(self, group: list[np.ndarray]) -> None:
        """One update from `update_freq` batches; the loss is normalized by the target tokens of the whole update."""
        config, model = self.config, self.model
        model.train()
        batches = [self.train_data.collate(indices).to(self.device) for indices in group]
        update_tokens = sum(batch.tgt_count for batch in batches)
        for batch in batches:
            with self._autocast():
                output_mask = batch.target.ne(model.config.pad_id)  # (B, T)
                logits = model(batch.src_tokens, batch.prev_tokens, output_mask)  # (N, V)
            loss, nll = label_smoothed_nll_loss(logits, batch.target[output_mask], config.label_smoothing,
                                                model.config.pad_id)
            self.scaler.scale(loss / update_tokens).backward()
            self.window["loss"] += loss.detach()
            self.window["nll"] += nll.detach()
            self.window["tgt_tokens"] += batch.tgt_count
            self.window["src_tokens"] += batch.src_count

        self.progress.update += 1
        lr = inverse_sqrt_lr(self.progress.update, model.config.d_model, config.warmup, config.lr)
        for group_params in self.optimizer.param_groups:
            group_params["lr"] = lr
        self.scaler.unscale_(self.optimizer)
        if config.clip_norm > 0:
            self.window["grad_norm"] = torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.window["updates"] += 1
        self.window["lr"] = lr

    def _autocast(self):
        precision = self.config.precision
        if precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _after_update(self, epoch_done: bool) -> None:
        config, progress = self.config, self.progress
        self.reporter.advance(progress.update)
        if progress.update % config.log_interval == 0:
            self._log_window()
        self.stop_reason = self.stop_reason or self._limit_reached()
        if self.stop_reason:
            return  # run() saves once, after the loop
        interval = config.save_interval_updates
        if (interval and progress.update % interval == 0) or (not interval and epoch_done):
            self._save(validate=True)

    def _limit_reached(self) -> str | None:
        config, progress = self.config, self.progress
        if config.max_updates and progress.update >= config.max_updates:
            return f"reached --max-updates {config.max_updates}"
        if config.max_time and self.elapsed() >= config.max_time * 60:
            return f"reached --max-time {config.max_time:g} minutes"
        if config.max_epochs and progress.epoch > config.max_epochs:
            return f"reached --max-epochs {config.max_epochs}"
        return None

    def elapsed(self) -> float:
        return self.progress.elapsed + time.monotonic() - self.started

    # --- logging ---------------------------------------------------------------------------------------------

    def _reset_log_window(self) -> None:
        self.window = {"loss": torch.zeros((), device=self.device), "nll": torch.zeros((), device=self.device),
                       "tgt_tokens": 0, "src_tokens": 0, "updates": 0, "lr": 0.0, "grad_norm": None}
        self.window_started = time.monotonic()

    def _log_window(self) -> None:
        window = self.window
        if not window["updates"]:
            return
        seconds = max(time.monotonic() - self.window_started, 1e-9)
        tokens = max(window["tgt_tokens"], 1)
        # .item() waits for the device; done here, on logging steps only.
        loss, nll = window["loss"].item() / tokens, window["nll"].item() / tokens
        record = {"update": self.progress.update, "epoch": self.progress.epoch, "loss": round(loss, 4),
                  "nll_loss": round(nll, 4), "ppl": round(math.exp(min(nll, 50)), 2), "lr": window["lr"],
                  "tgt_tokens_per_s": round(window["tgt_tokens"] / seconds, 1),
                  "src_tokens_per_s": round(window["src_tokens"] / seconds, 1),
                  "padding_ratio": round(self.padding_ratio, 4), "wall": round(self.elapsed(), 1)}
        if window["grad_norm"] is not None:
            record["grad_norm"] = round(float(window["grad_norm"]), 4)
        self._write_record(record)
        self._reset_log_window()

    def _write_record(self, record: dict) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.reporter.record(record)

    # --- validation and checkpoints --------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict:
        """Valid loss (teacher-forced) and, if enabled, BLEU of greedy translations against the raw references."""
        model, config = self.model, self.config
        model.eval()
        loss_sum = nll_sum = 0.0
        tokens = 0
        plan = make_batches(self.valid_data.src_lengths, self.valid_data.tgt_lengths, config.max_tokens,
                            shuffle=False)
        hypotheses: dict[int, str] = {}
        for indices in plan.batches:
            batch = self.valid_data.collate(indices).to(self.device)
            with self._autocast():
                output_mask = batch.target.ne(model.config.pad_id)
                logits = model(batch.src_tokens, batch.prev_tokens, output_mask)
            loss, nll = label_smoothed_nll_loss(logits, batch.target[output_mask], config.label_smoothing,
                                                model.config.pad_id)
            loss_sum, nll_sum, tokens = loss_sum + loss.item(), nll_sum + nll.item(), tokens + batch.tgt_count
            if config.valid_bleu:
                with self._autocast():
                    results = beam_search(model, batch.src_tokens, VALID_SEARCH)
                for index, text in zip(indices, self.vocab.decode([hyps[0].tokens for hyps in results])):
                    hypotheses[int(index)] = text
        tokens = max(tokens, 1)
        metrics = {"valid_loss": round(loss_sum / tokens, 4), "valid_nll_loss": round(nll_sum / tokens, 4),
                   "valid_ppl": round(math.exp(min(nll_sum / tokens, 50)), 2)}
        if config.valid_bleu:
            ordered = [hypotheses[i] for i in range(len(self.valid_data))]
            metrics["valid_bleu"] = round(sacrebleu.corpus_bleu(ordered, [self.valid_refs]).score, 2)
        return metrics

    def _save(self, validate: bool) -> None:
        """Validate, write checkpoint_UPDATE.pt, and point checkpoint_last.pt (and _best) at it."""
        self._log_window()
        progress = self.progress
        valid = {}
        if validate:
            valid = self.validate()
            self._write_record({"update": progress.update, "epoch": progress.epoch, **valid,
                                "wall": round(self.elapsed(), 1)})
        is_best = bool(valid) and valid["valid_loss"] < progress.best_valid_loss
        if is_best:
            progress.best_valid_loss = valid["valid_loss"]
        progress_now = TrainProgress(**asdict(progress))
        progress_now.elapsed = self.elapsed()
        training = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "progress": asdict(progress_now),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else None},
        }
        payload = make_payload(self.model, self.vocab, self.config, self.manifest["src"], self.manifest["tgt"],
                               progress.update, progress.epoch, valid=valid, training=training)
        path = self.save_dir / f"checkpoint_{progress.update}.pt"
        save_checkpoint(payload, path)
        link_checkpoint(path, self.save_dir / "checkpoint_last.pt")
        if is_best:
            link_checkpoint(path, self.save_dir / "checkpoint_best.pt")
        self.last_saved_update = progress.update
        self._prune()
        self._reset_log_window()  # validation time is not training throughput

    def _prune(self) -> None:
        if self.config.keep_last > 0:
            prune_checkpoints(self.save_dir, self.config.keep_last)

    # --- stopping --------------------------------------------------------------------------------------------

    def _install_signal_handlers(self):
        def request_stop(signum, frame):
            self.stop_reason = f"stopped by {signal.Signals(signum).name}"
            signal.signal(signum, previous[signum])  # a second signal acts at once
        previous = {}
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, request_stop)
        except ValueError:  # not the main thread: signals stay as they are
            return {}
        return previous

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
