"""Plain dataclass configs and the named presets.

A preset is a function that returns a `Preset` (model + training defaults). The resolved configs are stored in every
checkpoint as plain dicts, so a model can be rebuilt without the command line that trained it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from nmt.errors import NmtError


class ConfigError(NmtError, ValueError):
    """An option value that cannot be used; the message names the flag."""


DATA_ROOT = Path("data")  # where `nmt prepare` puts a recipe's DATA_DIR by default, and `nmt train` looks
DEFAULT_SAVE_DIR = Path("checkpoints")  # `nmt train --save-dir`'s default, where translate and serve look
ACTIVATIONS = ("relu", "gelu", "swish")


def default_checkpoint() -> Path:
    """The checkpoint a command uses when none is named: checkpoints/averaged.pt, else checkpoints/checkpoint_best.pt
    (both written by the README's job)."""
    for candidate in (DEFAULT_SAVE_DIR / "averaged.pt", DEFAULT_SAVE_DIR / "checkpoint_best.pt"):
        if candidate.is_file():
            return candidate
    raise NmtError("no --checkpoint given and neither checkpoints/averaged.pt nor checkpoints/checkpoint_best.pt "
                   "exists")


@dataclass
class ModelConfig:
    """The Transformer's shape. Names follow the paper (d_model, d_ff, h, P_drop)."""

    vocab_size: int = 0  # filled from the data's vocabulary: the joint one, or the source's where the target has its own
    encoder_layers: int = 6  # N
    decoder_layers: int = 6  # N
    d_model: int = 512
    d_ff: int = 2048
    heads: int = 8  # h; d_k = d_v = d_model / h
    dropout: float = 0.1  # P_drop: embeddings + positions, and every sublayer output before the residual add
    attention_dropout: float = 0.0  # on attention weights; 0 as in the paper (and it keeps SDPA's fused kernel)
    activation_dropout: float = 0.0  # inside the feed-forward, after the ReLU
    pre_norm: bool = False  # the paper is post-norm: LayerNorm(x + Sublayer(x))
    learned_positions: bool = False  # Table 3 row (E): learned instead of sinusoidal positions
    max_positions: int = 1024  # only bounds learned positions; sinusoids extend to any length
    activation: str = "relu"  # the feed-forward's nonlinearity: relu (the paper), gelu, or swish (SiLU, as OPUS-MT)
    scale_embedding: bool = True  # embeddings x sqrt(d_model) (section 3.4); MarianMT's scale_embedding
    target_vocab_size: int = 0  # the decoder's own vocabulary, when source and target have separate ones (0: shared)
    tie_output: bool = True  # the output projection is the target embedding matrix (section 3.4)
    output_bias: bool = False  # a bias on the output projection (MarianMT's final_logits_bias)
    pad_id: int = 0
    bos_id: int = 2  # the decoder's first input (MarianMT starts from pad: then bos_id == pad_id)
    eos_id: int = 3

    def validate(self) -> None:
        """Raise ConfigError naming the flag of the first field out of range."""
        for name in ("encoder_layers", "decoder_layers", "d_model", "d_ff", "heads", "max_positions"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"--activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        if self.target_vocab_size < 0:
            raise ConfigError(f"target_vocab_size must not be negative, got {self.target_vocab_size}")
        if self.d_model % self.heads != 0:
            raise ConfigError(f"--d-model ({self.d_model}) must be divisible by --heads ({self.heads})")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be in [0, 1), got {value}")


@dataclass
class TrainConfig:
    """How to train. Defaults are the paper's (section 5.3/5.4); presets override what suits them."""

    lr: float = 1.0  # scale on the paper's schedule: lr * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    warmup: int = 4000
    max_tokens: int = 4096  # per batch and per process, padding counted
    update_freq: int = 1  # batches accumulated into one update
    max_updates: int = 100_000  # 0: no limit
    max_epochs: int = 0  # 0: no limit
    max_time: float = 0.0  # minutes of training; 0: no limit
    clip_norm: float = 0.0  # 0: no gradient clipping (the paper clips nothing)
    label_smoothing: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_eps: float = 1e-9
    weight_decay: float = 0.0
    seed: int = 1
    log_interval: int = 100  # updates between metrics.jsonl lines
    save_interval_updates: int = 5000  # a checkpoint_UPDATE.pt (with validation) every N updates; 0: per epoch only
    keep_last: int = 20  # interval checkpoints kept on disk; 0: keep all
    valid_bleu: bool = True  # decode the valid split (greedy) at each validation and report BLEU
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; loss in fp32)
    lr_schedule: str = "inverse_sqrt"  # inverse_sqrt: the paper's; constant: --lr itself at every update
    valid_beam: int = 1  # beam size of validation BLEU (1: greedy, cheap)
    patience: int = 0  # stop after this many validations without improvement of early_stop_metric; 0: never
    early_stop_metric: str = "loss"  # loss (valid loss) | bleu (valid BLEU)
    max_nonfinite: int = 5  # stop after this many updates in a row whose loss or gradient is inf/NaN (each skipped)
    compile: bool = False  # torch.compile the model for training
    init_from: str = ""  # a checkpoint whose weights start this run (fine-tuning); optimizer and schedule start anew
    ema_decay: float = 0.0  # exponential moving average of the weights, checkpointed and validated (0: off)
    tensorboard: str = ""  # a folder for TensorBoard event files of the metrics.jsonl scalars ("": none)

    def validate(self) -> None:
        """Raise ConfigError naming the flag of the first field out of range."""
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"--lr must be a positive number, got {self.lr}")
        if self.warmup < 1:
            raise ConfigError("--warmup must be at least 1")
        if self.max_tokens < 1:
            raise ConfigError("--max-tokens must be at least 1")
        if self.update_freq < 1:
            raise ConfigError("--update-freq must be at least 1")
        if min(self.max_updates, self.max_epochs) < 0:
            raise ConfigError("--max-updates and --max-epochs must not be negative")
        for name in ("max_time", "clip_norm", "weight_decay"):
            _require(math.isfinite(getattr(self, name)) and getattr(self, name) >= 0, name,
                     "a finite number, not negative", getattr(self, name))
        _require(math.isfinite(self.adam_eps) and self.adam_eps > 0, "adam_eps", "a positive number", self.adam_eps)
        for name in ("label_smoothing", "adam_beta1", "adam_beta2"):
            _require(0.0 <= getattr(self, name) < 1.0, name, "in [0, 1)", getattr(self, name))
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.log_interval < 1:
            raise ConfigError("--log-interval must be at least 1")
        if self.lr_schedule not in ("inverse_sqrt", "constant"):
            raise ConfigError(f"--lr-schedule must be inverse_sqrt or constant, got {self.lr_schedule!r}")
        if self.valid_beam < 1:
            raise ConfigError(f"--valid-beam must be at least 1, got {self.valid_beam}")
        if self.patience < 0:
            raise ConfigError("--patience must not be negative")
        if self.early_stop_metric not in ("loss", "bleu"):
            raise ConfigError(f"--early-stop-metric must be loss or bleu, got {self.early_stop_metric!r}")
        if self.early_stop_metric == "bleu" and self.patience and not self.valid_bleu:
            raise ConfigError("--early-stop-metric bleu needs --valid-bleu")
        if self.max_nonfinite < 1:
            raise ConfigError("--max-nonfinite must be at least 1")
        _require(0.0 <= self.ema_decay < 1.0, "ema_decay", "in [0, 1)", self.ema_decay)


@dataclass
class SearchConfig:
    """How to decode (section 6.1: beam 4, length penalty 0.6, maximum length input + 50)."""

    beam: int = 4
    lenpen: float = 0.6  # alpha
    lenpen_style: str = "gnmt"  # gnmt: ((5 + |Y|) / 6)^alpha (Wu et al. 2016, as in the paper); length: |Y|^alpha
    max_len_a: float = 1.0  # maximum output length = a * source length + b
    max_len_b: int = 50
    min_len: int = 1  # tokens before end-of-sentence may be chosen (end-of-sentence counted)
    nbest: int = 1
    no_repeat_ngram_size: int = 0  # no n-gram of this size twice in an output (0: allowed)
    # Sampling instead of beam search: `nbest` independent samples per input, from the model's distribution at
    # `temperature`, restricted to the `topk` most likely tokens (0: all) and to the smallest set whose probability
    # reaches `topp` (1.0: all); `seed` makes it reproducible.
    sampling: bool = False
    topk: int = 0
    topp: float = 1.0
    temperature: float = 1.0
    seed: int = 1

    def validate(self) -> None:
        """Raise ConfigError naming the flag of the first field out of range."""
        if self.beam < 1:
            raise ConfigError(f"--beam must be at least 1, got {self.beam}")
        if not math.isfinite(self.lenpen):
            raise ConfigError(f"--lenpen must be a finite number, got {self.lenpen}")
        if self.lenpen_style not in ("gnmt", "length"):
            raise ConfigError(f"--lenpen-style must be gnmt or length, got {self.lenpen_style!r}")
        if self.sampling:
            if self.nbest < 1:
                raise ConfigError(f"--nbest must be at least 1, got {self.nbest}")
        elif not 1 <= self.nbest <= self.beam:
            raise ConfigError(f"--nbest must be between 1 and --beam ({self.beam}), got {self.nbest}")
        _require(math.isfinite(self.max_len_a) and self.max_len_a >= 0, "max_len_a", "a finite number, not negative",
                 self.max_len_a)
        if self.max_len_b < 1:
            raise ConfigError(f"--max-len-b must be at least 1, got {self.max_len_b}")
        if self.min_len < 1:
            raise ConfigError("--min-len must be at least 1")
        if self.no_repeat_ngram_size < 0:
            raise ConfigError("--no-repeat-ngram-size must not be negative")
        if self.topk < 0:
            raise ConfigError("--topk must not be negative")
        if not 0.0 < self.topp <= 1.0:
            raise ConfigError(f"--topp must be in (0, 1], got {self.topp}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"--temperature must be positive, got {self.temperature}")


def _require(condition: bool, name: str, what: str, value) -> None:
    """Comparisons are False for NaN, so `condition` written as what must hold also refuses NaN."""
    if not condition:
        raise ConfigError(f"--{name.replace('_', '-')} must be {what}, got {value}")


@dataclass
class Preset:
    model: ModelConfig
    train: TrainConfig = field(default_factory=TrainConfig)


def transformer_tiny() -> Preset:
    """For tests: a model that trains in seconds."""
    model = ModelConfig(encoder_layers=2, decoder_layers=2, d_model=64, d_ff=128, heads=4, dropout=0.0)
    train = TrainConfig(lr=0.4, warmup=100, max_tokens=1024, max_updates=500, log_interval=10,
                        save_interval_updates=0, keep_last=5)
    return Preset(model, train)


def transformer_small() -> Preset:
    """The CPU preset for Multi30k (not in the paper): 3+3 layers, d_model 256, 4 heads, d_ff 1024.

    A 20-minute run on 2 CPU cores makes ~1,500 updates of ~2k tokens (smaller batches cost no throughput there and
    give twice the updates), so warmup is short (400) and the peak learning rate, 0.35 * 256^-0.5 * 400^-0.5 =
    1.1e-3, higher than base's 7e-4.
    """
    model = ModelConfig(encoder_layers=3, decoder_layers=3, d_model=256, d_ff=1024, heads=4, dropout=0.1)
    train = TrainConfig(lr=0.35, warmup=400, max_tokens=2048, max_updates=0, max_time=20.0, clip_norm=1.0,
                        log_interval=50, save_interval_updates=150, keep_last=10)
    return Preset(model, train)


def transformer_base() -> Preset:
    """Table 3, base: N=6, d_model 512, d_ff 2048, h 8, P_drop 0.1; 100k updates of ~25k tokens, warmup 4000."""
    model = ModelConfig(encoder_layers=6, decoder_layers=6, d_model=512, d_ff=2048, heads=8, dropout=0.1)
    train = TrainConfig(warmup=4000, max_tokens=4096, update_freq=6, max_updates=100_000,
                        save_interval_updates=5000, keep_last=20)
    return Preset(model, train)


def transformer_big() -> Preset:
    """Table 3, big: N=6, d_model 1024, d_ff 4096, h 16, P_drop 0.3 (0.1 for en-fr); 300k updates."""
    model = ModelConfig(encoder_layers=6, decoder_layers=6, d_model=1024, d_ff=4096, heads=16, dropout=0.3)
    train = TrainConfig(warmup=4000, max_tokens=4096, update_freq=6, max_updates=300_000,
                        save_interval_updates=5000, keep_last=20)
    return Preset(model, train)


PRESETS = {
    "transformer_tiny": transformer_tiny,
    "transformer_small": transformer_small,
    "transformer_base": transformer_base,
    "transformer_big": transformer_big,
}


# Model fields that shape training but not the weights: a fine-tuning run may change them.
REGULARIZATION_FIELDS = ("dropout", "attention_dropout", "activation_dropout")
# What makes two models one architecture: the fields a preset fixes, less dropouts and the vocabulary.
ARCHITECTURE_FIELDS = ("encoder_layers", "decoder_layers", "d_model", "d_ff", "heads", "pre_norm",
                       "learned_positions", "activation", "scale_embedding", "tie_output", "output_bias")


def matching_preset(model: ModelConfig) -> str | None:
    """The name of the preset whose architecture `model` has, if any."""
    for name, make in PRESETS.items():
        if all(getattr(make().model, key) == getattr(model, key) for key in ARCHITECTURE_FIELDS):
            return name
    return None


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"--arch must be one of {', '.join(PRESETS)}; got {name!r}")
    return PRESETS[name]()


def replace_fields(config, overrides: dict):
    """A copy of `config` with the non-None `overrides` applied (unknown names are a programming error)."""
    known = {f.name for f in dataclasses.fields(config)}
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown {type(config).__name__} fields: {sorted(unknown)}")
    return dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})


_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def from_dict(cls, values: dict):
    """Rebuild a config from a checkpoint's dict, ignoring fields a newer version added or dropped. A value of the
    wrong type (a damaged or hand-edited file) is a ConfigError naming the field."""
    if not isinstance(values, dict):
        raise ConfigError(f"the {cls.__name__} is a {type(values).__name__}, not a table of fields")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in values.items():
        if name not in fields:
            continue
        allowed = _TYPES.get(str(fields[name].type))
        # bool is an int to Python; a field of either kind takes only its own.
        wrong_bool = isinstance(value, bool) and str(fields[name].type) != "bool"
        if allowed is not None and (not isinstance(value, allowed) or wrong_bool):
            raise ConfigError(f"{cls.__name__} field {name!r} is {value!r}, not a {fields[name].type}")
    return cls(**{k: v for k, v in values.items() if k in fields})
