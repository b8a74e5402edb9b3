"""Options that several commands share, each declared once: its type, its help, and so its one meaning.

A command module declares the options only it has; anything two commands take comes from here, so that `--device`
or `--beam` cannot drift apart between `nmt translate` and `nmt serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

# --- where a model runs --------------------------------------------------------------------------------------------
Device = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1, ... Default: cuda if present.")]
Threads = Annotated[Optional[int], typer.Option(help="CPU threads for PyTorch. Default: PyTorch's.")]

# --- which model decodes, and how ----------------------------------------------------------------------------------
Checkpoint = Annotated[Optional[Path], typer.Option(
    help="Model checkpoint. Default: checkpoints/averaged.pt, else checkpoints/checkpoint_best.pt.")]
Checkpoints = Annotated[Optional[list[Path]], typer.Option(
    "--checkpoint", help="Model checkpoint; several (`--checkpoint a.pt b.pt` or repeated) decode as an ensemble. "
                         "With --engine ctranslate2, the folder `nmt export ctranslate2` wrote. Default: "
                         "checkpoints/averaged.pt, else checkpoints/checkpoint_best.pt.")]
Engine = Annotated[str, typer.Option(
    help="torch (this package's decoder) or ctranslate2 (an exported model; needs nmt[ctranslate2]).")]
Quantize = Annotated[str, typer.Option(help="int8: dynamic int8 linear layers on the CPU; none.")]
DecodingPrecision = Annotated[str, typer.Option(
    "--precision", help="fp32, bf16 or fp16: the matrix products' precision (autocast; log-probabilities stay fp32). "
                        "Half precision is for GPUs; on most CPUs fp32 or --quantize int8 is faster.")]
SourceTokensPerBatch = Annotated[int, typer.Option("--max-tokens", help="Source tokens per batch.")]
Glossary = Annotated[Optional[Path], typer.Option(
    help="A TSV of `source term<TAB>target term`: where a text holds a source term (on word boundaries, case as "
         "given), its target term becomes a constraint of that text. See docs/translation.md.")]

# --- the search (nmt translate, nmt serve) ---------------------------------------------------------------------------
Beam = Annotated[Optional[int], typer.Option(
    help="Beam size (1: greedy). Default: what `nmt tune` stored in the checkpoint, else 4.")]
Lenpen = Annotated[Optional[float], typer.Option(
    help="Length penalty alpha. Default: what `nmt tune` stored in the checkpoint, else 0.6.")]
LenpenStyle = Annotated[Optional[str], typer.Option(
    help="gnmt: ((5 + |Y|) / 6)^alpha, as in the paper; length: |Y|^alpha. Default: the tuned one, else gnmt; "
         "length with --engine ctranslate2, the only style it implements.")]
MaxLenA = Annotated[float, typer.Option(help="Maximum output length = a * source length + b.")]
MaxLenB = Annotated[int, typer.Option(help="See --max-len-a.")]
MinLen = Annotated[int, typer.Option(help="Minimum output length (end-of-sentence counted).")]
NoRepeatNgramSize = Annotated[int, typer.Option(
    help="Never repeat an n-gram of this many pieces within an output (0: off).")]

# --- files -----------------------------------------------------------------------------------------------------------
Output = Annotated[Optional[Path], typer.Option(help="Write the results here instead of stdout.")]
ExportCheckpoint = Annotated[Path, typer.Argument(help="An nmt checkpoint (e.g. checkpoints/averaged.pt).")]
