"""Plain dataclass configs and the named presets.

A preset is a function that returns a `Preset` (model + training defaults). The resolved configs are stored in every
checkpoint as plain dicts, so a model can be rebuilt without the command line that trained it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nmt.errors import ConfigError, NmtError
from nmt.ranges import SEED, check_ranges, flag_name, within

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

    vocab_size: int = field(default=0, metadata=within(0, 10_000_000))  # filled from the data's vocabulary: the
    # joint one, or the source's where the target has its own
    encoder_layers: int = field(default=6, metadata=within(1, 128))  # N
    decoder_layers: int = field(default=6, metadata=within(1, 128))  # N
    d_model: int = field(default=512, metadata=within(1, 65536))
    d_ff: int = field(default=2048, metadata=within(1, 262144))
    heads: int = field(default=8, metadata=within(1, 1024))  # h; d_k = d_v = d_model / h
    # P_drop: embeddings + positions, and every sublayer output before the residual add
    dropout: float = field(default=0.1, metadata=within(0, 1, high_open=True))
    # on attention weights; 0 as in the paper (and it keeps SDPA's fused kernel)
    attention_dropout: float = field(default=0.0, metadata=within(0, 1, high_open=True))
    # inside the feed-forward, after the ReLU
    activation_dropout: float = field(default=0.0, metadata=within(0, 1, high_open=True))
    pre_norm: bool = False  # the paper is post-norm: LayerNorm(x + Sublayer(x))
    learned_positions: bool = False  # Table 3 row (E): learned instead of sinusoidal positions
    # only bounds learned positions; sinusoids extend to any length
    max_positions: int = field(default=1024, metadata=within(1, 1_048_576))
    activation: str = "relu"  # the feed-forward's nonlinearity: relu (the paper), gelu, or swish (SiLU, as OPUS-MT)
    scale_embedding: bool = True  # embeddings x sqrt(d_model) (section 3.4); MarianMT's scale_embedding
    # the decoder's own vocabulary, when source and target have separate ones (0: shared)
    target_vocab_size: int = field(default=0, metadata=within(0, 10_000_000))
    tie_output: bool = True  # the output projection is the target embedding matrix (section 3.4)
    output_bias: bool = False  # a bias on the output projection (MarianMT's final_logits_bias)
    pad_id: int = 0
    bos_id: int = 2  # the decoder's first input (MarianMT starts from pad: then bos_id == pad_id)
    eos_id: int = 3

    def validate(self, label: Callable[[str], str] = flag_name) -> None:
        """Raise ConfigError naming the first field out of range by `label(field)` (default: its flag)."""
        check_ranges(self, label)
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"{label('activation')} must be one of {', '.join(ACTIVATIONS)}, got "
                              f"{self.activation!r}")
        if self.d_model % self.heads != 0:
            raise ConfigError(f"{label('d_model')} ({self.d_model}) must be divisible by {label('heads')} "
                              f"({self.heads})")


@dataclass
class TrainConfig:
    """How to train. Defaults are the paper's (section 5.3/5.4); presets override what suits them."""

    # scale on the paper's schedule: lr * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)
    lr: float = field(default=1.0, metadata=within(0, 1e30, low_open=True))
    warmup: int = field(default=4000, metadata=within(1, 10**9))
    max_tokens: int = field(default=4096, metadata=within(1, 10**8))  # per batch and per process, padding counted
    update_freq: int = field(default=1, metadata=within(1, 65536))  # batches accumulated into one update
    max_updates: int = field(default=100_000, metadata=within(0, 10**12))  # 0: no limit
    max_epochs: int = field(default=0, metadata=within(0, 10**9))  # 0: no limit
    max_time: float = field(default=0.0, metadata=within(0, 10**9))  # minutes of training; 0: no limit
    # 0: no gradient clipping (the paper clips nothing)
    clip_norm: float = field(default=0.0, metadata=within(0, 1e9))
    label_smoothing: float = field(default=0.1, metadata=within(0, 1, high_open=True))
    adam_beta1: float = field(default=0.9, metadata=within(0, 1, high_open=True))
    adam_beta2: float = field(default=0.98, metadata=within(0, 1, high_open=True))
    adam_eps: float = field(default=1e-9, metadata=within(0, 1, low_open=True))
    weight_decay: float = field(default=0.0, metadata=within(0, 1e3))
    seed: int = field(default=1, metadata=SEED)
    log_interval: int = field(default=100, metadata=within(1, 10**12))  # updates between metrics.jsonl lines
    # a checkpoint_UPDATE.pt (with validation) every N updates; 0: per epoch only
    save_interval_updates: int = field(default=5000, metadata=within(0, 10**12))
    keep_last: int = field(default=20, metadata=within(0, 10**6))  # interval checkpoints kept on disk; 0: keep all
    valid_bleu: bool = True  # decode the valid split (greedy) at each validation and report BLEU
    # fp32 | bf16 | fp16 (autocast; loss in fp32) | auto: bf16 where the device computes it natively, else fp32
    precision: str = "fp32"
    lr_schedule: str = "inverse_sqrt"  # inverse_sqrt: the paper's; constant: --lr itself at every update
    valid_beam: int = field(default=1, metadata=within(1, 64))  # beam size of validation BLEU (1: greedy, cheap)
    # stop after this many validations without improvement of early_stop_metric; 0: never
    patience: int = field(default=0, metadata=within(0, 10**6))
    early_stop_metric: str = "loss"  # loss (valid loss) | bleu (valid BLEU)
    # stop after this many updates in a row whose loss or gradient is inf/NaN (each skipped)
    max_nonfinite: int = field(default=5, metadata=within(1, 10**6))
    compile: bool = False  # torch.compile the model for training
    init_from: str = ""  # a checkpoint whose weights start this run (fine-tuning); optimizer and schedule start anew
    # exponential moving average of the weights, checkpointed and validated (0: off)
    ema_decay: float = field(default=0.0, metadata=within(0, 1, high_open=True))
    tensorboard: str = ""  # a folder for TensorBoard event files of the metrics.jsonl scalars ("": none)
    # A dataset of several pairs: each epoch draws pair p's sentences with probability proportional to n_p^(1/T)
    # (1: as the data has them; larger: flatter, the small pairs drawn more often). 5: Arivazhagan et al. (2019).
    sampling_temperature: float = field(default=5.0, metadata=within(1, 1000))
    # Subword regularization: each batch segmented anew with SentencePiece's sampling (BPE: each merge dropped with
    # this probability, BPE-dropout; unigram: the smoothing alpha). 0: off (nmt.train.subword).
    subword_alpha: float = field(default=0.0, metadata=within(0, 1))

    def validate(self) -> None:
        """Raise ConfigError naming the flag of the first field out of range."""
        check_ranges(self)
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"--precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.lr_schedule not in ("inverse_sqrt", "constant"):
            raise ConfigError(f"--lr-schedule must be inverse_sqrt or constant, got {self.lr_schedule!r}")
        if self.early_stop_metric not in ("loss", "bleu"):
            raise ConfigError(f"--early-stop-metric must be loss or bleu, got {self.early_stop_metric!r}")
        if self.early_stop_metric == "bleu" and self.patience and not self.valid_bleu:
            raise ConfigError("--early-stop-metric bleu needs --valid-bleu")


@dataclass
class SearchConfig:
    """How to decode (section 6.1: beam 4, length penalty 0.6, maximum length input + 50)."""

    beam: int = field(default=4, metadata=within(1, 512))
    # alpha; at most 10 in size: ((5 + |Y|) / 6)^alpha must stay a float32 for any output length
    lenpen: float = field(default=0.6, metadata=within(-10, 10))
    lenpen_style: str = "gnmt"  # gnmt: ((5 + |Y|) / 6)^alpha (Wu et al. 2016, as in the paper); length: |Y|^alpha
    # maximum output length = a * source length + b
    max_len_a: float = field(default=1.0, metadata=within(0, 64))
    max_len_b: int = field(default=50, metadata=within(1, 65536))
    # tokens before end-of-sentence may be chosen (end-of-sentence counted)
    min_len: int = field(default=1, metadata=within(1, 65536))
    nbest: int = field(default=1, metadata=within(1, 512))
    # no n-gram of this size twice in an output (0: allowed)
    no_repeat_ngram_size: int = field(default=0, metadata=within(0, 1024))
    # Sampling instead of beam search: `nbest` independent samples per input, from the model's distribution at
    # `temperature`, restricted to the `topk` most likely tokens (0: all) and to the smallest set whose probability
    # reaches `topp` (1.0: all); `seed` makes it reproducible.
    sampling: bool = False
    topk: int = field(default=0, metadata=within(0, 10_000_000))
    topp: float = field(default=1.0, metadata=within(0, 1, low_open=True))
    temperature: float = field(default=1.0, metadata=within(0, 1000, low_open=True))
    seed: int = field(default=1, metadata=SEED)

    def validate(self) -> None:
        """Raise ConfigError naming the flag of the first field out of range."""
        check_ranges(self)
        if self.lenpen_style not in ("gnmt", "length"):
            raise ConfigError(f"--lenpen-style must be gnmt or length, got {self.lenpen_style!r}")
        if not self.sampling and self.nbest > self.beam:
            raise ConfigError(f"--nbest must be between 1 and --beam ({self.beam}), got {self.nbest}")


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


def small_corpus() -> Preset:
    """transformer_small's model, trained for a small corpus in a short time (the README's job): bf16 where the
    device computes it natively (--precision auto), which on a CPU with AVX512-BF16 doubles the updates a minute, and
    a peak learning rate of 0.7 * 256^-0.5 * 400^-0.5 = 2.2e-3. Chosen by benchmarks/recipe_search.py on Multi30k
    (benchmarks/README.md, "A recipe for small data"); on a device without native bf16 it trains in fp32.
    """
    small = transformer_small()
    return Preset(small.model, replace_fields(small.train, {"precision": "auto", "lr": 0.7}))


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
    "small_corpus": small_corpus,
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
