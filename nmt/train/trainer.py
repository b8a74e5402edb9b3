"""The update loop: batches -> label-smoothed loss -> Adam with the paper's schedule -> validation -> checkpoints.

The trainer knows nothing of how progress is shown: it calls a `TrainReporter` (the CLI's draws a Rich bar).
A run can be stopped (SIGTERM/SIGINT, --max-time, --patience) and resumed (`resume=True`) from checkpoint_last.pt,
which holds the optimizer, loss scaler, every rank's RNG state and the position in the epoch's batches as well as the
weights (nmt/train/state.py): a resumed run computes exactly the updates the uninterrupted one would have.

Under torchrun each rank trains on its shard of the batches (DistributedDataParallel: gradients are all-reduced once
per update, in the backward of the update's last batch). Everything that decides control flow (stop, skip) is agreed
through a collective, so no rank waits in a collective the others never reach. Rank 0 alone writes.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from nmt.atomic import write_json
from nmt.checkpoint import link_checkpoint, make_payload, prune_checkpoints, save_checkpoint
from nmt.config import ModelConfig, TrainConfig, from_dict, replace_fields
from nmt.device import attention_kernels, autocast, training_precision
from nmt.errors import NmtError
from nmt.metrics_log import append_record, keep_records_up_to
from nmt.model.size import check_fits
from nmt.model.transformer import build_model, count_parameters
from nmt.train import distributed
from nmt.train.data import check_positions, epoch_plan, load_training_data, vocabulary_fields
from nmt.train.ema import ExponentialMovingAverage
from nmt.train.lock import SaveDirLock
from nmt.train.loss import label_smoothed_nll_loss
from nmt.train.reporter import NullReporter, TrainReporter
from nmt.train.schedule import learning_rate, make_optimizer
from nmt.train.stopping import StopSignals
from nmt.train.tensorboard import TensorBoardScalars
from nmt.train.state import (TrainProgress, init_from_weights, patience_exhausted, restore_training_state,
                             resume_payload, training_state)
from nmt.train.subword import with_subword_sampling
from nmt.train.validation import validate_pairs
from nmt.train.window import MetricsWindow


class Trainer:
    """One run on a prepared DATA_DIR into `save_dir`; `run()` trains until a limit, a signal or --patience stops it."""

    def __init__(self, data_dir: Path, save_dir: Path, model_config: ModelConfig, train_config: TrainConfig,
                 resume: bool = False, device: str | None = None, reporter: TrainReporter | None = None):
        train_config.validate()
        self.ranks, self.device = distributed.setup(device)
        self.data_dir, self.save_dir = Path(data_dir), Path(save_dir)
        # auto resolved here, so that config.json and the report say what ran
        self.config = replace(train_config, precision=training_precision(train_config.precision, self.device))
        self.reporter = (reporter or NullReporter()) if self.ranks.is_main else NullReporter()
        # Held from before the resume check to the end of run(): a second run on this save dir is refused.
        self.lock = SaveDirLock(self.save_dir).acquire() if self.ranks.is_main else None
        try:
            self._setup(model_config, resume)
        except BaseException:
            self.close(abandoned=True)
            raise

    def close(self, abandoned: bool = False) -> None:
        """Release the save dir (ABANDONED: one this run created, still empty, goes) and the DDP wrapper."""
        if self.lock is not None:
            self.lock.release(abandoned)
        # DDP holds the process group: while it lives, destroying the group leaves gloo's threads running into the
        # interpreter's exit, which can abort the process ("terminate called without an active exception").
        self.ddp = None
        self.train_model = getattr(self, "model", None)

    def _setup(self, model_config: ModelConfig, resume: bool) -> None:
        config = self.config
        self.data = load_training_data(self.data_dir)
        self.vocab, self.valid_data = self.data.vocab, self.data.valid
        self.train_data = with_subword_sampling(self.data.train, self.vocab, config.subword_alpha, config.seed)
        model_config = replace_fields(model_config, vocabulary_fields(self.vocab))
        last = self.save_dir / "checkpoint_last.pt"
        if not resume and last.exists():
            raise NmtError(f"{self.save_dir} already holds a run (checkpoint_last.pt): pass --resume to continue it, "
                           "or choose another --save-dir")
        resumed = resume_payload(self.save_dir, self.data_dir, self.vocab, len(self.train_data), model_config, config,
                                 self.reporter.message) if resume else None
        if resumed is not None:
            model_config = from_dict(ModelConfig, resumed["model_config"])
        check_positions(self.data, model_config)
        check_fits(model_config, self.device)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = build_model(model_config).to(self.device)
        if resumed is None and config.init_from:
            self.model.load_state_dict(init_from_weights(Path(config.init_from), self.data_dir, self.vocab,
                                                         self.model.config))
        if self.ranks.distributed:  # each rank its own dropout stream
            torch.manual_seed(config.seed + 1_000_003 * self.ranks.rank)
        self.optimizer = make_optimizer(self.model, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16")
        self.progress = TrainProgress()
        if resumed is not None:
            # With an average kept, the checkpoint's model is the average and the raw weights are in its state.
            self.model.load_state_dict(resumed["training"].get("raw_model") or resumed["model"])
        self.ema = ExponentialMovingAverage(self.model, config.ema_decay) if config.ema_decay else None
        if self.ema is not None and resumed is not None and "raw_model" in resumed["training"]:
            self.ema.model.load_state_dict(resumed["model"])
        if resumed is not None:
            self.progress = restore_training_state(resumed["training"], self.optimizer, self.scaler, self.ranks.rank,
                                                   self.ranks.world_size, self.device, config.seed,
                                                   self.reporter.message)
        self.metrics_path = self.save_dir / "metrics.jsonl"
        self.tensorboard = None  # opened by run() on rank 0 with --tensorboard
        self.window = MetricsWindow(self.device)
        self.ddp = None
        self.train_model = self.model
        if self.ranks.distributed:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.train_model = self.ddp
        if config.compile:
            self.train_model = torch.compile(self.train_model, dynamic=True)

    # --- the loop --------------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Train until a limit is reached or a stop is requested; returns a summary."""
        config, progress = self.config, self.progress
        if self.ranks.is_main:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.save_dir / "config.json",
                       {"model": asdict(self.model.config), "train": asdict(config), "data_dir": str(self.data_dir),
                        "world_size": self.ranks.world_size})
            keep_records_up_to(self.metrics_path, progress.update)
            if config.tensorboard:
                self.tensorboard = TensorBoardScalars(Path(config.tensorboard))
        self.started = time.monotonic()
        self.signals = StopSignals()
        self.stop_reason = self._limit_reached(include_time=True)  # a resumed run may already be done
        self.last_saved_update = progress.update if progress.update else -1  # resumed: that update is on disk
        self.nonfinite_in_a_row = 0
        self.reporter.start(progress.update, config.max_updates or None, {
            "parameters": count_parameters(self.model), "device": str(self.device), "precision": config.precision,
            "train_sentences": len(self.train_data), "resumed_at": progress.update,
            "world_size": self.ranks.world_size, "synthetic": [c for c in self.data.corpora if c.synthetic]})
        self.window.reset()
        try:
            with self.signals:
                self._train_until_stopped()
        finally:
            self.reporter.stop()
            if self.tensorboard is not None:
                self.tensorboard.close()
            self.close()
        return {"update": progress.update, "epoch": progress.epoch, "stop_reason": self.stop_reason,
                "best_valid_loss": progress.best_valid_loss, "save_dir": str(self.save_dir),
                "skipped_nonfinite": progress.skipped_nonfinite, "skipped_oom": progress.skipped_oom}

    def _train_until_stopped(self) -> None:
        config, progress = self.config, self.progress
        while self.stop_reason is None:
            plan = epoch_plan(self.data, config, progress.epoch, self.ranks.rank, self.ranks.world_size)
            if progress.batch_position == 0 and plan.oversized:
                self.reporter.message(f"epoch {progress.epoch}: {plan.oversized} sentence pairs are longer than "
                                      f"--max-tokens {config.max_tokens}; each is trained alone in its batch")
            self.padding_ratio = plan.padding_ratio
            while progress.batch_position < len(plan.batches) and self.stop_reason is None:
                group = plan.batches[progress.batch_position: progress.batch_position + config.update_freq]
                if not self._train_update(group):
                    break  # the ranks agreed to stop before this update
                progress.batch_position += len(group)
                self._after_update(epoch_done=progress.batch_position >= len(plan.batches))
            if progress.batch_position >= len(plan.batches):
                progress.epoch += 1
                progress.batch_position = 0
                self.stop_reason = self.stop_reason or self._limit_reached(include_time=False)
        if self.last_saved_update != progress.update:
            # A stop by signal saves at once; validation could outlast the grace period of a scheduler.
            self._save(validate=not self.stop_reason.startswith("stopped by"))

    def _train_update(self, group: list[np.ndarray]) -> bool:
        """One update from `update_freq` batches per rank; the loss is normalized by the target tokens of the whole
        update over all ranks. Returns False, having done nothing, if the ranks agreed to stop first."""
        config, model = self.config, self.model
        model.train()
        batches = [self.train_data.collate(indices).to(self.device) for indices in group]
        tgt_tokens, src_tokens = self._agree_on_update(sum(b.tgt_count for b in batches),
                                                       sum(b.src_count for b in batches))
        if self.stop_reason is not None:
            return False
        # DDP averages over ranks: scaled by world_size / tokens, that is the mean over all the update's tokens.
        scale = self.ranks.world_size / tgt_tokens
        self.optimizer.zero_grad(set_to_none=True)
        try:
            for position, batch in enumerate(batches):
                with self._gradient_sync(last=position == len(batches) - 1):
                    with autocast(self.device, config.precision), attention_kernels(self.device):
                        output_mask = batch.target.ne(model.config.pad_id)  # (B, T)
                        logits = self.train_model(batch.src_tokens, batch.prev_tokens, output_mask)  # (N, V)
                    loss, nll = label_smoothed_nll_loss(logits, batch.target[output_mask], config.label_smoothing,
                                                        model.config.pad_id)
                    self.scaler.scale(loss * scale).backward()
                self.window.add_batch(loss, nll)
        except torch.OutOfMemoryError:
            del batches
            return self._skip_out_of_memory()

        update = self.progress.update + 1
        lr = learning_rate(update, self.model.config.d_model, config)
        for group_params in self.optimizer.param_groups:
            group_params["lr"] = lr
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_gradients(update)
        if self.scaler.is_enabled():
            scale_before = self.scaler.get_scale()
            self.scaler.step(self.optimizer)  # skipped by the scaler itself on inf/NaN gradients
            self.scaler.update()
            finite = self.scaler.get_scale() >= scale_before
        else:
            finite = bool(torch.isfinite(grad_norm))
            if finite:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not finite:
            return self._skip_nonfinite(update)
        self.nonfinite_in_a_row = 0
        self.progress.update = update
        if self.ema is not None:
            self.ema.update(update)
        self.window.add_update(tgt_tokens, src_tokens, lr, grad_norm)
        return True

    def _agree_on_update(self, local_tgt: int, local_src: int) -> tuple[float, float]:
        """The cross-rank vote: one small collective per update sums the update's token counts and every rank's wish
        to stop (a signal, the wall clock), so that all ranks normalize alike and stop at the same update (a stop
        decided alone would leave the others waiting in a collective). Sets `stop_reason` on a stop."""
        wants_signal = 1.0 if self.signals.received else 0.0
        wants_time = 1.0 if self._limit_reached(include_time=True) else 0.0
        tgt_tokens, src_tokens, signal_votes, time_votes = distributed.all_reduce_sum(
            [local_tgt, local_src, wants_signal, wants_time], self.device, self.ranks)
        if signal_votes or time_votes:
            self.stop_reason = (f"stopped by {self.signals.received or 'a signal to another rank'}" if signal_votes
                                else f"reached --max-time {self.config.max_time:g} minutes")
        return tgt_tokens, src_tokens

    def _gradient_sync(self, last: bool):
        """DDP all-reduces the gradients in the backward of an update's last batch only."""
        return self.ddp.no_sync() if self.ddp is not None and not last else nullcontext()

    def _clip_gradients(self, update: int) -> torch.Tensor:
        """Clip the synchronized, normalized gradients to --clip-norm; their norm (the same on every rank)."""
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              self.config.clip_norm if self.config.clip_norm > 0 else math.inf)

    def _skip_out_of_memory(self) -> bool:
        """A batch that ran out of device memory on one process: the update is skipped and counted. Under DDP the
        other ranks would wait in the gradient all-reduce, so there it is an error."""
        if self.ranks.distributed:
            raise NmtError(f"rank {self.ranks.rank} ran out of device memory with --max-tokens "
                           f"{self.config.max_tokens}; lower --max-tokens (and raise --update-freq to keep the batch "
                           "size)") from None
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.progress.skipped_oom += 1
        self.window.reset()
        self.reporter.message(f"out of memory in a batch at update {self.progress.update + 1}: skipped "
                              f"({self.progress.skipped_oom} so far); consider a lower --max-tokens")
        return True

    def _skip_nonfinite(self, update: int) -> bool:
        """An update whose loss or gradient is inf/NaN is not applied (fp16 overflows are, early on, normal)."""
        self.progress.skipped_nonfinite += 1
        self.window.reset()
        if self.scaler.is_enabled() and self.scaler.get_scale() >= 1.0:
            return True  # fp16: the scaler halves its scale and tries again; only a scale below 1 is hopeless
        self.nonfinite_in_a_row += 1
        if not self.scaler.is_enabled() and self.nonfinite_in_a_row == 1:
            self.reporter.message(f"update {update}: the loss or gradient is not finite; update skipped")
        if self.nonfinite_in_a_row >= self.config.max_nonfinite:
            raise NmtError(f"{self.nonfinite_in_a_row} updates in a row had an inf/NaN loss or gradient (at update "
                           f"{update}); lower --lr or raise --warmup, use --clip-norm, or bf16 instead of fp16; "
                           f"resume from checkpoint_last.pt with --resume")
        return True

    def _after_update(self, epoch_done: bool) -> None:
        config, progress = self.config, self.progress
        self.reporter.advance(progress.update)
        if progress.update % config.log_interval == 0:
            self._log_window()
        self.stop_reason = self.stop_reason or self._limit_reached(include_time=False)
        if self.stop_reason:
            return  # run() saves once, after the loop
        interval = config.save_interval_updates
        if (interval and progress.update % interval == 0) or (not interval and epoch_done):
            self._save(validate=True)

    def _limit_reached(self, include_time: bool) -> str | None:
        """Limits that every rank sees alike; the wall clock, which differs per rank, only where asked (it is then
        agreed on in `_agree_on_update`)."""
        config, progress = self.config, self.progress
        if config.max_updates and progress.update >= config.max_updates:
            return f"reached --max-updates {config.max_updates}"
        if config.max_epochs and progress.epoch > config.max_epochs:
            return f"reached --max-epochs {config.max_epochs}"
        # --max-time covers the final validation too: stop when the time left would not hold one.
        if include_time and config.max_time and (
                self.elapsed() + progress.validation_seconds >= config.max_time * 60):
            return f"reached --max-time {config.max_time:g} minutes"
        return None

    def elapsed(self) -> float:
        return self.progress.elapsed + time.monotonic() - self.started

    def _log_window(self) -> None:
        record = self.window.record(self.ranks)
        if record is None:
            return
        progress = self.progress
        record = {"update": progress.update, "epoch": progress.epoch, **record,
                  "padding_ratio": round(self.padding_ratio, 4), "wall": round(self.elapsed(), 1)}
        if progress.skipped_nonfinite or progress.skipped_oom:
            record.update(skipped_nonfinite=progress.skipped_nonfinite, skipped_oom=progress.skipped_oom)
        self._write_record(record)
        self.window.reset()

    def _write_record(self, record: dict) -> None:
        if self.ranks.is_main:
            append_record(self.metrics_path, record)
            if self.tensorboard is not None:
                self.tensorboard.write(record)
            self.reporter.record(record)

    # --- validation and checkpoints --------------------------------------------------------------------------

    def validate(self) -> dict:
        """The valid split's loss and BLEU (nmt/train/validation.py), within what --max-time leaves."""
        config, progress = self.config, self.progress
        # BLEU is left out only past the limit by half the last validation's duration (the final one starts ~then).
        end = self.started + config.max_time * 60 - progress.elapsed + 0.5 * progress.validation_seconds
        deadline = end if config.max_time else math.inf
        return validate_pairs(self.evaluated_model, self.data, self.vocab, config, self.ranks, self.device, deadline,
                              lambda text: self.reporter.message(f"update {progress.update}: {text}"))

    @property
    def evaluated_model(self) -> torch.nn.Module:
        """What validation decodes and checkpoints hold: the moving average when one is kept, else the weights."""
        return self.ema.model if self.ema is not None else self.model

    def _save(self, validate: bool) -> None:
        """Validate, write checkpoint_UPDATE.pt, and point checkpoint_last.pt (and _best) at it."""
        self._log_window()
        progress = self.progress
        valid = {}
        if validate:
            started = time.monotonic()
            try:
                valid = self.validate()
            except Exception as error:
                # The training since the last checkpoint is worth more than this validation: save it, then report.
                self._write_checkpoint({}, is_best=False)
                reason = str(error) if isinstance(error, NmtError) else f"{type(error).__name__}: {error}"
                raise NmtError(f"validation at update {progress.update} failed ({reason}); the training so far is "
                               f"saved as checkpoint_{progress.update}.pt, which --resume continues from") from error
            progress.validation_seconds = time.monotonic() - started
            self._write_record({"update": progress.update, "epoch": progress.epoch, **valid,
                                "wall": round(self.elapsed(), 1)})
        is_best = bool(valid) and valid["valid_loss"] < progress.best_valid_loss
        if is_best:
            progress.best_valid_loss = valid["valid_loss"]
        if valid:
            exhausted = patience_exhausted(progress, valid, is_best, self.config)  # counts every validation
            self.stop_reason = exhausted or self.stop_reason
        self._write_checkpoint(valid, is_best)
        self.window.reset()  # validation time is not training throughput

    def _write_checkpoint(self, valid: dict, is_best: bool) -> None:
        """checkpoint_UPDATE.pt with everything a resume needs; checkpoint_last.pt (and _best) point at it."""
        progress = self.progress
        # Every rank's RNG goes into the checkpoint (a collective: all ranks are here).
        torch_states = distributed.all_gather_objects(torch.get_rng_state(), self.ranks)
        cuda_states = distributed.all_gather_objects(
            torch.cuda.get_rng_state() if self.device.type == "cuda" else None, self.ranks)
        if self.ranks.is_main:
            training = training_state(self.optimizer, self.scaler, replace(progress, elapsed=self.elapsed()),
                                      torch_states, cuda_states, self.ranks.world_size, len(self.train_data))
            if self.ema is not None:  # the checkpoint's model is the average, what translate and averaging read
                training["raw_model"] = {name: value.detach().cpu() for name, value in self.model.state_dict().items()}
            manifest = self.data.manifest
            payload = make_payload(self.evaluated_model, self.vocab, self.config, manifest["src"], manifest["tgt"],
                                   progress.update, progress.epoch, valid=valid, training=training,
                                   **({"pairs": [[p.src, p.tgt] for p in self.data.pairs]} if self.data.pairs else {}))
            path = self.save_dir / f"checkpoint_{progress.update}.pt"
            save_checkpoint(payload, path)
            link_checkpoint(path, self.save_dir / "checkpoint_last.pt")
            if is_best:
                link_checkpoint(path, self.save_dir / "checkpoint_best.pt")
            if self.config.keep_last > 0:
                prune_checkpoints(self.save_dir, self.config.keep_last)
        self.last_saved_update = progress.update
