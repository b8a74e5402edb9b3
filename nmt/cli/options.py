"""Options that several commands share, each declared once: its type, its help, and so its one meaning.

A command module declares the options only it has; anything two commands take comes from here, so that `--device`
or `--beam` cannot drift apart between `nmt translate` and `nmt serve`. Every number is declared with its range
(`number`, or `config_number` for an option that sets a config field, whose range the field declares): the help
shows it, and a value outside it (NaN, infinity, an integer past 64 bits included) is refused in one line when the
command line is parsed, before anything is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nmt.config import SearchConfig
from nmt.ranges import THREADS, Range, field_range


def number(help: str, limits: Range, *names: str, **more):
    """A numeric option whose value must lie in LIMITS, checked as the command line is parsed."""
    def check(value):
        for item in value if isinstance(value, (list, tuple)) else [value]:  # a repeated option: each value
            if item is not None and not limits.holds(item):
                raise typer.BadParameter(f"must be {limits.describe()}, got {item}")
        return value
    return typer.Option(*names, help=f"{help} [{limits.short()}]", callback=check, **more)


def config_number(config_type: type, field: str, help: str, *names: str, **more):
    """The option setting FIELD of CONFIG_TYPE (ModelConfig, TrainConfig, SearchConfig): the field's range."""
    return number(help, field_range(config_type, field), *names, **more)


# --- where a model runs --------------------------------------------------------------------------------------------
Device = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, ... Default: cuda if present.")]
Threads = Annotated[Optional[int], number("CPU threads for PyTorch. Default: PyTorch's.", THREADS)]

# --- which model decodes, and how ----------------------------------------------------------------------------------
Checkpoint = Annotated[Optional[Path], typer.Option(
    help="Model checkpoint. Default: checkpoints/averaged.pt, else checkpoints/checkpoint_best.pt.")]
Checkpoints = Annotated[Optional[list[Path]], typer.Option(
    "--checkpoint", help="Model checkpoint; several (`--checkpoint a.pt b.pt` or repeated) decode as an ensemble. "
                         "With --engine ctranslate2, the folder `nmt export ctranslate2` wrote. Default: "
                         "checkpoints/averaged.pt, else checkpoints/checkpoint_best.pt.")]
ServedCheckpoints = Annotated[Optional[list[Path]], typer.Option(
    "--checkpoint", help="A model to serve; several (repeated) are served side by side, each for its language pairs "
                         "(the first named serves a pair two serve). With --engine ctranslate2, a folder `nmt export "
                         "ctranslate2` wrote. Default: checkpoints/averaged.pt, else checkpoints/checkpoint_best.pt.")]
Engine = Annotated[str, typer.Option(
    help="torch (this package's decoder) or ctranslate2 (an exported model; needs nmt[ctranslate2]).")]
Quantize = Annotated[str, typer.Option(help="int8: dynamic int8 linear layers on the CPU; none.")]
DecodingPrecision = Annotated[str, typer.Option(
    "--precision", help="fp32, bf16 or fp16: the matrix products' precision (autocast; log-probabilities stay fp32). "
                        "Half precision is for GPUs; on most CPUs fp32 or --quantize int8 is faster.")]
TOKENS_PER_BATCH = Range(1, 10**7)  # --max-tokens of every command that decodes or scores
SourceTokensPerBatch = Annotated[int, number("Source tokens per batch.", TOKENS_PER_BATCH, "--max-tokens")]
Glossary = Annotated[Optional[Path], typer.Option(
    help="A TSV of `source term<TAB>target term`: where a text holds a source term (on word boundaries, case as "
         "given), its target term becomes a constraint of that text. See docs/translation.md.")]

# --- the search (nmt translate, nmt serve) ---------------------------------------------------------------------------
Beam = Annotated[Optional[int], config_number(SearchConfig, "beam",
    "Beam size (1: greedy). Default: what `nmt tune` stored in the checkpoint, else 4.")]
Lenpen = Annotated[Optional[float], config_number(SearchConfig, "lenpen",
    "Length penalty alpha. Default: what `nmt tune` stored in the checkpoint, else 0.6.")]
LenpenStyle = Annotated[Optional[str], typer.Option(
    help="gnmt: ((5 + |Y|) / 6)^alpha, as in the paper; length: |Y|^alpha. Default: the tuned one, else gnmt; "
         "length with --engine ctranslate2, the only style it implements.")]
MaxLenA = Annotated[float, config_number(SearchConfig, "max_len_a", "Maximum output length = a * source length + b.")]
MaxLenB = Annotated[int, config_number(SearchConfig, "max_len_b", "See --max-len-a.")]
MinLen = Annotated[int, config_number(SearchConfig, "min_len", "Minimum output length (end-of-sentence counted).")]
NoRepeatNgramSize = Annotated[int, config_number(
    SearchConfig, "no_repeat_ngram_size", "Never repeat an n-gram of this many pieces within an output (0: off).")]

TargetLanguage = Annotated[Optional[str], typer.Option(
    help="For a multilingual model (one trained on several pairs, or an OPUS-MT one with >>xx<< tokens): the "
         "output language, e.g. fr (OPUS-MT: fra); its token starts every source text (without it, each text must "
         "start with one).")]

# --- files -----------------------------------------------------------------------------------------------------------
Output = Annotated[Optional[Path], typer.Option(help="Write the results here instead of stdout.")]
ExportCheckpoint = Annotated[Path, typer.Argument(help="An nmt checkpoint (e.g. checkpoints/averaged.pt).")]
