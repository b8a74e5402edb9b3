"""The update loop: batches -> label-smoothed loss -> Adam with the paper's schedule -> validation -> checkpoints.

The trainer knows nothing of how progress is shown: it calls a `TrainReporter` (the CLI's draws a Rich bar).
A run can be stopped (SIGTERM/SIGINT, --max-time, --patience) and resumed (`resume=True`) from checkpoint_last.pt,
which holds the optimizer, loss scaler, every rank's RNG state and the position in the epoch's batches as well as the
weights: a resumed run computes exactly the updates the uninterrupted one would have.

Under torchrun each rank trains on its shard of the batches (DistributedDataParallel: gradients are all-reduced once
per update, in the backward of the update's last batch). Everything that decides control flow (stop, skip) is agreed
through a collective, so no rank waits in a collective the others never reach. Rank 0 alone writes.
"""

from __future__ import annotations

import hashlib
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

from nmt.atomic import write_json, write_text
from nmt.checkpoint import (interval_checkpoints, link_checkpoint, load_checkpoint, make_payload, prune_checkpoints,
                            save_checkpoint)
from nmt.config import ModelConfig, SearchConfig, TrainConfig, from_dict, matching_preset, replace_fields
from nmt.data.batching import make_batches
from nmt.data.binary import load_manifest
from nmt.data.dataset import ParallelDataset
from nmt.errors import NmtError
from nmt.model.transformer import build_model, count_parameters
from nmt.search.beam import beam_search
from nmt.train.loss import label_smoothed_nll_loss
from nmt.train import distributed
from nmt.train.lock import SaveDirLock
from nmt.metrics_log import parse_record
from nmt.train.schedule import inverse_sqrt_lr
from nmt.vocab import Vocab

# Validation decodes with a tight length limit: early models repeat themselves until the limit.
VALID_MAX_LEN_A, VALID_MAX_LEN_B = 1.5, 10


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
    validation_seconds: float = 0.0  # how long the last validation took: --max-time keeps that much for the final one
    best_valid_loss: float = math.inf
    best_valid_bleu: float = -1.0
    validations_without_improvement: int = 0  # of --early-stop-metric, for --patience
    skipped_nonfinite: int = 0  # updates skipped because the loss or gradient was inf/NaN
    skipped_oom: int = 0  # updates skipped because a batch ran out of device memory


class Trainer:
    def __init__(self, data_dir: Path, save_dir: Path, model_config: ModelConfig, train_config: TrainConfig,
                 resume: bool = False, device: str | None = None, reporter: TrainReporter | None = None):
        train_config.validate()
        self.ranks, self.device = distributed.setup(device)
        self.data_dir, self.save_dir = Path(data_dir), Path(save_dir)
        self.config = train_config
        self.reporter = (reporter or NullReporter()) if self.ranks.is_main else NullReporter()
        # Held from before the resume check to the end of run(): a second run on this save dir is refused.
        self.lock = SaveDirLock(self.save_dir).acquire() if self.ranks.is_main else None
        try:
            self._setup(model_config, resume)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the save dir and the DDP wrapper (run() does at its end; for a Trainer built and never run)."""
        if self.lock is not None:
            self.lock.release()
        # DDP holds the process group: while it lives, destroying the group leaves gloo's worker threads running
        # into the interpreter's exit, where one can abort the process ("terminate called without an active
        # exception") after a finished run.
        self.ddp = None
        self.train_model = getattr(self, "model", None)

    def _setup(self, model_config: ModelConfig, resume: bool) -> None:
        train_config = self.config
        self.manifest = load_manifest(self.data_dir)
        self.vocab = self._load_vocab()
        self.train_data = ParallelDataset(self.data_dir, "train", self.manifest)
        self.valid_data = ParallelDataset(self.data_dir, "valid", self.manifest)
        if len(self.valid_data) == 0:
            raise NmtError(f"{self.data_dir}: the valid split is empty; prepare the data with a validation set")
        for dataset in (self.train_data, self.valid_data):
            dataset.check_ids(len(self.vocab))
        self.valid_refs = (self.data_dir / self.manifest["splits"]["valid"]["text"]["tgt"]).read_text(
            encoding="utf-8").split("\n")[: len(self.valid_data)]
        # For experiments only: False leaves each rank's gradients its own (the ranks then train different models).
        self.synchronize_gradients = True
        # Called as gradient_hook(update, model) once the update's gradients are synchronized and normalized,
        # before clipping: for inspecting gradients (the distributed tests compare them across setups).
        self.gradient_hook = None

        model_config = replace_fields(model_config, {"vocab_size": len(self.vocab)})
        self.progress = TrainProgress()
        resume_payload = self._resume_payload(resume, model_config)
        if resume_payload is not None:
            model_config = from_dict(ModelConfig, resume_payload["model_config"])
        self._check_positions(model_config)
        torch.manual_seed(train_config.seed)  # the same initial weights on every rank
        self.model = build_model(model_config).to(self.device)
        if resume_payload is None and train_config.init_from:
            self._init_from(Path(train_config.init_from))
        if self.ranks.distributed:  # each rank its own dropout stream
            torch.manual_seed(train_config.seed + 1_000_003 * self.ranks.rank)
        self.optimizer = self._make_optimizer()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=train_config.precision == "fp16")
        if resume_payload is not None:
            self._restore(resume_payload)
        self.metrics_path = self.save_dir / "metrics.jsonl"

        self.ddp = None
        self.train_model = self.model
        if self.ranks.distributed:
            self.ddp = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.train_model = self.ddp
        if train_config.compile:
            self.train_model = torch.compile(self.train_model, dynamic=True)

    # --- setup -----------------------------------------------------------------------------------------------

    def _load_vocab(self) -> Vocab:
        """The data's SentencePiece model, checked against the digest the manifest recorded: a swapped spm.model
        would train silently on ids that mean other pieces."""
        path = self.data_dir / self.manifest["spm_model"]
        if not path.is_file():
            raise NmtError(f"{path}: not found (prepare the data again with `nmt prepare`)")
        data = path.read_bytes()
        recorded = self.manifest.get("spm")
        expected = recorded.get("sha256") if isinstance(recorded, dict) else None
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise NmtError(f"{path}: not the SentencePiece model this data was prepared with (its SHA-256 differs from "
                           "manifest.json's); the token ids would mean other pieces: prepare the data again")
        return Vocab.from_bytes(data)

    def _check_positions(self, model_config: ModelConfig) -> None:
        """Learned positions have a table of max_positions rows: a longer pair would index past it."""
        if not model_config.learned_positions:
            return
        for dataset in (self.train_data, self.valid_data):
            # the decoder reads bos + target without eos: as many positions as the target's length with eos
            longest = int(max(dataset.src_lengths.max(initial=0), dataset.tgt_lengths.max(initial=0)))
            if longest > model_config.max_positions:
                raise NmtError(f"{self.data_dir}: the {dataset.split} split has a sentence of {longest} pieces "
                               f"(end-of-sentence included), more than --max-positions {model_config.max_positions} "
                               "of --learned-positions: raise --max-positions, or prepare with a lower --max-tokens")

    def _resume_payload(self, resume: bool, model_config: ModelConfig) -> dict | None:
        last = self.save_dir / "checkpoint_last.pt"
        if not resume:
            if last.exists():
                raise NmtError(f"{self.save_dir} already holds a run (checkpoint_last.pt): pass --resume to continue "
                               "it, or choose another --save-dir")
            return None
        candidates = [last] + [path for _, path in reversed(interval_checkpoints(self.save_dir))]
        if not any(path.exists() for path in candidates):
            raise NmtError(f"--resume: no checkpoint_last.pt in {self.save_dir}")
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
                self.reporter.message(f"{problems[0]}; resuming from {path.name} instead")
            break
        if payload is None:
            raise NmtError(f"--resume: no loadable checkpoint in {self.save_dir} ({problems[0]})")
        self._check_resumable(payload)  # first: another vocabulary also shows as another vocab_size
        saved = from_dict(ModelConfig, payload["model_config"])
        if saved != model_config:
            changed = [name for name in asdict(saved) if getattr(saved, name) != getattr(model_config, name)]
            raise NmtError(f"--resume: the run in {self.save_dir} has another architecture ({', '.join(changed)} "
                           "differ); drop those options or use another --save-dir")
        return payload

    def _check_resumable(self, payload: dict) -> None:
        """Refuse a resume whose data or batching options the checkpoint's progress cannot carry over.

        The progress counts batches of an epoch's plan, and the plan is a function of the training pairs'
        lengths, --max-tokens and --seed: another corpus, vocabulary or (inside an epoch) another budget or seed
        would silently repeat some pairs and skip others. Options that only steer the run (limits, learning
        rate, intervals, precision) may change.
        """
        if bytes(payload["vocab"].numpy().tobytes()) != self.vocab.model_proto:
            raise NmtError(f"--resume: {self.data_dir}'s spm.model is not the vocabulary the run in {self.save_dir} "
                           "was trained with; point at the run's data directory or use another --save-dir")
        training = payload["training"]
        pairs = training.get("train_sentences")
        if pairs is not None and pairs != len(self.train_data):
            raise NmtError(f"--resume: {self.data_dir} holds {len(self.train_data):,} training pairs, the run in "
                           f"{self.save_dir} was trained on {pairs:,}; point at the run's data directory or use "
                           "another --save-dir (--init-from fine-tunes on new data)")
        saved = payload.get("train_config") or {}
        position = training["progress"].get("batch_position", 0)
        if position:
            for name in ("max_tokens", "seed"):
                if name in saved and saved[name] != getattr(self.config, name):
                    option = "--" + name.replace("_", "-")
                    raise NmtError(f"--resume: the run stopped inside epoch {training['progress']['epoch']} "
                                   f"(batch {position} of its plan), which {option} {saved[name]} made; "
                                   f"{option} {getattr(self.config, name)} would repeat or skip pairs: keep "
                                   f"{option} {saved[name]}")

    def _init_from(self, path: Path) -> None:
        """Fine-tuning: the weights of `path`, nothing else (optimizer, schedule and progress start anew)."""
        payload = load_checkpoint(path)
        if bytes(payload["vocab"].numpy().tobytes()) != self.vocab.model_proto:
            raise NmtError(f"--init-from {path}: its vocabulary differs from {self.data_dir}'s spm.model; prepare "
                           "the fine-tuning data with the same SentencePiece model")
        saved = from_dict(ModelConfig, payload["model_config"])
        if saved != self.model.config:
            changed = [name for name in asdict(saved) if getattr(saved, name) != getattr(self.model.config, name)]
            theirs, ours = matching_preset(saved), matching_preset(self.model.config)
            named = ""
            if theirs != ours:
                named = (f"; the checkpoint is a {theirs}" + (f", not a {ours}" if ours else "")
                         + f": drop --arch (the checkpoint's architecture is the default) or pass --arch {theirs}"
                         if theirs else "; drop --arch and the architecture options: the checkpoint's are the default")
            raise NmtError(f"--init-from {path}: another architecture ({', '.join(changed)} differ){named}")
        self.model.load_state_dict(payload["model"])

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
        rng = training["rng"]
        per_rank = rng.get("torch_per_rank") or [rng["torch"]]
        if len(per_rank) == self.ranks.world_size:
            torch.set_rng_state(per_rank[self.ranks.rank])
        else:  # another number of processes than the run had: exact continuation is impossible anyway
            self.reporter.message(f"resuming with {self.ranks.world_size} processes where the run had "
                                  f"{len(per_rank)}: this epoch's remaining batches and the dropout draws differ from an uninterrupted run's")
            torch.manual_seed(self.config.seed + 1_000_003 * self.ranks.rank + self.progress.update)
        if self.device.type == "cuda" and rng.get("cuda") is not None and len(per_rank) == self.ranks.world_size:
            cuda_states = rng.get("cuda_per_rank") or [rng["cuda"]]
            torch.cuda.set_rng_state(cuda_states[self.ranks.rank])

    # --- the loop --------------------------------------------------------------------------------------------

    def run(self) -> dict:
        """Train until a limit is reached or a stop is requested; returns a summary."""
        config, progress = self.config, self.progress
        if self.ranks.is_main:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.save_dir / "config.json",
                       {"model": asdict(self.model.config), "train": asdict(config), "data_dir": str(self.data_dir),
                        "world_size": self.ranks.world_size})
            self._truncate_metrics(progress.update)
        self.started = time.monotonic()
        self.signal_received: str | None = None
        self.stop_reason = self._limit_reached(include_time=True)  # a resumed run may already be done
        self.last_saved_update = progress.update if progress.update else -1  # resumed: that update is on disk
        self.nonfinite_in_a_row = 0
        previous_handlers = self._install_signal_handlers()
        total = config.max_updates or None
        self.reporter.start(progress.update, total, {
            "parameters": count_parameters(self.model), "device": str(self.device),
            "train_sentences": len(self.train_data), "resumed_at": progress.update,
            "world_size": self.ranks.world_size})
        self._reset_log_window()
        try:
            while self.stop_reason is None:
                plan = make_batches(self.train_data.src_lengths, self.train_data.tgt_lengths, config.max_tokens,
                                    seed=config.seed, epoch=progress.epoch, rank=self.ranks.rank,
                                    world_size=self.ranks.world_size)
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
        finally:
            self._restore_signal_handlers(previous_handlers)
            self.reporter.stop()
            self.close()
        return {"update": progress.update, "epoch": progress.epoch, "stop_reason": self.stop_reason,
                "best_valid_loss": progress.best_valid_loss, "save_dir": str(self.save_dir),
                "skipped_nonfinite": progress.skipped_nonfinite, "skipped_oom": progress.skipped_oom}

    def _train_update(self, group: list[np.ndarray]) -> bool:
        """One update from `update_freq` batches per rank; the loss is normalized by the target tokens of the whole
        update over all ranks. Returns False, having done nothing, if the ranks agreed to stop first."""
        config, model, ranks = self.config, self.model, self.ranks
        model.train()
        batches = [self.train_data.collate(indices).to(self.device) for indices in group]
        local_tgt = sum(batch.tgt_count for batch in batches)
        local_src = sum(batch.src_count for batch in batches)
        # One small collective per update: the update's token count and every rank's wish to stop, so that all
        # ranks normalize alike and stop at the same update.
        wants_signal = 1.0 if self.signal_received else 0.0
        wants_time = 1.0 if self._limit_reached(include_time=True) else 0.0
        tgt_tokens, src_tokens, signal_votes, time_votes = distributed.all_reduce_sum(
            [local_tgt, local_src, wants_signal, wants_time], self.device, ranks)
        if signal_votes or time_votes:
            self.stop_reason = (f"stopped by {self.signal_received or 'a signal to another rank'}" if signal_votes
                                else f"reached --max-time {config.max_time:g} minutes")
            return False

        # DDP averages gradients over ranks; scaling by world_size / tokens makes that the sum over all the update's
        # target tokens divided by their number, whatever each rank's share.
        scale = ranks.world_size / tgt_tokens
        self.optimizer.zero_grad(set_to_none=True)
        try:
            for position, batch in enumerate(batches):
                last = position == len(batches) - 1
                sync = self.ddp is not None and last and self.synchronize_gradients
                context = self.ddp.no_sync() if self.ddp is not None and not sync else nullcontext()
                with context:
                    with self._autocast():
                        output_mask = batch.target.ne(model.config.pad_id)  # (B, T)
                        logits = self.train_model(batch.src_tokens, batch.prev_tokens, output_mask)  # (N, V)
                    loss, nll = label_smoothed_nll_loss(logits, batch.target[output_mask], config.label_smoothing,
                                                        model.config.pad_id)
                    self.scaler.scale(loss * scale).backward()
                self.window["loss"] += loss.detach()
                self.window["nll"] += nll.detach()
        except torch.OutOfMemoryError:
            if ranks.distributed:
                raise NmtError(f"rank {ranks.rank} ran out of device memory with --max-tokens {config.max_tokens}; "
                               "lower --max-tokens (and raise --update-freq to keep the batch size)") from None
            self.optimizer.zero_grad(set_to_none=True)
            del batches
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            self.progress.skipped_oom += 1
            self._reset_log_window()
            self.reporter.message(f"out of memory in a batch at update {self.progress.update + 1}: skipped "
                                  f"({self.progress.skipped_oom} so far); consider a lower --max-tokens")
            return True

        update = self.progress.update + 1
        lr = self._learning_rate(update)
        for group_params in self.optimizer.param_groups:
            group_params["lr"] = lr
        self.scaler.unscale_(self.optimizer)
        if self.gradient_hook is not None:
            self.gradient_hook(update, model)
        # The norm comes from synchronized gradients, so every rank takes the same decision on it.
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                   config.clip_norm if config.clip_norm > 0 else math.inf)
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
        self.window["tgt_tokens"] += tgt_tokens
        self.window["src_tokens"] += src_tokens
        self.window["updates"] += 1
        self.window["lr"] = lr
        self.window["grad_norm"] = grad_norm
        return True

    def _skip_nonfinite(self, update: int) -> bool:
        """An update whose loss or gradient is inf/NaN is not applied (fp16 overflows are, early on, normal)."""
        self.progress.skipped_nonfinite += 1
        self._reset_log_window()
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

    def _learning_rate(self, update: int) -> float:
        if self.config.lr_schedule == "constant":
            return self.config.lr
        return inverse_sqrt_lr(update, self.model.config.d_model, self.config.warmup, self.config.lr)

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
        self.stop_reason = self.stop_reason or self._limit_reached(include_time=False)
        if self.stop_reason:
            return  # run() saves once, after the loop
        interval = config.save_interval_updates
        if (interval and progress.update % interval == 0) or (not interval and epoch_done):
            self._save(validate=True)

    def _limit_reached(self, include_time: bool) -> str | None:
        """Limits that every rank sees alike; the wall clock, which differs per rank, only where asked (it is then
        agreed on in `_train_update`)."""
        config, progress = self.config, self.progress
        if config.max_updates and progress.update >= config.max_updates:
            return f"reached --max-updates {config.max_updates}"
        if config.max_epochs and progress.epoch > config.max_epochs:
            return f"reached --max-epochs {config.max_epochs}"
        # --max-time covers the final validation too: stop when the time left would not hold one.
        if include_time and config.max_time and (
                self.elapsed() + self.progress.validation_seconds >= config.max_time * 60):
            return f"reached --max-time {config.max_time:g} minutes"
        return None

    def elapsed(self) -> float:
        return self.progress.elapsed + time.monotonic() - self.started

    # --- logging ---------------------------------------------------------------------------------------------

    def _reset_log_window(self) -> None:
        self.window = {"loss": torch.zeros((), device=self.device), "nll": torch.zeros((), device=self.device),
                       "tgt_tokens": 0.0, "src_tokens": 0.0, "updates": 0, "lr": 0.0, "grad_norm": None}
        self.window_started = time.monotonic()

    def _log_window(self) -> None:
        window = self.window
        if not window["updates"]:
            return
        seconds = max(time.monotonic() - self.window_started, 1e-9)
        # .item() waits for the device; done here, on logging steps only. Loss sums are summed over ranks.
        loss_sum, nll_sum = distributed.all_reduce_sum([window["loss"].item(), window["nll"].item()], self.device,
                                                       self.ranks)
        tokens = max(window["tgt_tokens"], 1)
        loss, nll = loss_sum / tokens, nll_sum / tokens
        record = {"update": self.progress.update, "epoch": self.progress.epoch, "loss": loss, "nll_loss": nll,
                  "ppl": round(math.exp(min(nll, 50)), 2), "lr": window["lr"],
                  "tgt_tokens_per_s": round(window["tgt_tokens"] / seconds, 1),
                  "src_tokens_per_s": round(window["src_tokens"] / seconds, 1),
                  "padding_ratio": round(self.padding_ratio, 4), "wall": round(self.elapsed(), 1)}
        if window["grad_norm"] is not None:
            record["grad_norm"] = round(float(window["grad_norm"]), 4)
        if self.progress.skipped_nonfinite or self.progress.skipped_oom:
            record["skipped_nonfinite"] = self.progress.skipped_nonfinite
            record["skipped_oom"] = self.progress.skipped_oom
        self._write_record(record)
        self._reset_log_window()

    def _write_record(self, record: dict) -> None:
        if not self.ranks.is_main:
            return
        with open(self.metrics_path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.reporter.record(record)

    def _truncate_metrics(self, update: int) -> None:
        """A resumed run continues the log from its checkpoint's update: records a crash left beyond it go, so the
        log reads as one uninterrupted run."""
        if not self.metrics_path.is_file():
            return
        kept = []
        with open(self.metrics_path, "rb") as handle:
            for raw in handle:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                record = parse_record(line)
                if record is not None and record["update"] <= update:  # else cut by a crash, or not a record
                    kept.append(line + "\n")
        write_text(self.metrics_path, "".join(kept))

    # --- validation and checkpoints --------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict:
        """Valid loss (teacher-forced) and, if enabled, BLEU of the translations against the raw references.
        Each rank takes its share of the batches; sums and translations are gathered, so the figures are the whole
        split's (corpus BLEU of all translations, not a mean of per-rank scores)."""
        model, config, ranks = self.model, self.config, self.ranks
        model.eval()
        loss_sum = nll_sum = 0.0
        tokens = 0
        plan = make_batches(self.valid_data.src_lengths, self.valid_data.tgt_lengths, config.max_tokens,
                            shuffle=False)
        search = SearchConfig(beam=config.valid_beam, max_len_a=VALID_MAX_LEN_A, max_len_b=VALID_MAX_LEN_B)
        hypotheses: dict[int, str] = {}
        # Decoding an untrained model's outputs to the length limit can take long: past the --max-time limit, BLEU
        # is given up for this validation (the loss is always computed).
        deadline = self.started + config.max_time * 60 - self.progress.elapsed if config.max_time else math.inf
        out_of_time = False
        for indices in plan.batches[ranks.rank::ranks.world_size]:  # every batch, none dropped
            batch = self.valid_data.collate(indices).to(self.device)
            with self._autocast():
                output_mask = batch.target.ne(model.config.pad_id)
                logits = model(batch.src_tokens, batch.prev_tokens, output_mask)
            loss, nll = label_smoothed_nll_loss(logits, batch.target[output_mask], config.label_smoothing,
                                                model.config.pad_id)
            loss_sum, nll_sum, tokens = loss_sum + loss.item(), nll_sum + nll.item(), tokens + batch.tgt_count
            out_of_time = out_of_time or time.monotonic() > deadline
            if config.valid_bleu and not out_of_time:
                with self._autocast():
                    results = beam_search(model, batch.src_tokens, search)
                for index, text in zip(indices, self.vocab.decode([hyps[0].tokens for hyps in results])):
                    hypotheses[int(index)] = text
        loss_sum, nll_sum, tokens, late_ranks = distributed.all_reduce_sum(
            [loss_sum, nll_sum, tokens, float(out_of_time)], self.device, ranks)
        tokens = max(tokens, 1)
        metrics = {"valid_loss": round(loss_sum / tokens, 4), "valid_nll_loss": round(nll_sum / tokens, 4),
                   "valid_ppl": round(math.exp(min(nll_sum / tokens, 50)), 2)}
        if config.valid_bleu and late_ranks:
            self.reporter.message(f"update {self.progress.update}: validation BLEU left out: decoding the valid "
                                  f"split would have run past --max-time {config.max_time:g} minutes")
        elif config.valid_bleu:
            for part in distributed.all_gather_objects(hypotheses, ranks):
                hypotheses.update(part)
            ordered = [hypotheses[i] for i in range(len(self.valid_data))]
            metrics["valid_bleu"] = round(sacrebleu.corpus_bleu(ordered, [self.valid_refs]).score, 2)
        return metrics

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
            self._early_stopping(valid, is_best)
        self._write_checkpoint(valid, is_best)
        self._reset_log_window()  # validation time is not training throughput

    def _write_checkpoint(self, valid: dict, is_best: bool) -> None:
        """checkpoint_UPDATE.pt with everything a resume needs; checkpoint_last.pt (and _best) point at it."""
        progress = self.progress
        # Every rank's RNG goes into the checkpoint (a collective: all ranks are here).
        torch_states = distributed.all_gather_objects(torch.get_rng_state(), self.ranks)
        cuda_states = distributed.all_gather_objects(
            torch.cuda.get_rng_state() if self.device.type == "cuda" else None, self.ranks)
        if self.ranks.is_main:
            progress_now = TrainProgress(**asdict(progress))
            progress_now.elapsed = self.elapsed()
            training = {
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "progress": asdict(progress_now),
                "rng": {"torch": torch_states[0], "torch_per_rank": torch_states,
                        "cuda": cuda_states[0], "cuda_per_rank": cuda_states if cuda_states[0] is not None else None},
                "world_size": self.ranks.world_size,
                "train_sentences": len(self.train_data),  # a resume checks it points at the same corpus
            }
            payload = make_payload(self.model, self.vocab, self.config, self.manifest["src"], self.manifest["tgt"],
                                   progress.update, progress.epoch, valid=valid, training=training)
            path = self.save_dir / f"checkpoint_{progress.update}.pt"
            save_checkpoint(payload, path)
            link_checkpoint(path, self.save_dir / "checkpoint_last.pt")
            if is_best:
                link_checkpoint(path, self.save_dir / "checkpoint_best.pt")
            self._prune()
        self.last_saved_update = progress.update

    def _early_stopping(self, valid: dict, is_best_loss: bool) -> None:
        config, progress = self.config, self.progress
        if config.early_stop_metric == "bleu" and "valid_bleu" in valid:
            improved = valid["valid_bleu"] > progress.best_valid_bleu
            progress.best_valid_bleu = max(progress.best_valid_bleu, valid["valid_bleu"])
        else:
            improved = is_best_loss
        progress.validations_without_improvement = 0 if improved else progress.validations_without_improvement + 1
        if config.patience and progress.validations_without_improvement >= config.patience:
            self.stop_reason = (f"early stop: valid {config.early_stop_metric} did not improve in {config.patience} "
                                "validations (--patience)")

    def _prune(self) -> None:
        if self.config.keep_last > 0:
            prune_checkpoints(self.save_dir, self.config.keep_last)

    # --- stopping --------------------------------------------------------------------------------------------

    def _install_signal_handlers(self):
        def request_stop(signum, frame):
            # Acted on at the next update, once all ranks know (a stop decided alone would hang the others).
            self.signal_received = signal.Signals(signum).name
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
