"""What `nmt prepare` is asked to do beyond the recipe: vocabulary size, sampling, workers, cleaning. Nothing but the
standard library and nmt.ranges: the command line reads the ranges declared here when it starts."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from nmt.errors import ConfigError
from nmt.ranges import SEED, check_ranges, flag_name, within

if TYPE_CHECKING:
    from nmt.vocab import Vocab


@dataclass
class CleaningOptions:
    max_chars: int = 1024  # per side, after normalization (a cheap bound before tokenization)
    # per side, in SentencePiece pieces (fairseq's WMT recipe uses 250)
    max_tokens: int = field(default=250, metadata=within(1, 1_000_000))
    # longer side / shorter side, in pieces (as in fairseq's clean-corpus-n with ratio 1.5)
    max_ratio: float = field(default=1.5, metadata=within(1, 1e6))
    ratio_min_tokens: int = 10  # the ratio applies only when the longer side has more pieces than this
    # A training line that is not UTF-8: "error" stops with file:line (your own corpus: fix it), "drop" drops the
    # pair and counts it (downloaded web-crawled corpora, where one bad byte must not stop a 4.5M-pair run).
    invalid_utf8: str = "error"


@dataclass(frozen=True)
class SyntheticCorpus:
    """A synthetic training corpus (back-translation, distillation; nmt.data.synthetic)."""

    prefix: str  # PREFIX.SRC and PREFIX.TGT (or .gz)
    tag: str = ""  # the token its sources start with ("": none)
    # Its draws per epoch against its size (the parallel data's weight is 1)
    weight: float = field(default=1.0, metadata=within(0, 1000, low_open=True))


@dataclass
class PrepareOptions:
    """How `nmt prepare` cleans, learns the vocabulary and binarizes (the recipe fills what is None)."""

    # None: the recipe's (8000 for your own corpora); at least 256 byte pieces + specials
    vocab_size: int | None = field(default=None, metadata=within(300, 1_000_000))
    # sentences (both sides together) sampled to train SentencePiece
    spm_max_sentences: int = field(default=2_000_000, metadata=within(1, 10**9))
    # processes that clean, encode and binarize the training shards
    workers: int = field(default=1, metadata=within(1, 256))
    seed: int = field(default=1, metadata=SEED)  # of the SentencePiece sample
    cleaning: CleaningOptions | None = None  # None: the recipe's (the defaults for your own corpora)
    # A vocabulary to use instead of learning one (`--vocab`: a parent model's, for fine-tuning data).
    vocab_model: Vocab | None = None
    vocab_source: str = ""  # where vocab_model came from, for the manifest
    separate_vocabs: bool = False  # a SentencePiece model and ids of its own for each side (vocab_size each)
    synthetic: tuple[SyntheticCorpus, ...] = ()  # training corpora besides the parallel ones
    reserved_tags: tuple[str, ...] = ()  # tags a learned vocabulary keeps as pieces, for a later --vocab dataset

    def resolved(self, vocab_size: int, cleaning: CleaningOptions) -> "PrepareOptions":
        """These options with the recipe's values where they are None, validated."""
        if self.vocab_model is not None:
            vocab_size = len(self.vocab_model)
            if self.vocab_size not in (None, vocab_size):
                raise ConfigError(f"--vocab-size {self.vocab_size} differs from the {vocab_size} pieces of --vocab "
                                  f"{self.vocab_source}: drop --vocab-size")
        options = replace(self, vocab_size=self.vocab_size or vocab_size, cleaning=self.cleaning or cleaning)
        options.validate()
        return options

    def validate(self) -> None:
        """Raise ConfigError naming the flag of the first option out of range."""
        names = {"spm_max_sentences": "--spm-sample"}
        check_ranges(dataclasses.replace(self, vocab_size=None) if self.vocab_model is not None else self,
                     lambda name: names.get(name, flag_name(name)))
        check_ranges(self.cleaning)
        if self.cleaning.invalid_utf8 not in ("error", "drop"):
            raise ConfigError(f"invalid_utf8 must be 'error' or 'drop', got {self.cleaning.invalid_utf8!r}")
