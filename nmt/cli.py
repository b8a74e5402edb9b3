"""The `nmt` command line: each command parses its options, builds a config and calls one library function."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from nmt import __version__
from nmt.atomic import atomic_write, check_output_file
from nmt.config import PRESETS, SearchConfig, replace_fields
from nmt.errors import NmtError

app = typer.Typer(
    help="Neural machine translation with the Transformer (Vaswani et al., 2017): prepare, train, translate, score.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
console = Console(stderr=True)  # stdout carries translations and scores only

DATA_ROOT = Path("data")
DEFAULT_SAVE_DIR = Path("checkpoints")


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit, never a traceback."""
    # SIGTERM (a scheduler, `kill`) ends a command the way Ctrl-C does: temporary files removed, one line, exit 130.
    # `nmt train` installs its own handler while it runs (save a checkpoint, then stop).
    signal.signal(signal.SIGTERM, _interrupt)
    for module in ("typer._click.exceptions", "click.exceptions"):  # Typer >= 0.24 carries its own click
        try:
            importlib.import_module(module).UsageError.show = _show_usage_error
        except (ImportError, AttributeError):
            pass
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where a shell made us ignore it
        signal.signal(signal.SIGINT, _interrupt)
    try:
        app()
    except NmtError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except BrokenPipeError:  # `nmt translate | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except OSError as error:  # disk full, permission denied, ...: say which file and why
        where = f"{error.filename}: " if error.filename else ""
        console.print(f"[bold red]error:[/] {where}{error.strerror or error}", highlight=False, soft_wrap=True)
        sys.exit(1)


def _readable_usage() -> None:
    """Help as a person writes it: a required argument as `NAME...` (Typer's own help braces it, `{NAME}...`) and a
    list-valued option or argument by its element type (`<path>`, not `<list[Path]>`)."""
    try:
        from typer.core import TyperArgument, TyperOption
    except ImportError:
        return
    if hasattr(TyperArgument, "_usage_display_name"):
        def usage_name(self) -> str:
            name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
            return name + ("..." if self.nargs != 1 else "")
        TyperArgument._usage_display_name = usage_name
    for cls in (TyperArgument, TyperOption):
        original = getattr(cls, "display_type", None)
        if original is None or getattr(original, "readable", False):
            continue

        def display_type(self, ctx, _original=original) -> str:
            shown = _original(self, ctx)
            if isinstance(shown, str) and shown.startswith("<list[") and shown.endswith("]>"):
                shown = f"<{shown[6:-2].lower()}>"
            return shown
        display_type.readable = True
        cls.display_type = display_type


_readable_usage()


def _show_usage_error(error, file=None) -> None:
    """Click's usage errors (an unknown option, a value that is not a number) as our one line, with the way on."""
    command = error.ctx.command_path if error.ctx is not None else "nmt"
    console.print(f"[bold red]error:[/] {error.format_message().rstrip('.')} (see `{command} --help`)", highlight=False,
                  soft_wrap=True)


def _interrupt(signum, frame) -> None:
    # One interruption is enough: the cleanup it starts must not be cut short by a second signal (`timeout` sends
    # SIGTERM to the command and then to its whole process group; an impatient user presses Ctrl-C twice), which
    # would leave a temporary file behind and print a traceback from an exit handler. kill -9 still ends us at once.
    for number in (signal.SIGTERM, signal.SIGINT):
        if signal.getsignal(number) is _interrupt:
            signal.signal(number, signal.SIG_IGN)
    raise KeyboardInterrupt


def _command(name: str, parent: typer.Typer = app, label: str | None = None):
    """Register a command whose interruption (Ctrl-C, SIGTERM) ends in one line and exit 130. Typer would turn the
    KeyboardInterrupt into a silent exit 130 before `main` could say anything."""
    def register(function):
        @functools.wraps(function)
        def run(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except KeyboardInterrupt:
                console.print(f"[bold red]interrupted:[/] nmt {label or name} stopped before it "
                              "finished; no output file was left half-written", highlight=False, soft_wrap=True)
                raise typer.Exit(130) from None
        return parent.command(name=name)(run)
    return register


def _stdin():
    """Standard input as bytes; a closed one (`<&-`) is a user error, not an AttributeError."""
    if sys.stdin is None:
        raise NmtError("standard input is closed: pipe text in, or name a file (--input / --hyp)")
    return sys.stdin.buffer


def _dry_run(command: str, facts: dict | None = None, check=None) -> bool:
    """With NMT_DRY_RUN=1 in the environment a command stops once its options are parsed and checked, saying what
    it would do: how the GPU-cluster scripts in examples/ are tested on a machine without GPUs or corpora. `check`
    runs the checks that a real run would make later (it raises NmtError)."""
    if os.environ.get("NMT_DRY_RUN", "") in ("", "0"):
        return False
    if check is not None:
        check()
    console.print(f"dry run: nmt {command}: options are valid", highlight=False)
    for key, value in (facts or {}).items():
        console.print(f"  {key}: {value}", highlight=False, soft_wrap=True)
    return True


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise NmtError(f"--threads must be at least 1, got {threads}")
    import torch
    torch.set_num_threads(threads)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nmt {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Neural machine translation with the Transformer (Vaswani et al., 2017)."""


# --- prepare -------------------------------------------------------------------------------------------------------

@_command("prepare")
def prepare(
    corpus: Annotated[Optional[str], typer.Argument(
        help="A recipe (see --list), or 'custom' for your own files (--src, --tgt, --train, --valid).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output DATA_DIR. Default: data/CORPUS.")] = None,
    mirror: Annotated[Optional[str], typer.Option(
        help="A folder or http(s) URL holding the recipe's files under their upstream names, used instead of "
             "the upstream addresses.")] = None,
    vocab_size: Annotated[Optional[int], typer.Option(
        help="Pieces in the joint SentencePiece BPE vocabulary. Default: the recipe's (8000 for Multi30k).")] = None,
    spm_sample: Annotated[int, typer.Option(
        help="Sentences (both sides together) sampled from the training data to learn SentencePiece; bounds its "
             "memory and time.")] = 2_000_000,
    worker_processes: Annotated[bool, typer.Option(
        "--worker-processes", help="Run the workers as processes, each with its own copy of the model.")] = False,
    workers: Annotated[Optional[int], typer.Option(
        help="Processes that clean, encode and binarize the training data. Default: the CPU count, at most 8.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(
        help="Drop training pairs with a side longer than this many pieces. Default: 250.")] = None,
    max_ratio: Annotated[Optional[float], typer.Option(
        help="Drop training pairs whose length ratio (in pieces) exceeds this. Default: the recipe's.")] = None,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Skip checksum verification (for a mirror of repackaged files).")] = False,
    src: Annotated[Optional[str], typer.Option(help="custom: source language code (file suffix).")] = None,
    tgt: Annotated[Optional[str], typer.Option(help="custom: target language code (file suffix).")] = None,
    train: Annotated[Optional[str], typer.Option(
        help="custom: training prefix; PREFIX.SRC and PREFIX.TGT (or .gz) are read.")] = None,
    valid: Annotated[Optional[str], typer.Option(help="custom: validation prefix.")] = None,
    test: Annotated[Optional[str], typer.Option(help="custom: test prefix (optional).")] = None,
    vocab: Annotated[Optional[Path], typer.Option(
        help="Use this vocabulary instead of learning one: a SentencePiece model, or an nmt checkpoint (whose own "
             "model is used), e.g. the parent of a fine-tuning run.")] = None,
    separate_vocabs: Annotated[bool, typer.Option(
        "--separate-vocabs", help="Learn a SentencePiece model for each side (--vocab-size pieces each), with "
                                  "separate embeddings, instead of one joint model shared by both.")] = False,
    list_recipes: Annotated[bool, typer.Option("--list", help="List the recipes and exit.")] = False,
) -> None:
    """Download (or take from --mirror), clean, learn a joint BPE vocabulary and binarize a corpus into DATA_DIR."""
    from nmt.data.prepare import PrepareOptions, find_side, prepare_corpus, prepare_recipe
    from nmt.data.recipes import RECIPES
    from nmt.data.text import CleaningOptions

    if list_recipes or corpus is None:
        table = Table("recipe", "description", "download", "from")
        for recipe in RECIPES.values():
            size, unknown = recipe.download_size()
            hosts = sorted({remote.url.split("/")[2] for remote in recipe.files.values()})
            table.add_row(recipe.name, recipe.description,
                          f"{size / 1e6:,.1f} MB" + (f" + {unknown} file(s) of unpublished size" if unknown else ""),
                          ", ".join(hosts))
        table.add_row("custom", "your own files: --src, --tgt, --train, --valid [--test]", "-", "-")
        Console().print(table)
        return
    out = out or DATA_ROOT / corpus
    if corpus == "custom":
        for flag, value in (("--src", src), ("--tgt", tgt), ("--train", train), ("--valid", valid)):
            if not value:
                raise NmtError(f"prepare custom needs {flag}")
        cleaning = CleaningOptions()
    elif corpus in RECIPES:
        cleaning = RECIPES[corpus].cleaning
    else:
        raise NmtError(f"unknown corpus {corpus!r}; `nmt prepare --list` shows the recipes")
    if separate_vocabs and vocab is not None:
        raise NmtError("--separate-vocabs learns two vocabularies, --vocab uses a given one: choose one")
    options = PrepareOptions(vocab_size=vocab_size, spm_max_sentences=spm_sample, separate_vocabs=separate_vocabs,
                             workers=workers or min(os.cpu_count() or 1, 8),
                             cleaning=replace_fields(cleaning, {"max_tokens": max_tokens, "max_ratio": max_ratio}))
    recipe_vocab = RECIPES[corpus].vocab_size if corpus in RECIPES else 8000
    options.resolved(recipe_vocab, options.cleaning)  # option values first, before any file is read
    if _dry_run("prepare", {"corpus": corpus, "out": out, "mirror": mirror or "upstream addresses",
                            "vocabulary": vocab or "learned"}):
        return
    if vocab is not None:  # read once the options are known good; checked against --vocab-size
        options = dataclasses.replace(options, vocab_model=_given_vocabulary(vocab), vocab_source=str(vocab))
        options.resolved(recipe_vocab, options.cleaning)
    log = lambda message: console.print(f"[cyan]prepare[/] {message}")  # noqa: E731
    if no_verify and corpus != "custom":
        console.print("[yellow]warning:[/] --no-verify: sizes and checksums are not checked")
    try:
        with _progress_bars() as hook:
            if corpus == "custom":
                splits = {name: (find_side(prefix, src), find_side(prefix, tgt))
                          for name, prefix in (("train", train), ("valid", valid), ("test", test)) if prefix}
                prepared = prepare_corpus(out, src, tgt, splits, options, {"recipe": "custom"}, log, hook)
            else:
                prepared = prepare_recipe(RECIPES[corpus], out, options, mirror, not no_verify, hook, log)
    except KeyboardInterrupt:
        console.print(f"[bold red]interrupted:[/] {out} is incomplete (no manifest.json); run the same command "
                      "again to go on from where it stopped", soft_wrap=True)
        raise typer.Exit(130) from None
    manifest = prepared.manifest
    if all(step["status"] == "skipped" for step in prepared.steps.values()):
        console.print(f"[green]up to date[/] {out}: every step was done already with these options")
    report = manifest["cleaning"]["train"]
    console.print(f"[green]prepared[/] {out}: " + ", ".join(
        f"{name} {split['sentences']:,} pairs" for name, split in manifest["splits"].items())
        + f"; vocabulary {manifest['vocab_size']}; training pairs kept {report['kept']:,}, dropped "
        + (", ".join(f"{reason} {count:,}" for reason, count in report["dropped"].items()) or "none"))


def _given_vocabulary(path: Path):
    """The vocabulary `--vocab` names: a SentencePiece model file, or the vocabulary an nmt checkpoint carries (an
    imported model's: both its SentencePiece models and its table of pieces)."""
    import zipfile

    from nmt.vocab import Vocab

    if not path.is_file():
        raise NmtError(f"--vocab {path}: file not found")
    if zipfile.is_zipfile(path):  # torch.save's format: a checkpoint
        from nmt.checkpoint import load_checkpoint, vocab_from_payload
        return vocab_from_payload(load_checkpoint(path), path)
    try:
        return Vocab.from_bytes(path.read_bytes())
    except NmtError as error:
        raise NmtError(f"--vocab {path}: neither a SentencePiece model nor an nmt checkpoint ({error})") from None


class _progress_bars:
    """A Rich progress bar per download, extraction (bytes) and binarization (pairs): a hook for nmt.data."""

    def __enter__(self):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                                 TimeRemainingColumn(), console=console, transient=False)
        self.tasks = {}
        self.progress.start()
        return self.hook

    def hook(self, name: str, done: int, total: int | None, unit: str = "B") -> None:
        if unit == "B":
            amount = f"{done / 1e6:,.1f}" + (f"/{total / 1e6:,.1f}" if total else "") + " MB"
        else:
            amount = f"{done:,}" + (f"/{total:,}" if total else "") + f" {unit}"
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, amount=amount)
        self.progress.update(self.tasks[name], completed=done, total=total, amount=amount)

    def __exit__(self, *exc):
        self.progress.stop()


# --- train ---------------------------------------------------------------------------------------------------------

def _default_data_dir() -> Path:
    prepared = sorted(path.parent for path in DATA_ROOT.glob("*/manifest.json"))
    if len(prepared) == 1:
        return prepared[0]
    if not prepared:
        raise NmtError("no DATA_DIR given and no prepared dataset under data/; run `nmt prepare CORPUS` first")
    raise NmtError(f"several datasets under data/ ({', '.join(map(str, prepared))}); name one as DATA_DIR")


class _RichTrainReporter:
    """Rich progress for the trainer: refreshes on its own clock, shows what the trainer logged last."""

    progress: Progress | None = None  # from start() to stop(); messages before (resume fallbacks) print plainly

    def start(self, first_update, total_updates, info):
        console.print(f"[cyan]train[/] {info['parameters']:,} parameters on {info['device']}, "
                      f"{info['train_sentences']:,} training pairs"
                      + (f", resuming at update {first_update}" if first_update else ""))
        self.progress = Progress(TextColumn("update {task.completed}"), BarColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[status]}"), console=console)
        self.task = self.progress.add_task("train", total=total_updates, completed=first_update, status="")
        self.progress.start()

    def advance(self, update):
        self.progress.update(self.task, completed=update)

    def record(self, record):
        if "valid_loss" in record:
            bleu = f", BLEU {record['valid_bleu']:.2f}" if "valid_bleu" in record else ""
            self.progress.console.print(f"update {record['update']}: valid loss {record['valid_loss']:.3f}{bleu}")
        else:
            self.progress.update(self.task, status=f"loss {record['loss']:.3f}  lr {record['lr']:.2e}  "
                                                   f"{record['tgt_tokens_per_s']:,.0f} tgt tok/s")

    def message(self, text):
        (self.progress.console if self.progress is not None else console).print(
            f"[yellow]{text}[/]", highlight=False, soft_wrap=True)

    def stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@_command("train")
def train_command(
    data_dir: Annotated[Optional[Path], typer.Argument(
        help="A prepared DATA_DIR. Default: the one dataset under data/.")] = None,
    arch: Annotated[Optional[str], typer.Option(
        help=f"Preset: {', '.join(PRESETS)} (--print-config shows every value it sets). Default: transformer_base; "
             "with --init-from or --resume, the checkpoint's architecture.")] = None,
    save_dir: Annotated[Path, typer.Option(help="Where checkpoints and metrics.jsonl go.")] = DEFAULT_SAVE_DIR,
    resume: Annotated[bool, typer.Option(help="Continue the run in --save-dir from checkpoint_last.pt.")] = False,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, ... Default: cuda if present.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for PyTorch. Default: PyTorch's.")] = None,
    # model (default: the preset's)
    encoder_layers: Annotated[Optional[int], typer.Option(help="Encoder layers (N).")] = None,
    decoder_layers: Annotated[Optional[int], typer.Option(help="Decoder layers (N).")] = None,
    d_model: Annotated[Optional[int], typer.Option(help="Model width (d_model).")] = None,
    d_ff: Annotated[Optional[int], typer.Option(help="Feed-forward inner width (d_ff).")] = None,
    heads: Annotated[Optional[int], typer.Option(help="Attention heads (h).")] = None,
    dropout: Annotated[Optional[float], typer.Option(help="P_drop on embeddings and sublayer outputs.")] = None,
    attention_dropout: Annotated[Optional[float], typer.Option(help="Dropout on attention weights.")] = None,
    activation_dropout: Annotated[Optional[float], typer.Option(help="Dropout after the FFN's activation.")] = None,
    pre_norm: Annotated[Optional[bool], typer.Option(
        "--pre-norm/--post-norm", help="LayerNorm before each sublayer (default: after, as in the paper).")] = None,
    learned_positions: Annotated[Optional[bool], typer.Option(
        "--learned-positions/--sinusoidal-positions",
        help="Learned position embeddings (Table 3 row E) instead of sinusoids.")] = None,
    max_positions: Annotated[Optional[int], typer.Option(help="Positions for --learned-positions.")] = None,
    activation: Annotated[Optional[str], typer.Option(
        help="The feed-forward's nonlinearity: relu (the paper), gelu, or swish (SiLU, as OPUS-MT models).")] = None,
    scale_embedding: Annotated[Optional[bool], typer.Option(
        "--scale-embedding/--no-scale-embedding",
        help="Multiply embeddings by sqrt(d_model) (section 3.4; the default).")] = None,
    # training (default: the preset's)
    lr: Annotated[Optional[float], typer.Option(
        help="Scale on the paper's schedule d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).")] = None,
    warmup: Annotated[Optional[int], typer.Option(help="Warmup updates of the schedule.")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Tokens per batch and process, padding counted.")] = None,
    update_freq: Annotated[Optional[int], typer.Option(help="Batches accumulated into one update.")] = None,
    max_updates: Annotated[Optional[int], typer.Option(help="Stop after this many updates (0: no limit).")] = None,
    max_epochs: Annotated[Optional[int], typer.Option(help="Stop after this many epochs (0: no limit).")] = None,
    max_time: Annotated[Optional[float], typer.Option(
        help="Stop after this many minutes, validations included: training stops early enough for the final "
             "validation to end within it, and a validation running well past it leaves out its BLEU (0: no "
             "limit).")] = None,
    clip_norm: Annotated[Optional[float], typer.Option(help="Clip the gradient norm to this (0: off).")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option(help="Label smoothing epsilon_ls.")] = None,
    adam_beta1: Annotated[Optional[float], typer.Option(help="Adam beta1.")] = None,
    adam_beta2: Annotated[Optional[float], typer.Option(help="Adam beta2.")] = None,
    adam_eps: Annotated[Optional[float], typer.Option(help="Adam epsilon.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option(help="Adam weight decay.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (initialization, dropout, batch order).")] = None,
    log_interval: Annotated[Optional[int], typer.Option(help="Updates between metrics.jsonl lines.")] = None,
    save_interval_updates: Annotated[Optional[int], typer.Option(
        help="Validate and save checkpoint_UPDATE.pt every N updates (0: at each epoch's end).")] = None,
    keep_last: Annotated[Optional[int], typer.Option(help="Interval checkpoints to keep (0: all).")] = None,
    valid_bleu: Annotated[Optional[bool], typer.Option(
        "--valid-bleu/--no-valid-bleu", help="Report greedy BLEU on the valid split at each validation.")] = None,
    precision: Annotated[Optional[str], typer.Option(
        help="fp32, bf16 or fp16 (autocast; fp16 with dynamic loss scaling). On CPUs fp32 is usually fastest.")] = None,
    lr_schedule: Annotated[Optional[str], typer.Option(
        help="inverse_sqrt (the paper's warmup then decay) or constant (--lr at every update).")] = None,
    valid_beam: Annotated[Optional[int], typer.Option(help="Beam size of validation BLEU (1: greedy).")] = None,
    patience: Annotated[Optional[int], typer.Option(
        help="Stop after this many validations without improvement (0: never).")] = None,
    early_stop_metric: Annotated[Optional[str], typer.Option(
        help="What --patience watches: loss (valid loss) or bleu (valid BLEU).")] = None,
    max_nonfinite: Annotated[Optional[int], typer.Option(
        help="Stop after this many updates in a row with an inf/NaN loss or gradient (each is skipped).")] = None,
    compile: Annotated[Optional[bool], typer.Option(
        "--compile/--no-compile", help="torch.compile the model for training (helps most on GPUs).")] = None,
    init_from: Annotated[Optional[Path], typer.Option(
        help="Start from this checkpoint's weights (fine-tuning); optimizer and schedule start anew.")] = None,
    ema_decay: Annotated[Optional[float], typer.Option(
        help="Keep an exponential moving average of the weights with this decay (e.g. 0.999, warmed up as "
             "min(D, (1+t)/(10+t))): validation and the checkpoints' model use it (0: off).")] = None,
    tensorboard: Annotated[Optional[Path], typer.Option(
        help="Also write metrics.jsonl's scalars as TensorBoard events into this folder (needs nmt[tensorboard]).")]
    = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved model and training settings (preset, checkpoint and options "
                               "applied) as JSON and exit; nothing is read but a checkpoint named.")] = False,
) -> None:
    """Train a Transformer on a prepared DATA_DIR; checkpoints and metrics.jsonl go to --save-dir."""
    from nmt.train.defaults import run_defaults
    from nmt.train.trainer import Trainer

    _set_threads(threads)
    dry_run = os.environ.get("NMT_DRY_RUN", "") not in ("", "0")
    # A dry run checks options only: a checkpoint that does not exist yet is no error there.
    defaults = run_defaults(arch, save_dir, resume,
                            init_from if init_from is not None and (not dry_run or init_from.exists()) else None)
    chosen = defaults.preset
    model_config = replace_fields(chosen.model, dict(
        encoder_layers=encoder_layers, decoder_layers=decoder_layers, d_model=d_model, d_ff=d_ff, heads=heads,
        dropout=dropout, attention_dropout=attention_dropout, activation_dropout=activation_dropout,
        pre_norm=pre_norm, learned_positions=learned_positions, max_positions=max_positions, activation=activation,
        scale_embedding=scale_embedding))
    train_config = replace_fields(chosen.train, dict(
        lr=lr, warmup=warmup, max_tokens=max_tokens, update_freq=update_freq, max_updates=max_updates,
        max_epochs=max_epochs, max_time=max_time, clip_norm=clip_norm, label_smoothing=label_smoothing,
        adam_beta1=adam_beta1, adam_beta2=adam_beta2, adam_eps=adam_eps, weight_decay=weight_decay, seed=seed,
        log_interval=log_interval, save_interval_updates=save_interval_updates, keep_last=keep_last,
        valid_bleu=valid_bleu, precision=precision, lr_schedule=lr_schedule, valid_beam=valid_beam,
        patience=patience, early_stop_metric=early_stop_metric, max_nonfinite=max_nonfinite, compile=compile,
        init_from=str(init_from) if init_from else None, ema_decay=ema_decay,
        tensorboard=str(tensorboard) if tensorboard else None))
    model_config.validate()
    train_config.validate()
    if print_config:
        typer.echo(json.dumps({"defaults": defaults.source, "model": dataclasses.asdict(model_config),
                               "train": dataclasses.asdict(train_config)}, indent=2))
        return
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if _dry_run("train", {"architecture": defaults.source, "model": model_config, "training": train_config,
                          "tokens per update (budget)": f"{train_config.max_tokens:,} x --update-freq "
                          f"{train_config.update_freq} x {world_size} processes = "
                          f"{train_config.max_tokens * train_config.update_freq * world_size:,}"}):
        return
    from nmt.device import pick_device
    from nmt.train import distributed
    from nmt.train.host_memory import keep_freed_memory
    if pick_device(device).type == "cpu":
        keep_freed_memory()  # ~5% of a CPU step went to page faults on freshly mapped tensors
    if arch is None and (init_from is not None or resume):
        console.print(f"[cyan]train[/] architecture and defaults from {defaults.source}", highlight=False)
    try:
        trainer = Trainer(data_dir or _default_data_dir(), save_dir, model_config, train_config, resume=resume,
                          device=device, reporter=_RichTrainReporter())
        summary = trainer.run()
    finally:
        distributed.teardown()
    if trainer.ranks.is_main:
        skipped = summary["skipped_nonfinite"] + summary["skipped_oom"]
        console.print(f"[green]done[/] {summary['stop_reason']} at update {summary['update']}; "
                      f"best valid loss {summary['best_valid_loss']:.3f}; checkpoints in {summary['save_dir']}"
                      + (f"; {skipped} updates skipped (inf/NaN or out of memory)" if skipped else ""))


# --- average-checkpoints -------------------------------------------------------------------------------------------

@_command("average-checkpoints")
def average_checkpoints_command(
    inputs: Annotated[list[Path], typer.Argument(
        metavar="PATH", show_default=False,
        help="A save dir (with --last or --best) or checkpoint files to average.")],
    output: Annotated[Path, typer.Option(help="Where to write the averaged checkpoint.")],
    last: Annotated[Optional[int], typer.Option(help="Average the last N interval checkpoints of the save dir.")] = None,
    best: Annotated[Optional[int], typer.Option(
        help="Average the N interval checkpoints with the lowest validation loss (valid split only).")] = None,
) -> None:
    """Average the parameters of checkpoints (section 6.1): named files, or the last / best N of a save dir."""
    from nmt.checkpoint import average_checkpoints, save_checkpoint, select_checkpoints

    def check_counts() -> None:
        if any(count is not None and count < 1 for count in (last, best)):
            raise NmtError("--last / --best must be at least 1")

    if _dry_run("average-checkpoints", {"inputs": [str(p) for p in inputs], "output": output}, check=check_counts):
        return
    check_counts()
    check_output_file(output)  # before any checkpoint is read
    paths = select_checkpoints(inputs, last, best)
    asked = last if last is not None else best
    if asked is not None and len(paths) < asked:
        console.print(f"[yellow]warning:[/] {'--last' if last is not None else '--best'} {asked} asked, but "
                      f"{inputs[0]} holds only {len(paths)} interval checkpoint{'s' * (len(paths) != 1)}"
                      f"{' with validation results' if best is not None else ''}: averaging {len(paths)}",
                      highlight=False, soft_wrap=True)
    save_checkpoint(average_checkpoints(paths), output)
    console.print(f"[green]averaged[/] {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {output}")


# --- translate -----------------------------------------------------------------------------------------------------

def _default_checkpoint() -> Path:
    for candidate in (DEFAULT_SAVE_DIR / "averaged.pt", DEFAULT_SAVE_DIR / "checkpoint_best.pt"):
        if candidate.is_file():
            return candidate
    raise NmtError("no --checkpoint given and neither checkpoints/averaged.pt nor checkpoints/checkpoint_best.pt "
                   "exists")


def _tuned_search(path: Path | None, engine: str) -> tuple[dict, str]:
    """The search settings a checkpoint stores (or a CTranslate2 export carries, as the |Y|^alpha style), and who
    chose them: `nmt tune`, or the generation settings of an imported model. ({}, "") where there are none; a missing
    or unreadable file is left for the real load to report."""
    from nmt.checkpoint import peek_checkpoint, search_defaults

    try:
        if path is None:
            path = _default_checkpoint()
        if engine == "ctranslate2":
            payload = json.loads((Path(path) / "nmt.json").read_text(encoding="utf-8"))
            settings = search_defaults(payload, style="length") if isinstance(payload, dict) else {}
        else:
            payload = peek_checkpoint(path)
            settings = search_defaults(payload)
    except (NmtError, OSError, ValueError):
        return {}, ""
    imported = isinstance(payload.get("search"), dict) and "imported_from" in payload.get("search", {})
    return settings, "the imported model's generation settings" if imported else "the search settings `nmt tune` stored"


# Search options that `nmt translate` and `nmt serve` share.
MaxLenA = Annotated[float, typer.Option(help="Maximum output length = a * source length + b.")]
MaxLenB = Annotated[int, typer.Option(help="See --max-len-a.")]
MinLen = Annotated[int, typer.Option(help="Minimum output length (end-of-sentence counted).")]
NoRepeatNgramSize = Annotated[int, typer.Option(
    help="Never repeat an n-gram of this many pieces within an output (0: off).")]


@_command("translate")
def translate_command(
    checkpoint: Annotated[Optional[list[Path]], typer.Option(
        help="Model checkpoint; several (`--checkpoint a.pt b.pt` or repeated) decode as an ensemble. With "
             "--engine ctranslate2, the folder `nmt export ctranslate2` wrote. Default: checkpoints/averaged.pt, "
             "else checkpoints/checkpoint_best.pt.")] = None,
    more_checkpoints: Annotated[Optional[list[Path]], typer.Argument(
        metavar="CHECKPOINT", help="More ensemble members (as in `--checkpoint a.pt b.pt`).",
        show_default=False)] = None,
    ensemble_combine: Annotated[str, typer.Option(
        help="How an ensemble combines its models at each step: logprob (the mean of their log-probabilities, "
             "Marian's log-linear ensemble) or prob (the log of the mean of their probabilities, fairseq's).")]
    = "logprob",
    input: Annotated[Optional[Path], typer.Option(help="Read lines from this file instead of stdin.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Write translations here instead of stdout.")] = None,
    beam: Annotated[Optional[int], typer.Option(
        help="Beam size (1: greedy). Default: what `nmt tune` stored in the checkpoint, else 4.")] = None,
    lenpen: Annotated[Optional[float], typer.Option(
        help="Length penalty alpha. Default: what `nmt tune` stored in the checkpoint, else 0.6.")] = None,
    lenpen_style: Annotated[Optional[str], typer.Option(
        help="gnmt: ((5 + |Y|) / 6)^alpha, as in the paper; length: |Y|^alpha. Default: the tuned one, else gnmt; "
             "length with --engine ctranslate2, the only style it implements.")] = None,
    max_len_a: MaxLenA = 1.0,
    max_len_b: MaxLenB = 50,
    min_len: MinLen = 1,
    no_repeat_ngram_size: NoRepeatNgramSize = 0,
    nbest: Annotated[int, typer.Option(help="Write the N best as `INDEX ||| TRANSLATION ||| SCORE` lines.")] = 1,
    sampling: Annotated[bool, typer.Option(
        "--sampling", help="Sample --nbest outputs from the model instead of beam search.")] = False,
    topk: Annotated[int, typer.Option(help="Sampling: only from the K most likely pieces (0: all).")] = 0,
    topp: Annotated[float, typer.Option(help="Sampling: only from the nucleus of probability P (1: all).")] = 1.0,
    temperature: Annotated[float, typer.Option(help="Sampling: divide log-probabilities by this.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling: random seed (same seed, same input: same output).")] = 1,
    prefix_file: Annotated[Optional[Path], typer.Option(
        help="Forced target prefixes, a line per input line (an empty line: none).")] = None,
    constraints: Annotated[Optional[Path], typer.Option(
        help="Target phrases each output must contain, a line per input line, phrases separated by tabs (an empty "
             "line: none). Constrained beam search with dynamic beam allocation; see docs/translation.md.")] = None,
    glossary: Annotated[Optional[Path], typer.Option(
        help="A TSV of `source term<TAB>target term`: where an input line holds a source term (on word boundaries, "
             "case as given), its target term becomes a constraint of that line.")] = None,
    print_alignment: Annotated[bool, typer.Option(
        "--print-alignment", help="Append ` ||| SRC-TGT ...` hard alignments of pieces, from the attention.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per line: translation, score, tokens, alignment (and nbest).")] = False,
    attention_plot: Annotated[Optional[Path], typer.Option(
        help="Write a PNG of each sentence's encoder-decoder attention into this folder (needs matplotlib).")] = None,
    quantize: Annotated[str, typer.Option(help="int8: dynamic int8 linear layers on the CPU; none.")] = "none",
    precision: Annotated[str, typer.Option(
        help="fp32, bf16 or fp16: the matrix products' precision (autocast; log-probabilities stay fp32). Half "
             "precision is for GPUs; on most CPUs fp32 or --quantize int8 is faster.")] = "fp32",
    engine: Annotated[str, typer.Option(
        help="torch (this package's decoder) or ctranslate2 (an exported model; needs nmt[ctranslate2]).")] = "torch",
    max_tokens: Annotated[int, typer.Option(help="Source tokens per batch.")] = 6000,
    buffer_size: Annotated[Optional[int], typer.Option(
        help="Lines read before translating (sorted by length inside). Default: 1000, or 1 on a terminal.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... Default: cuda if present.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for PyTorch. Default: PyTorch's.")] = None,
    target_language: Annotated[Optional[str], typer.Option(
        help="For a multilingual model (imported OPUS-MT ones with >>xx<< tokens): the output language, e.g. deu; "
             "its token starts every source line.")] = None,
) -> None:
    """Translate lines from stdin (or --input) to stdout (or --output): one line out for each line in."""
    from nmt.translate import OutputFormat, translate_file

    _set_threads(threads)
    checkpoints = (checkpoint or []) + (more_checkpoints or [])
    tuned, chosen_by = {}, ""  # what `nmt tune` (or an import) stored, for the options not given (one model, beam)
    if not sampling and None in (beam, lenpen, lenpen_style) and len(checkpoints) <= 1:
        tuned, chosen_by = _tuned_search(checkpoints[0] if checkpoints else None, engine)
    beam = beam if beam is not None else tuned.get("beam", 4)
    lenpen = lenpen if lenpen is not None else tuned.get("lenpen", 0.6)
    lenpen_style = lenpen_style or tuned.get("lenpen_style")
    if tuned:
        console.print(f"[cyan]note:[/] decoding with {chosen_by}: beam {beam}, lenpen {lenpen} ({lenpen_style}); "
                      "options override them", highlight=False)
    search = SearchConfig(beam=beam, lenpen=lenpen, lenpen_style=lenpen_style or "gnmt", max_len_a=max_len_a,
                          max_len_b=max_len_b, min_len=min_len, nbest=nbest, no_repeat_ngram_size=no_repeat_ngram_size,
                          sampling=sampling, topk=topk, topp=topp, temperature=temperature, seed=seed)
    search.validate()
    if engine == "ctranslate2" and not sampling and search.lenpen_style != "length":
        if lenpen_style is not None:
            console.print(f"[yellow]note:[/] CTranslate2 normalizes scores by |Y|^alpha only: --lenpen-style length "
                          f"is used instead of {lenpen_style}", highlight=False, soft_wrap=True)
        search.lenpen_style = "length"
    if max_tokens < 1:
        raise NmtError("--max-tokens must be at least 1")
    if engine not in ("torch", "ctranslate2"):
        raise NmtError(f"--engine must be torch or ctranslate2, got {engine!r}")
    if ensemble_combine not in ("logprob", "prob"):
        raise NmtError(f"--ensemble-combine must be logprob or prob, got {ensemble_combine!r}")
    if _dry_run("translate", {"checkpoints": [str(c) for c in checkpoints] or "the default", "search": search}):
        return
    if output is not None:
        check_output_file(output)  # before any model loads
    if not checkpoints:
        checkpoints = [_default_checkpoint()]
    record_attention = print_alignment or as_json or attention_plot is not None
    if attention_plot is not None:
        from nmt.plot import check_plotting
        check_plotting()
    constraint_options = ", ".join(name for name, path in (("--constraints", constraints), ("--glossary", glossary))
                                   if path is not None)
    if constraint_options and sampling:
        raise NmtError(f"{constraint_options}: constrained decoding is a beam search; not with --sampling")
    if engine == "ctranslate2":
        unsupported = [name for name, used in (("--prefix-file", prefix_file), ("--attention-plot", attention_plot),
                                               ("--print-alignment", print_alignment), ("--constraints", constraints),
                                               ("--glossary", glossary)) if used]
        if unsupported:
            raise NmtError(f"{', '.join(unsupported)}: not with --engine ctranslate2"
                           + (" (CTranslate2 has no constrained search)" if constraint_options else ""))
    constraint_source = None
    if constraint_options:
        from nmt.terminology import ConstraintSource, Glossary

        constraint_source = ConstraintSource(constraints, Glossary.load(glossary) if glossary else None)
    from nmt.engines import EngineSpec, load_engine
    translator = load_engine(EngineSpec(engine, checkpoints, search, device, max_tokens, quantize, threads, precision,
                                        target_language, record_attention, ensemble_combine))
    translate_file(translator, input or _stdin(), output,
                   OutputFormat(nbest, as_json, print_alignment, attention_plot), buffer_size, prefix_file,
                   constraint_source)
    if getattr(translator, "grown_beam", 0):
        console.print(f"[cyan]note:[/] lines with more constraint pieces than --beam {beam} allows decoded with a "
                      f"beam of up to {translator.grown_beam} (constraint pieces + 1, for dynamic beam allocation)",
                      highlight=False, soft_wrap=True)
    if getattr(translator, "truncated", 0):
        console.print(f"[yellow]warning:[/] {translator.truncated} input lines were longer than "
                      f"{translator.max_source_tokens} pieces and were cut")


# --- serve ---------------------------------------------------------------------------------------------------------

@_command("serve")
def serve_command(
    checkpoint: Annotated[Optional[list[Path]], typer.Option(
        help="Model checkpoint (several: an ensemble); with --engine ctranslate2, the folder `nmt export "
             "ctranslate2` wrote. Default: checkpoints/averaged.pt, else checkpoints/checkpoint_best.pt.")] = None,
    engine: Annotated[str, typer.Option(help="torch or ctranslate2 (needs nmt[ctranslate2]).")] = "torch",
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface (set a key).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="NMT_API_KEY", show_envvar=True,
        help="Require this key on /v1, /metrics and /translate (`Authorization: Bearer KEY`, `X-API-Key`, or "
             "LibreTranslate's api_key). Prefer the environment variable: a command line is visible to other "
             "users.")] = None,
    beam: Annotated[Optional[int], typer.Option(help="Default beam size. Default: the tuned one, else 4.")] = None,
    lenpen: Annotated[Optional[float], typer.Option(help="Default length penalty. Default: the tuned one, else "
                                                         "0.6.")] = None,
    lenpen_style: Annotated[Optional[str], typer.Option(help="gnmt or length (see nmt translate).")] = None,
    max_len_a: MaxLenA = 1.0,
    max_len_b: MaxLenB = 50,
    min_len: MinLen = 1,
    no_repeat_ngram_size: NoRepeatNgramSize = 0,
    max_beam: Annotated[int, typer.Option(help="The largest beam a request may ask for.")] = 8,
    max_nbest: Annotated[int, typer.Option(help="The most alternatives (n-best) a request may ask for.")] = 8,
    max_sentences: Annotated[int, typer.Option(help="Sentences per request.")] = 64,
    max_characters: Annotated[int, typer.Option(help="Characters per sentence.")] = 5000,
    max_request_bytes: Annotated[int, typer.Option(help="Request body size, as received (413 beyond).")]
    = 1_000_000,
    batch_wait_ms: Annotated[float, typer.Option(
        help="How long the model worker waits for more sentences to join a batch.")] = 5.0,
    max_tokens: Annotated[int, typer.Option(help="Source pieces per batch.")] = 6000,
    max_queue: Annotated[int, typer.Option(help="Sentences waiting at most; beyond it a request gets 503.")] = 1024,
    workers: Annotated[Optional[int], typer.Option(
        help="Batches decoded side by side; --threads is split among them. Default: 2 on a CPU with 2 or more "
             "threads, else 1.")] = None,
    worker_processes: Annotated[bool, typer.Option(
        "--worker-processes/--worker-threads",
        help="Several workers as processes, each with its own copy of the model (faster: no shared interpreter "
             "lock), or as threads over one copy (less memory).")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds a request may wait for its answer (504 after).")] = 30.0,
    cors_origin: Annotated[Optional[list[str]], typer.Option(
        help="Origins whose pages may call the API (repeat for several; none: no cross-origin calls).")] = None,
    log_requests: Annotated[bool, typer.Option(
        "--log-requests", help="Log query strings and request text (off: method, path, status and time only).")]
    = False,
    quantize: Annotated[str, typer.Option(help="int8: dynamic int8 linear layers on the CPU; none.")] = "none",
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (see nmt translate).")] = "fp32",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... Default: cuda if present.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for PyTorch. Default: PyTorch's.")] = None,
    glossary: Annotated[Optional[Path], typer.Option(
        help="A TSV of `source term<TAB>target term` applied to every text of both APIs: where a text holds a "
             "source term, its target term is a constraint (see nmt translate --glossary).")] = None,
) -> None:
    """Serve a model over HTTP: a page to try it at /, the JSON API at /v1/translate, LibreTranslate's API at
    /translate and /languages, /health and Prometheus /metrics. Concurrent requests are decoded in shared batches.
    SIGTERM finishes the requests in flight, then exits 0. See docs/serving.md."""
    try:
        from nmt.serve.config import ServeConfig
        from nmt.serve.server import serve
    except ImportError as error:
        raise NmtError(f"nmt serve needs the serving extra: pip install 'nmt[serve]' ({error.name} is missing)") \
            from None
    _set_threads(threads)
    import torch

    from nmt.device import pick_device
    if workers is not None and workers < 1:
        raise NmtError(f"--workers must be at least 1, got {workers}")
    if workers is None:  # on a CPU two batches at half the threads each beat one at all (benchmarks/README.md)
        workers = 2 if pick_device(device).type == "cpu" and torch.get_num_threads() >= 2 else 1
    if workers > 1:  # each worker's operations run on its share of the threads, not all of them at once
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
    checkpoints = checkpoint or []
    tuned, chosen_by = ({}, "") if len(checkpoints) > 1 else _tuned_search(checkpoints[0] if checkpoints else None,
                                                                           engine)
    search = SearchConfig(beam=beam if beam is not None else tuned.get("beam", 4),
                          lenpen=lenpen if lenpen is not None else tuned.get("lenpen", 0.6),
                          lenpen_style=lenpen_style or tuned.get("lenpen_style") or
                          ("length" if engine == "ctranslate2" else "gnmt"),
                          max_len_a=max_len_a, max_len_b=max_len_b, min_len=min_len,
                          no_repeat_ngram_size=no_repeat_ngram_size)
    search.validate()
    config = ServeConfig(host=host, port=port, api_key=api_key, max_beam=max_beam, max_nbest=max_nbest,
                         max_sentences=max_sentences, max_characters=max_characters,
                         max_request_bytes=max_request_bytes, batch_wait_ms=batch_wait_ms, max_tokens=max_tokens,
                         max_queue=max_queue, workers=workers, worker_processes=worker_processes,
                         timeout_s=timeout, cors_origins=cors_origin or [],
                         log_requests=log_requests, glossary=glossary)
    config.validate()
    if glossary is not None:
        if engine != "torch":
            raise NmtError("--glossary: not with --engine ctranslate2 (CTranslate2 has no constrained search)")
        from nmt.terminology import Glossary
        Glossary.load(glossary)  # a bad file ends here, in one line, before the model loads
    if search.beam > max_beam:
        raise NmtError(f"the default beam {search.beam} is above --max-beam {max_beam}")
    if _dry_run("serve", {"checkpoints": [str(c) for c in checkpoints] or "the default", "search": search,
                          "host": host, "port": port}):
        return
    if tuned:
        console.print(f"[cyan]note:[/] serving with {chosen_by}: beam {search.beam}, lenpen {search.lenpen} "
                      f"({search.lenpen_style}) unless a request says otherwise", highlight=False)
    from nmt.engines import EngineSpec
    serve(EngineSpec(engine, checkpoints or [_default_checkpoint()], search, device, max_tokens, quantize, threads,
                     precision), config)


# --- tune ----------------------------------------------------------------------------------------------------------

@_command("tune")
def tune_command(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint to tune (e.g. checkpoints/averaged.pt); the chosen "
                                                    "settings are stored in it.")],
    data_dir: Annotated[Path, typer.Argument(help="The prepared DATA_DIR whose valid split decides.")],
    lenpen: Annotated[str, typer.Option(help="Comma-separated length penalties alpha to try, for each style.")]
    = "0.2,0.6,1.0,1.4,2.0",
    beam: Annotated[str, typer.Option(help="Comma-separated beam sizes to try.")] = "4",
    max_tokens: Annotated[int, typer.Option(help="Source tokens per batch.")] = 6000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trials and the choice as one JSON object.")]
    = False,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... Default: cuda if present.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for PyTorch. Default: PyTorch's.")] = None,
) -> None:
    """Choose the search settings on the valid split (never the test split): decode it with each length penalty (both
    styles; each beam size given) and store the best by sacreBLEU in the checkpoint, which `nmt translate` then uses
    unless an option overrides it. The best alpha of the |Y|^alpha style is stored too, for exports (CTranslate2)."""
    from nmt.tune import best_settings, store_settings, tune

    _set_threads(threads)
    alphas = _number_list(lenpen, float, "--lenpen")
    beams = _number_list(beam, int, "--beam")
    if any(b < 1 for b in beams):
        raise NmtError("--beam sizes must be at least 1")
    if any(a != a or a in (float("inf"), float("-inf")) for a in alphas):
        raise NmtError("--lenpen values must be finite numbers")
    if _dry_run("tune", {"checkpoint": checkpoint, "data_dir": data_dir, "lenpen": alphas, "beam": beams}):
        return
    if not checkpoint.is_file():
        from nmt.checkpoint import describe_missing_checkpoint
        raise NmtError(describe_missing_checkpoint(checkpoint))
    table = Table("beam", "style", "lenpen", "valid BLEU", "BP", title=f"search settings on {data_dir}'s valid split")
    with Progress(TextColumn("tune"), BarColumn(), TextColumn("{task.completed}/{task.total}"), console=console,
                  transient=True) as progress:
        task = progress.add_task("tune", total=len(alphas) * len(beams) * 2)
        results = tune(checkpoint, data_dir, alphas, beams, max_tokens, device,
                       progress=lambda result: progress.advance(task))
    settings = best_settings(results)
    store_settings(checkpoint, settings)
    if as_json:
        typer.echo(json.dumps({"trials": [vars(r) for r in results], "chosen": settings}))
        return
    for r in results:
        table.add_row(str(r.beam), r.lenpen_style, f"{r.lenpen:g}", f"{r.bleu:.2f}", f"{r.brevity_penalty:.3f}")
    Console().print(table)
    typer.echo(f"stored in {checkpoint}: beam {settings['beam']}, lenpen {settings['lenpen']:g} (gnmt), valid BLEU "
               f"{settings['valid_bleu']:.2f}; for exports (|Y|^alpha): lenpen "
               f"{settings['length_style']['lenpen']:g}")


def _number_list(text: str, kind, option: str) -> list:
    try:
        values = [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise NmtError(f"{option}: a comma-separated list of numbers, got {text!r}") from None
    if not values:
        raise NmtError(f"{option}: give at least one value")
    return values


# --- logprob -------------------------------------------------------------------------------------------------------

@_command("logprob")
def logprob_command(
    checkpoint: Annotated[Optional[Path], typer.Option(
        help="Model checkpoint. Default: checkpoints/averaged.pt, else checkpoints/checkpoint_best.pt.")] = None,
    source: Annotated[Optional[Path], typer.Option(help="Source lines (with --target).")] = None,
    target: Annotated[Optional[Path], typer.Option(
        help="Target lines to score, line-aligned with --source. Without both: `source<TAB>target` lines on "
             "stdin.")] = None,
    output: Annotated[Optional[Path], typer.Option(help="Write the scores here instead of stdout.")] = None,
    word_scores: Annotated[bool, typer.Option(
        "--word-scores", help="Also each target piece's log-probability, end-of-sentence last.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per pair: logprob, per_token, pieces (and word_scores).")] = False,
    max_tokens: Annotated[int, typer.Option(help="Tokens per batch (the longer side, padding counted).")] = 6000,
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (autocast; log-probabilities in fp32).")]
    = "fp32",
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, ... Default: cuda if present.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for PyTorch. Default: PyTorch's.")] = None,
) -> None:
    """Score given translations: the model's log-probability of each target given its source (teacher-forced, as
    fairseq's --score-reference and marian-scorer), for reranking n-best lists, filtering noisy corpora or a model's
    perplexity on references. A line per pair: `LOGPROB<TAB>PER_TOKEN` (the sum over the target's pieces and its
    end-of-sentence, and that sum divided by their number), then the piece scores with --word-scores."""
    from nmt.forced import ForcedScorer, read_file_pairs, read_tsv_pairs

    _set_threads(threads)
    if (source is None) != (target is None):
        raise NmtError("give both --source and --target, or neither (then `source<TAB>target` lines on stdin)")
    if max_tokens < 1:
        raise NmtError("--max-tokens must be at least 1")
    if precision not in ("fp32", "bf16", "fp16"):
        raise NmtError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    if _dry_run("logprob", {"checkpoint": checkpoint or "the default", "pairs": f"{source} / {target}" if source
                            else "stdin (TSV)"}):
        return
    if output is not None:
        check_output_file(output)
    pairs = read_file_pairs(source, target) if source is not None else None  # line counts checked here, first
    scorer = ForcedScorer(checkpoint or _default_checkpoint(), device, max_tokens, precision=precision)
    with contextlib.ExitStack() as files:
        sink = files.enter_context(atomic_write(output, newline="\n")) if output else sys.stdout
        for result in scorer.score_stream(pairs if pairs is not None else read_tsv_pairs(_stdin())):
            if as_json:
                record = {"logprob": round(result.logprob, 6), "per_token": round(result.per_token, 6),
                          "pieces": result.pieces}
                if word_scores:
                    record["word_scores"] = [round(value, 6) for value in result.piece_logprobs]
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                sink.write(f"{result.logprob:.6f}\t{result.per_token:.6f}" + (
                    "\t" + " ".join(f"{value:.6f}" for value in result.piece_logprobs) if word_scores else "") + "\n")
    if scorer.truncated:
        console.print(f"[yellow]warning:[/] {scorer.truncated} sources were longer than {scorer.max_source_tokens} "
                      "pieces and were cut")


# --- export --------------------------------------------------------------------------------------------------------

export_app = typer.Typer(help="Write a trained model in another toolkit's format.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@_command("ctranslate2", export_app, "export ctranslate2")
def export_ctranslate2_command(
    checkpoint: Annotated[Path, typer.Argument(help="An nmt checkpoint (e.g. checkpoints/averaged.pt).")],
    out_dir: Annotated[Path, typer.Argument(help="The CTranslate2 model folder to write.")],
    quantization: Annotated[Optional[str], typer.Option(
        help="Store weights as int8, int8_float32, float16, ... (default: float32; translate can still quantize "
             "at load time).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT_DIR if it exists.")] = False,
) -> None:
    """A CTranslate2 model (its own spec API) with the SentencePiece model beside it, for `--engine ctranslate2`."""
    from nmt.export.ctranslate2 import export_ctranslate2

    if _dry_run("export ctranslate2", {"checkpoint": checkpoint, "out_dir": out_dir}):
        return
    export_ctranslate2(checkpoint, out_dir, quantization=quantization, force=force)
    console.print(f"wrote {out_dir} (CTranslate2); try: nmt translate --engine ctranslate2 --checkpoint {out_dir}")


@_command("huggingface", export_app, "export huggingface")
def export_huggingface_command(
    checkpoint: Annotated[Path, typer.Argument(help="An nmt checkpoint (e.g. checkpoints/averaged.pt).")],
    out_dir: Annotated[Path, typer.Argument(help="The Hugging Face model folder to write.")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUT_DIR if an earlier export is there.")] = False,
) -> None:
    """A MarianMT folder for Hugging Face transformers (config, safetensors weights, MarianTokenizer files,
    generation settings, a model card), loaded offline with AutoModelForSeq2SeqLM / AutoTokenizer / pipeline."""
    from nmt.export.huggingface import export_huggingface

    if _dry_run("export huggingface", {"checkpoint": checkpoint, "out_dir": out_dir}):
        return
    export_huggingface(checkpoint, out_dir, force=force)
    console.print(f"wrote {out_dir} (MarianMT for transformers); try: python -c \"from transformers import pipeline; "
                  f"print(pipeline('translation', model='{out_dir}')('...'))\"", highlight=False, soft_wrap=True)


# --- import --------------------------------------------------------------------------------------------------------

import_app = typer.Typer(help="Read a pretrained model of another toolkit into an nmt checkpoint.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


@_command("huggingface", import_app, "import huggingface")
def import_huggingface_command(
    folder: Annotated[Path, typer.Argument(help="A MarianMT folder (e.g. an OPUS-MT model from `hf download`).")],
    output: Annotated[Path, typer.Option(help="The nmt checkpoint to write.")],
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """An nmt checkpoint of a MarianMT model (weights, both SentencePiece models, its vocabulary and special ids,
    its beam and length penalty as search defaults): translate, score, export and fine-tune it as any other."""
    from nmt.pretrained.huggingface import import_huggingface

    if _dry_run("import huggingface", {"folder": folder, "output": output}):
        return
    payload = import_huggingface(folder, output, force=force)
    from nmt.checkpoint import vocab_from_payload

    config = payload["model_config"]
    multilingual = vocab_from_payload(payload, output).language_tokens
    console.print(f"wrote {output}: MarianMT, {config['encoder_layers']}+{config['decoder_layers']} layers, d_model "
                  f"{config['d_model']}, {config['activation']}"
                  + (f", multilingual ({len(multilingual)} target languages: --target-language)" if multilingual
                     else "")
                  + f"; try: echo 'text' | nmt translate --checkpoint {output}", highlight=False, soft_wrap=True)


# --- score ---------------------------------------------------------------------------------------------------------

@_command("score")
def score_command(
    ref: Annotated[list[Path], typer.Option(help="Reference file (repeat for several references).")],
    hyp: Annotated[Optional[list[Path]], typer.Option(
        help="Hypotheses file (repeat to score several systems; the first is --paired-bs's baseline). "
             "Default: stdin.")] = None,
    metrics: Annotated[str, typer.Option(help="Comma-separated: bleu, chrf, ter.")] = "bleu,chrf,ter",
    paper: Annotated[bool, typer.Option(
        "--paper", help="Also the paper's tokenized BLEU: Moses tokenizer (sacremoses, escaping), ##AT##-##AT## "
                        "compound splitting, as tensor2tensor's get_ende_bleu.sh. Not comparable across "
                        "tokenizations; see docs/scoring.md.")] = False,
    lang: Annotated[Optional[str], typer.Option(
        help="Target language of --paper's Moses tokenizer. Default: the reference file's extension when it is a "
             "two-letter code (newstest2014.de), else en.")] = None,
    paired_bs: Annotated[bool, typer.Option(
        "--paired-bs", help="Paired bootstrap resampling (sacreBLEU's) of every --hyp against the first.")] = False,
    paired_bs_n: Annotated[int, typer.Option(help="Bootstrap resamples of --paired-bs.")] = 1000,
    terms: Annotated[Optional[Path], typer.Option(
        help="A glossary (TSV of `source term<TAB>target term`): also print term accuracy, the share of source-term "
             "occurrences whose target term the hypothesis holds (and the reference, for comparison). Needs "
             "--source.")] = None,
    source: Annotated[Optional[Path], typer.Option(help="The source side, for --terms.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with scores and signatures.")] = False,
) -> None:
    """Score translations against references with sacreBLEU (detokenized BLEU, chrF, TER) and their signatures."""
    from nmt.data.text import read_lines, read_text_lines
    from nmt.score import PAPER_LABEL, make_metric, paired_bootstrap, paper_bleu, score
    from nmt.terminology import Glossary, term_accuracy

    names = [name.strip().lower() for name in metrics.split(",") if name.strip()]
    if paired_bs_n < 1:
        raise NmtError(f"--paired-bs-n must be at least 1, got {paired_bs_n}")
    if not names:
        raise NmtError("--metrics: name at least one of bleu, chrf, ter")
    for name in names:
        make_metric(name)
    if (terms is None) != (source is None):
        raise NmtError("--terms and --source go together: term accuracy looks the glossary's source terms up in the "
                       "source")
    if _dry_run("score", {"references": [str(r) for r in ref], "paper": paper, "paired_bs": paired_bs}):
        return
    glossary = Glossary.load(terms) if terms is not None else None
    references = [list(read_lines(path)) for path in ref]
    systems = ([(str(path), list(read_lines(path))) for path in hyp] if hyp
               else [("stdin", list(read_text_lines(_stdin())))])
    sources = list(read_lines(source)) if source is not None else None
    if sources is not None and len(sources) != len(references[0]):
        raise NmtError(f"--source has {len(sources)} lines but the reference has {len(references[0])}")
    reference_terms = term_accuracy(glossary, sources, references[0]) if glossary else None
    if paper:
        lang = lang or _language_of(ref[0])
    report: dict[str, dict] = {}
    for system, hypotheses in systems:
        results = score(hypotheses, references, names)
        if paper:
            results.append(paper_bleu(hypotheses, references, lang))
        report[system] = {r.metric: {"score": r.score, "signature": r.signature} for r in results}
        if glossary is not None:
            found = term_accuracy(glossary, sources, hypotheses)
            report[system]["term_accuracy"] = {
                "score": round(found.score, 2), "found": found.found, "total": found.total,
                "reference": round(reference_terms.score, 2), "reference_found": reference_terms.found}
        if as_json:
            continue
        if len(systems) > 1:
            typer.echo(f"{system}:")
        for result in results:
            label = f"{PAPER_LABEL}: " if result.metric == "paper_bleu" else ""
            if result.metric == "bleu" and paper:
                label = "detokenized sacreBLEU: "
            typer.echo(f"{label}{result.text}")
            typer.echo(f"  signature: {result.signature}")
        if glossary is not None:
            typer.echo(f"term accuracy = {found.score:.2f} ({found.found} of {found.total} source-term occurrences "
                       f"have their target term; the reference: {reference_terms.score:.2f}, "
                       f"{reference_terms.found} of {reference_terms.total})")
    comparisons = []
    if paired_bs:
        comparisons, signatures = paired_bootstrap(systems, references, names, paired_bs_n)
        if not as_json:
            typer.echo(f"paired bootstrap resampling ({paired_bs_n} resamples), against {systems[0][0]}:")
            for c in comparisons:
                verdict = "baseline" if c.p_value is None else f"p = {c.p_value:.4f}" + (
                    " (significant at 0.05)" if c.p_value < 0.05 else "")
                typer.echo(f"  {c.metric:6} {c.system}: {c.score:.2f} (mean {c.mean:.2f} +- {c.ci:.2f}) {verdict}")
            for metric, signature in signatures.items():
                typer.echo(f"  {metric} signature: {signature}")
    if as_json:
        output: dict = report[systems[0][0]] if len(systems) == 1 else {"systems": report}
        if paired_bs:
            output["paired_bs"] = [vars(c) for c in comparisons]
        typer.echo(json.dumps(output))


@_command("report")
def report_command(
    save_dir: Annotated[Path, typer.Argument(help="A save dir of nmt train (metrics.jsonl, config.json).")],
    out: Annotated[Optional[Path], typer.Option(help="Where report.md and its PNGs go. Default: SAVE_DIR/report.")]
    = None,
) -> None:
    """A Markdown page about a training run: loss, learning rate, tokens/s and validation BLEU plotted over updates,
    the config, the data manifest and the final score (SAVE_DIR/score.json from `nmt score --json`)."""
    from nmt.report import write_report

    if _dry_run("report", {"save_dir": save_dir}):
        return
    path = write_report(save_dir, out)
    console.print(f"wrote {path} and its plots")


def _language_of(reference: Path) -> str:
    """The reference file's extension as a Moses language code (newstest2014.de -> de), else English."""
    suffix = reference.suffix[1:] if reference.suffix != ".gz" else Path(reference.stem).suffix[1:]
    return suffix.lower() if len(suffix) == 2 and suffix.isalpha() else "en"
