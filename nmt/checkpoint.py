"""The one place that knows checkpoint keys: save (atomic), load (safe: no pickled code runs), average.

A checkpoint is a dict of tensors and plain values:
  format, version            "nmt-checkpoint", 1
  model_config, train_config the resolved dataclasses, as dicts
  model                      the model's state dict
  vocab                      the SentencePiece model's bytes (uint8 tensor): a checkpoint translates on its own
  target_vocab, vocab_pieces the target's own SentencePiece model and the table of the model's pieces, where the
                             vocabulary has them (imported models; see nmt.vocab)
  src, tgt                   language codes
  update, epoch              progress
  valid                      validation metrics at this update (interval checkpoints)
  training                   optimizer, RNG and batcher state (training checkpoints only; averaged ones drop it)
  search                     the search settings `nmt tune` chose on the valid split (when it was run)
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from nmt.atomic import atomic_write, link_or_copy
from nmt.config import ConfigError, ModelConfig, from_dict
from nmt.data.text import check_input_file
from nmt.errors import NmtError
from nmt.model.transformer import Transformer, build_model
from nmt.metrics_log import read_metrics
from nmt.vocab import Vocab, fingerprint

FORMAT = "nmt-checkpoint"
VERSION = 1
INTERVAL_CHECKPOINT = re.compile(r"^checkpoint_(\d+)\.pt$")


def save_checkpoint(payload: dict, path: Path) -> None:
    """Write through a temporary file, fsync, then rename: `path` is always whole or absent."""
    path = Path(path)
    with atomic_write(path, "wb", durable=True) as handle:
        writer = _RecordingWriter(handle)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            # torch's zip writer reports a failed write as "unexpected pos ..."; the OSError it swallowed says
            # what happened (disk full, file too large, I/O error).
            writer.error.filename = str(path)
            raise writer.error from None


class _RecordingWriter:
    """A file for torch.save that keeps the OSError of a failed write."""

    def __init__(self, handle):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.handle.flush()


def link_checkpoint(source: Path, dest: Path) -> None:
    """`dest` becomes the same file as `source` (hard link, atomic; a copy where links are not supported)."""
    link_or_copy(source, dest)


def load_checkpoint(path: Path) -> dict:
    """Load without executing pickled code (weights_only=True); refuse foreign, truncated or unsafe files."""
    payload = _read_payload(path)
    for name, tensor in payload["model"].items():
        # NaN weights translate to nothing and would poison an average; refused here, where every user loads.
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NmtError(f"{path}: weight {name} holds NaN or infinite values; use an earlier checkpoint")
    return payload


def read_configs(path: Path) -> tuple[dict, dict | None]:
    """A checkpoint's (model_config, train_config) dicts, read without loading its weights (memory-mapped)."""
    payload = peek_checkpoint(path)
    train = payload.get("train_config")
    return payload["model_config"], train if isinstance(train, dict) else None


def peek_checkpoint(path: Path) -> dict:
    """A checkpoint's payload, its tensors memory-mapped rather than read: for its small entries (configs, the search
    settings `nmt tune` stored)."""
    return _read_payload(path, mmap=True)


def _read_payload(path: Path, mmap: bool = False) -> dict:
    """torch.load with weights_only=True, and the checks of the payload's structure."""
    path = Path(path)
    if not path.is_file():
        raise NmtError(describe_missing_checkpoint(path))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        # PyTorch's message is several paragraphs; the line naming what was refused is the useful one.
        text = str(error)
        found = re.search(r"(Unsupported global: GLOBAL \S+|unsupported GLOBAL \S+|Unsupported operand[^\n.]*)", text)
        first = found.group(1) if found else (text.strip().splitlines() or ["unsupported content"])[0].split(". ")[0]
        raise NmtError(f"{path}: refused to load: it holds objects other than tensors and plain values "
                       f"(a file that could run code, or not an nmt checkpoint): {first}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise NmtError(f"{path}: not a readable checkpoint (truncated or corrupt?): "
                       f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NmtError(f"{path}: not an nmt checkpoint")
    if payload.get("version") != VERSION:
        raise NmtError(f"{path}: checkpoint version {payload.get('version')}, this nmt reads version {VERSION}")
    for key in ("model_config", "model", "vocab"):
        if key not in payload:
            raise NmtError(f"{path}: checkpoint lacks {key!r} (damaged?)")
    if not isinstance(payload["model_config"], dict):
        raise NmtError(f"{path}: its model_config is a {type(payload['model_config']).__name__}, not a table of "
                       "options (damaged?)")
    weights = payload["model"]
    if not isinstance(weights, dict) or not all(isinstance(name, str) and isinstance(tensor, torch.Tensor)
                                                for name, tensor in weights.items()):
        raise NmtError(f"{path}: its model is not a table of named tensors (damaged?)")
    vocab = payload["vocab"]
    for key in ("vocab", "target_vocab"):
        vocab = payload.get(key, payload["vocab"])
        if not isinstance(vocab, torch.Tensor) or vocab.dtype != torch.uint8 or vocab.dim() != 1:
            raise NmtError(f"{path}: its {key} is not a SentencePiece model's bytes (damaged?)")
    if not isinstance(payload.get("vocab_pieces", {}), dict):
        raise NmtError(f"{path}: its vocab_pieces is not a table of pieces (damaged?)")
    return payload


def describe_missing_checkpoint(path: Path, takes_engine: bool = True) -> str:
    """Why `path` is not a checkpoint file, and what to give instead: a folder names the files it holds.
    TAKES_ENGINE: the command has --engine (translate, serve), so a CTranslate2 folder is one option away."""
    path = Path(path)
    if not path.exists():
        return f"{path}: checkpoint not found"
    if not path.is_dir():
        return f"{path}: not a regular file, so not a checkpoint"
    if (path / "model.bin").is_file():
        return (f"{path} is a CTranslate2 model folder: add --engine ctranslate2 to decode with it" if takes_engine
                else f"{path} is a CTranslate2 model folder; this command reads nmt checkpoints (.pt): give the "
                     "checkpoint it was exported from")
    held = [name for name in ("averaged.pt", "checkpoint_best.pt", "checkpoint_last.pt") if (path / name).is_file()]
    held += [p.name for _, p in reversed(interval_checkpoints(path))][: max(0, 3 - len(held))]
    if held:
        return (f"{path} is a folder, not a checkpoint file: name one of the checkpoints it holds, e.g. "
                f"{path / held[0]} ({', '.join(held)})")
    return f"{path} is a folder holding no checkpoint (*.pt): name a checkpoint file"


def load_vocabulary(path: Path) -> Vocab:
    """The vocabulary `nmt prepare --vocab` names: a SentencePiece model file, or the vocabulary an nmt checkpoint
    carries (an imported model's: both its SentencePiece models and its table of pieces)."""
    check_input_file(path, "--vocab")
    if zipfile.is_zipfile(path):  # torch.save's format: a checkpoint
        return vocab_from_payload(load_checkpoint(path), path)
    try:
        return Vocab.from_bytes(path.read_bytes())
    except NmtError as error:
        raise NmtError(f"--vocab {path}: neither a SentencePiece model nor an nmt checkpoint ({error})") from None


def make_payload(model: Transformer, vocab: Vocab, train_config, src: str, tgt: str, update: int, epoch: int,
                 **extra) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_config": asdict(model.config),
        "train_config": asdict(train_config) if train_config is not None else None,
        "model": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        **vocab.payload_entries(),
        "src": src,
        "tgt": tgt,
        "update": update,
        "epoch": epoch,
        **extra,
    }


def vocab_from_payload(payload: dict, path: Path | str = "checkpoint") -> Vocab:
    """The vocabulary a checkpoint carries (its SentencePiece model bytes, and any table of pieces); `path` names
    the checkpoint in the error when it cannot be read."""
    try:
        return Vocab.from_payload(payload)
    except NmtError as error:
        raise NmtError(f"{path}: {error}") from None


def vocab_fingerprint(payload: dict) -> str:
    """The identity of a checkpoint's vocabulary (Vocab.fingerprint), read without loading it."""
    return fingerprint(*Vocab.payload_parts(payload))


def config_from_payload(payload: dict, path: Path | str = "checkpoint") -> ModelConfig:
    """The checkpoint's ModelConfig, checked as the command line checks options (a damaged file says so)."""
    try:
        config = from_dict(ModelConfig, payload["model_config"])
        config.validate()
        if config.vocab_size < 4:
            raise ConfigError(f"vocab_size must be at least 4, got {config.vocab_size}")
    except ConfigError as error:
        raise NmtError(f"{path}: its model_config is not usable (damaged?): {str(error).lstrip('-')}") from None
    return config


def model_from_payload(payload: dict, path: Path | str = "checkpoint") -> Transformer:
    config = config_from_payload(payload, path)
    model = build_model(config)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise NmtError(f"{path}: weights do not fit the architecture it names: "
                       f"{str(error).splitlines()[0]}") from None
    return model


def load_model(path: Path, device: str | torch.device = "cpu") -> tuple[Transformer, Vocab, dict]:
    """A checkpoint's model (in eval mode, on `device`), its vocabulary and the payload itself."""
    payload = load_checkpoint(path)
    model = model_from_payload(payload, path).to(device).eval()
    vocab = vocab_from_payload(payload, path)
    check_vocab_fits(vocab, model.config, path)
    return model, vocab, payload


def check_vocab_fits(vocab: Vocab, config: ModelConfig, path: Path | str) -> None:
    target_size = config.target_vocab_size or config.vocab_size
    if (len(vocab), vocab.target_size) != (config.vocab_size, target_size):
        sizes = f"{len(vocab)}" if vocab.shared else f"{len(vocab)} source and {vocab.target_size} target"
        model = f"{config.vocab_size}" if not config.target_vocab_size else f"{config.vocab_size} and {target_size}"
        raise NmtError(f"{path}: a vocabulary of {sizes} pieces but a model for {model}")
    if (vocab.pad_id, vocab.bos_id, vocab.eos_id) != (config.pad_id, config.bos_id, config.eos_id):
        raise NmtError(f"{path}: the vocabulary's special ids (pad, bos, eos) = {(vocab.pad_id, vocab.bos_id, vocab.eos_id)}"
                       f" are not the model's {(config.pad_id, config.bos_id, config.eos_id)}")


def average_checkpoints(paths: list[Path]) -> dict:
    """The parameter-wise mean of checkpoints of one architecture and vocabulary (section 6.1), as a model-only
    checkpoint (no optimizer state). Accumulates in fp64 so that the order of the files does not matter."""
    if not paths:
        raise NmtError("no checkpoints to average")
    first = load_checkpoint(paths[0])
    sums = {name: tensor.double() for name, tensor in first["model"].items()}
    for path in paths[1:]:
        payload = load_checkpoint(path)
        # The vocabulary first: another vocabulary also shows as another vocab_size in the architecture.
        if vocab_fingerprint(payload) != vocab_fingerprint(first) or (
                payload["model_config"].get("vocab_size") != first["model_config"].get("vocab_size")):
            raise NmtError(f"{path}: a different vocabulary from {paths[0]}; only one model's checkpoints average")
        if payload["model_config"] != first["model_config"]:
            changed = sorted(key for key in set(payload["model_config"]) | set(first["model_config"])
                             if payload["model_config"].get(key) != first["model_config"].get(key))
            raise NmtError(f"{path}: a different architecture from {paths[0]} ({', '.join(changed)} differ); only "
                           "one model's checkpoints average")
        if set(payload["model"]) != set(sums):
            raise NmtError(f"{path}: its weights are not those of {paths[0]}'s model")
        for name, tensor in payload["model"].items():
            sums[name] += tensor.double()
    averaged = {name: (total / len(paths)).to(first["model"][name].dtype) for name, total in sums.items()}
    result = {key: value for key, value in first.items() if key not in ("training", "valid", "model")}
    result["model"] = averaged
    result["averaged_from"] = [str(path) for path in paths]
    return result


# The files of a run that `--resume` and the run's own bookkeeping read: never replaced by anything but the run.
RUN_FILES = ("checkpoint_last.pt", "checkpoint_best.pt")


def check_average_output(output: Path, inputs: list[Path], force: bool) -> None:
    """Where an average may be written: not over one of the checkpoints it averages nor over a run's own checkpoint
    (`checkpoint_last.pt`, `checkpoint_best.pt`, `checkpoint_UPDATE.pt`), even with `force`; over any other existing
    file only with `force`."""
    output = Path(output)
    if output.name in RUN_FILES or INTERVAL_CHECKPOINT.match(output.name):
        raise NmtError(f"--output {output}: that name is a training run's own checkpoint (what --resume and "
                       "--last/--best read); write the average elsewhere, e.g. averaged.pt")
    if not output.exists():
        return
    for path in inputs:
        if Path(path).exists() and output.samefile(path):
            raise NmtError(f"--output {output} is one of the checkpoints being averaged; write the average elsewhere")
    if not force:
        raise NmtError(f"--output {output} exists; add --force to replace it")


def interval_checkpoints(save_dir: Path) -> list[tuple[int, Path]]:
    """(update, path) of the checkpoint_UPDATE.pt files in a save dir, oldest first."""
    found = []
    for path in Path(save_dir).glob("checkpoint_*.pt"):
        match = INTERVAL_CHECKPOINT.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def select_checkpoints(inputs: list[Path], last: int | None = None, best: int | None = None) -> list[Path]:
    """Checkpoint files named directly, or from one save dir its `last` N, or its `best` N by validation loss
    (read from the save dir's metrics.jsonl: the valid split alone decides, never the test set)."""
    if len(inputs) == 1 and Path(inputs[0]).is_dir():
        save_dir = Path(inputs[0])
        if (last is None) == (best is None):
            raise NmtError("with a save dir, give exactly one of --last N or --best N")
        count = last if last is not None else best
        if count < 1:
            raise NmtError("--last / --best must be at least 1")
        available = interval_checkpoints(save_dir)
        if not available:
            raise NmtError(f"{save_dir}: no checkpoint_UPDATE.pt files")
        if last is not None:
            return [path for _, path in available[-count:]]
        valid_loss = _valid_losses(save_dir / "metrics.jsonl")
        scored = [(valid_loss[update], update, path) for update, path in available if update in valid_loss]
        if not scored:
            raise NmtError(f"{save_dir}: no validation results for its checkpoints in metrics.jsonl")
        return [path for _, _, path in sorted(scored)[:count]]
    if last is not None or best is not None:
        raise NmtError("--last and --best take a save dir, not checkpoint files")
    seen: dict[tuple[int, int], Path] = {}
    for path in inputs:
        if not Path(path).is_file():
            raise NmtError(describe_missing_checkpoint(path))
        # checkpoint_best.pt and _last.pt are links to an interval checkpoint: one file named twice would count
        # double in the mean.
        status = Path(path).stat()
        twin = seen.setdefault((status.st_dev, status.st_ino), Path(path))
        if twin != Path(path):
            raise NmtError(f"{path} and {twin} are the same file (one links to the other): name each checkpoint "
                           "once, or it counts twice in the average")
    return [Path(path) for path in inputs]


def prune_checkpoints(save_dir: Path, keep: int) -> None:
    """Delete interval checkpoints except the newest `keep` and the `keep` best by validation loss: once a run
    overfits, its best checkpoints are old ones, and `average-checkpoints --best N` must still find them."""
    available = interval_checkpoints(save_dir)
    metrics = Path(save_dir) / "metrics.jsonl"
    valid_loss = _valid_losses(metrics) if metrics.is_file() else {}
    best = sorted((valid_loss[update], update) for update, _ in available if update in valid_loss)[:keep]
    kept = {update for update, _ in available[-keep:]} | {update for _, update in best}
    for update, path in available:
        if update not in kept:
            path.unlink(missing_ok=True)


def _valid_losses(metrics_path: Path) -> dict[int, float]:
    if not metrics_path.is_file():
        raise NmtError(f"{metrics_path}: not found; --best reads validation losses from it")
    return read_metrics(metrics_path).valid_losses()


def search_defaults(payload: dict, style: str | None = None) -> dict:
    """The search defaults a checkpoint (or an export's nmt.json) carries: beam, lenpen and lenpen_style; with
    style="length", those of the |Y|^alpha style. {} where nothing was tuned or the entry is not usable."""
    search = payload.get("search")
    if not isinstance(search, dict):
        return {}
    if style == "length":
        length = search.get("length_style")
        if not isinstance(length, dict):
            return {}
        search = {**length, "lenpen_style": "length"}
    chosen = {key: search.get(key) for key in ("beam", "lenpen", "lenpen_style")}
    usable = (isinstance(chosen["beam"], int) and not isinstance(chosen["beam"], bool) and chosen["beam"] >= 1
              and isinstance(chosen["lenpen"], (int, float)) and chosen["lenpen_style"] in ("gnmt", "length"))
    return chosen if usable else {}
