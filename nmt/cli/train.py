"""`nmt train` and `nmt average-checkpoints`: a run from a prepared DATA_DIR, and the mean of its checkpoints.

Each option of `nmt train` is named as the ModelConfig or TrainConfig field it sets (None: the preset's value), so
the command hands them to nmt.train.defaults.resolve_configs as they are.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from nmt.cli.app import command, console, dry_run, dry_run_asked, set_threads
from nmt.cli.options import Device, Threads, config_number, number
from nmt.cli.progress import RichTrainReporter
from nmt.config import DEFAULT_SAVE_DIR, PRESETS, ModelConfig, TrainConfig
from nmt.ranges import Range

CHECKPOINTS_AVERAGED = Range(1, 100_000)


def _option(kind, help: str, *names: str):
    return Annotated[Optional[kind], typer.Option(*names, help=help)]


def _number(config_type: type, field: str, help: str):
    """The option setting a numeric FIELD of the model or training config, with the field's range."""
    kind = next(f.type for f in dataclasses.fields(config_type) if f.name == field)
    return Annotated[Optional[{"int": int, "float": float}[kind]], config_number(config_type, field, help)]


# The model (default: the preset's)
EncoderLayers = _number(ModelConfig, "encoder_layers", "Encoder layers (N).")
DecoderLayers = _number(ModelConfig, "decoder_layers", "Decoder layers (N).")
DModel = _number(ModelConfig, "d_model", "Model width (d_model).")
DFF = _number(ModelConfig, "d_ff", "Feed-forward inner width (d_ff).")
Heads = _number(ModelConfig, "heads", "Attention heads (h).")
Dropout = _number(ModelConfig, "dropout", "P_drop on embeddings and sublayer outputs.")
AttentionDropout = _number(ModelConfig, "attention_dropout", "Dropout on attention weights.")
ActivationDropout = _number(ModelConfig, "activation_dropout", "Dropout after the FFN's activation.")
PreNorm = _option(bool, "LayerNorm before each sublayer (default: after, as in the paper).", "--pre-norm/--post-norm")
LearnedPositions = _option(bool, "Learned position embeddings (Table 3 row E) instead of sinusoids.",
                           "--learned-positions/--sinusoidal-positions")
MaxPositions = _number(ModelConfig, "max_positions", "Positions for --learned-positions.")
Activation = _option(str, "The feed-forward's nonlinearity: relu (the paper), gelu, or swish (SiLU, as OPUS-MT "
                          "models).")
ScaleEmbedding = _option(bool, "Multiply embeddings by sqrt(d_model) (section 3.4; the default).",
                         "--scale-embedding/--no-scale-embedding")
# Training (default: the preset's)
Lr = _number(TrainConfig, "lr", "Scale on the paper's schedule d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).")
Warmup = _number(TrainConfig, "warmup", "Warmup updates of the schedule.")
MaxTokens = _number(TrainConfig, "max_tokens", "Tokens per batch and process, padding counted.")
UpdateFreq = _number(TrainConfig, "update_freq", "Batches accumulated into one update.")
MaxUpdates = _number(TrainConfig, "max_updates", "Stop after this many updates (0: no limit).")
MaxEpochs = _number(TrainConfig, "max_epochs", "Stop after this many epochs (0: no limit).")
MaxTime = _number(TrainConfig, "max_time",
                  "Stop after this many minutes, validations included: training stops early enough for the final "
                  "validation to end within it, and a validation running well past it leaves out its BLEU (0: no "
                  "limit).")
ClipNorm = _number(TrainConfig, "clip_norm", "Clip the gradient norm to this (0: off).")
LabelSmoothing = _number(TrainConfig, "label_smoothing", "Label smoothing epsilon_ls.")
AdamBeta1 = _number(TrainConfig, "adam_beta1", "Adam beta1.")
AdamBeta2 = _number(TrainConfig, "adam_beta2", "Adam beta2.")
AdamEps = _number(TrainConfig, "adam_eps", "Adam epsilon.")
WeightDecay = _number(TrainConfig, "weight_decay", "Adam weight decay.")
Seed = _number(TrainConfig, "seed", "Random seed (initialization, dropout, batch order).")
LogInterval = _number(TrainConfig, "log_interval", "Updates between metrics.jsonl lines.")
SaveIntervalUpdates = _number(TrainConfig, "save_interval_updates",
                              "Validate and save checkpoint_UPDATE.pt every N updates (0: at each epoch's end).")
KeepLast = _number(TrainConfig, "keep_last", "Interval checkpoints to keep (0: all).")
ValidBleu = _option(bool, "Report greedy BLEU on the valid split at each validation.", "--valid-bleu/--no-valid-bleu")
Precision = _option(str, "auto, fp32, bf16 or fp16 (autocast; fp16 with dynamic loss scaling). auto: bf16 where "
                         "the device computes it natively (GPUs from Ampere on, CPUs with AVX512-BF16 or AMX), "
                         "else fp32.")
LrSchedule = _option(str, "inverse_sqrt (the paper's warmup then decay) or constant (--lr at every update).")
ValidBeam = _number(TrainConfig, "valid_beam", "Beam size of validation BLEU (1: greedy).")
Patience = _number(TrainConfig, "patience", "Stop after this many validations without improvement (0: never).")
EarlyStopMetric = _option(str, "What --patience watches: loss (valid loss) or bleu (valid BLEU).")
MaxNonfinite = _number(TrainConfig, "max_nonfinite",
                       "Stop after this many updates in a row with an inf/NaN loss or gradient (each is skipped).")
Compile = _option(bool, "torch.compile the model for training (helps most on GPUs).", "--compile/--no-compile")
InitFrom = _option(Path, "Start from this checkpoint's weights (fine-tuning); optimizer and schedule start anew.")
EmaDecay = _number(TrainConfig, "ema_decay",
                   "Keep an exponential moving average of the weights with this decay (e.g. 0.999, warmed up as "
                   "min(D, (1+t)/(10+t))): validation and the checkpoints' model use it (0: off).")
SamplingTemperature = _number(TrainConfig, "sampling_temperature",
                              "A dataset of several pairs: draw each pair's sentences with probability proportional "
                              "to its size^(1/T) (1: the data's proportions; larger: flatter, small pairs more "
                              "often).")
SubwordAlpha = _number(TrainConfig, "subword_alpha",
                       "Subword regularization: segment each training batch anew with SentencePiece's sampling (BPE: "
                       "each merge dropped with this probability, as BPE-dropout's 0.1; unigram: the smoothing). 0: "
                       "the data's own segmentation.")
Tensorboard = _option(Path, "Also write metrics.jsonl's scalars as TensorBoard events into this folder (needs "
                            "nmt[tensorboard]).")


@command("train")
def train_command(
    data_dir: Annotated[Optional[Path], typer.Argument(
        help="A prepared DATA_DIR. Default: the one dataset under data/.")] = None,
    arch: Annotated[Optional[str], typer.Option(
        help=f"Preset: {', '.join(PRESETS)} (--print-config shows every value it sets). Default: transformer_base; "
             "with --init-from or --resume, the checkpoint's architecture.")] = None,
    save_dir: Annotated[Path, typer.Option(help="Where checkpoints and metrics.jsonl go.")] = DEFAULT_SAVE_DIR,
    resume: Annotated[bool, typer.Option(help="Continue the run in --save-dir from checkpoint_last.pt.")] = False,
    device: Device = None, threads: Threads = None,
    encoder_layers: EncoderLayers = None, decoder_layers: DecoderLayers = None, d_model: DModel = None,
    d_ff: DFF = None, heads: Heads = None, dropout: Dropout = None, attention_dropout: AttentionDropout = None,
    activation_dropout: ActivationDropout = None, pre_norm: PreNorm = None,
    learned_positions: LearnedPositions = None, max_positions: MaxPositions = None, activation: Activation = None,
    scale_embedding: ScaleEmbedding = None,
    lr: Lr = None, warmup: Warmup = None, max_tokens: MaxTokens = None, update_freq: UpdateFreq = None,
    max_updates: MaxUpdates = None, max_epochs: MaxEpochs = None, max_time: MaxTime = None,
    clip_norm: ClipNorm = None, label_smoothing: LabelSmoothing = None, adam_beta1: AdamBeta1 = None,
    adam_beta2: AdamBeta2 = None, adam_eps: AdamEps = None, weight_decay: WeightDecay = None, seed: Seed = None,
    log_interval: LogInterval = None, save_interval_updates: SaveIntervalUpdates = None, keep_last: KeepLast = None,
    valid_bleu: ValidBleu = None, precision: Precision = None, lr_schedule: LrSchedule = None,
    valid_beam: ValidBeam = None, patience: Patience = None, early_stop_metric: EarlyStopMetric = None,
    max_nonfinite: MaxNonfinite = None, compile: Compile = None, init_from: InitFrom = None,
    ema_decay: EmaDecay = None, tensorboard: Tensorboard = None, sampling_temperature: SamplingTemperature = None,
    subword_alpha: SubwordAlpha = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved model and training settings (preset, checkpoint and options "
                               "applied) as JSON and exit; nothing is read but a checkpoint named.")] = False,
) -> None:
    """Train a Transformer on a prepared DATA_DIR; checkpoints and metrics.jsonl go to --save-dir."""
    # Every option but these sets the config field of its name (first, while the locals are the options alone).
    overrides = {name: value for name, value in locals().items()
                 if name not in ("data_dir", "arch", "save_dir", "resume", "device", "threads", "print_config")}
    from nmt.train.defaults import default_data_dir, resolve_configs, run_defaults

    set_threads(threads)
    # A dry run checks options only: a checkpoint that does not exist yet is no error there.
    defaults = run_defaults(arch, save_dir, resume,
                            init_from if init_from is not None and (not dry_run_asked() or init_from.exists())
                            else None)
    model_config, train_config = resolve_configs(defaults, overrides)
    if print_config:
        typer.echo(json.dumps({"defaults": defaults.source, "model": dataclasses.asdict(model_config),
                               "train": dataclasses.asdict(train_config)}, indent=2))
        return
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if dry_run("train", {"architecture": defaults.source, "model": model_config, "training": train_config,
                         "tokens per update (budget)": f"{train_config.max_tokens:,} x --update-freq "
                         f"{train_config.update_freq} x {world_size} processes = "
                         f"{train_config.max_tokens * train_config.update_freq * world_size:,}"}):
        return
    from nmt.train.run import train  # torch: after the checks, so that they and dry runs stay quick

    if arch is None and (init_from is not None or resume):
        console.print(f"[cyan]train[/] architecture and defaults from {defaults.source}", highlight=False)
    summary = train(data_dir or default_data_dir(), save_dir, model_config, train_config, resume=resume,
                    device=device, reporter=RichTrainReporter())
    if summary is not None:  # the main process: the others say nothing
        skipped = summary["skipped_nonfinite"] + summary["skipped_oom"]
        console.print(f"[green]done[/] {summary['stop_reason']} at update {summary['update']}; "
                      f"best valid loss {summary['best_valid_loss']:.3f}; checkpoints in {summary['save_dir']}"
                      + (f"; {skipped} updates skipped (inf/NaN or out of memory)" if skipped else ""))


@command("average-checkpoints")
def average_checkpoints_command(
    inputs: Annotated[list[Path], typer.Argument(
        metavar="PATH", show_default=False,
        help="A save dir (with --last or --best) or checkpoint files to average.")],
    output: Annotated[Path, typer.Option(help="Where to write the averaged checkpoint.")],
    last: Annotated[Optional[int], number(
        "Average the last N interval checkpoints of the save dir.", CHECKPOINTS_AVERAGED)] = None,
    best: Annotated[Optional[int], number(
        "Average the N interval checkpoints with the lowest validation loss (valid split only).",
        CHECKPOINTS_AVERAGED)] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace --output if it exists (never one of the checkpoints averaged, nor a run's "
                        "checkpoint_last/best/UPDATE.pt).")] = False,
) -> None:
    """Average the parameters of checkpoints (section 6.1): named files, or the last / best N of a save dir."""
    from nmt.atomic import check_output_file
    from nmt.checkpoint import average_checkpoints, check_average_output, save_checkpoint, select_checkpoints

    if dry_run("average-checkpoints", {"inputs": [str(p) for p in inputs], "output": output}):
        return
    check_output_file(output)  # before any checkpoint is read
    paths = select_checkpoints(inputs, last, best)
    check_average_output(output, paths, force)
    asked = last if last is not None else best
    if asked is not None and len(paths) < asked:
        console.print(f"[yellow]warning:[/] {'--last' if last is not None else '--best'} {asked} asked, but "
                      f"{inputs[0]} holds only {len(paths)} interval checkpoint{'s' * (len(paths) != 1)}"
                      f"{' with validation results' if best is not None else ''}: averaging {len(paths)}",
                      highlight=False, soft_wrap=True)
    save_checkpoint(average_checkpoints(paths), output)
    console.print(f"[green]averaged[/] {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {output}")
