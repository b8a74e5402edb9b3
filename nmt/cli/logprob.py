"""`nmt logprob`: the model's log-probability of given translations (teacher-forced)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from nmt.cli.app import command, console, dry_run, line_numbers, set_threads, stdin
from nmt.cli.options import (TOKENS_PER_BATCH, Checkpoint, DecodingPrecision, Device, Output, TargetLanguage,
                             Threads, number)
from nmt.config import default_checkpoint
from nmt.ranges import Range
from nmt.errors import NmtError


MIN_PER_TOKEN = Range(-1000, 0)  # a log-probability per piece: at most 0


@command("logprob")
def logprob_command(
    checkpoint: Checkpoint = None,
    source: Annotated[Optional[Path], typer.Option(help="Source lines (with --target).")] = None,
    target: Annotated[Optional[Path], typer.Option(
        help="Target lines to score, line-aligned with --source. Without both: `source<TAB>target` lines on "
             "stdin.")] = None,
    output: Output = None,
    word_scores: Annotated[bool, typer.Option(
        "--word-scores", help="Also each target piece's log-probability, end-of-sentence last.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per pair: logprob, per_token, pieces (and word_scores).")] = False,
    max_tokens: Annotated[int, number("Tokens per batch (the longer side, padding counted).", TOKENS_PER_BATCH)]
    = 6000,
    precision: DecodingPrecision = "fp32", device: Device = None, threads: Threads = None,
    target_language: TargetLanguage = None,
    keep_prefix: Annotated[Optional[Path], typer.Option(
        help="With --source and --target: write the pairs scoring at least --min-per-token to PREFIX.SRC and "
             "PREFIX.TGT (the languages the files' names end with), for `nmt prepare --synthetic PREFIX`; the "
             "scores go to --output only. See docs/synthetic-data.md.")] = None,
    min_per_token: Annotated[float, number(
        "With --keep-prefix: the lowest per-token log-probability kept.", MIN_PER_TOKEN)] = -2.0,
) -> None:
    """Score given translations: the model's log-probability of each target given its source (teacher-forced, as
    fairseq's --score-reference and marian-scorer), for reranking n-best lists, filtering noisy corpora or a model's
    perplexity on references. A line per pair: `LOGPROB<TAB>PER_TOKEN` (the sum over the target's pieces and its
    end-of-sentence, and that sum divided by their number), then the piece scores with --word-scores."""
    from nmt.atomic import atomic_write, check_output_file
    from nmt.device import PRECISIONS
    from nmt.logprob import ForcedScorer, format_pair_score, read_file_pairs, read_tsv_pairs

    set_threads(threads)
    if (source is None) != (target is None):
        raise NmtError("give both --source and --target, or neither (then `source<TAB>target` lines on stdin)")
    if precision not in PRECISIONS:
        raise NmtError(f"--precision must be fp32, bf16 or fp16, got {precision!r}")
    if dry_run("logprob", {"checkpoint": checkpoint or "the default", "pairs": f"{source} / {target}" if source
                           else "stdin (TSV)"}):
        return
    if keep_prefix is not None and source is None:
        raise NmtError("--keep-prefix filters the pairs of --source and --target files: give both")
    if output is not None:
        check_output_file(output)
    if keep_prefix is not None:
        check_output_file(keep_prefix, "--keep-prefix")
    pairs = read_file_pairs(source, target) if source is not None else None  # line counts checked here, first
    scorer = ForcedScorer(checkpoint or default_checkpoint(), device, max_tokens, precision=precision,
                          target_language=target_language)
    if keep_prefix is not None:
        _keep(scorer, source, target, min_per_token, keep_prefix, output)
        return
    with contextlib.ExitStack() as files:
        sink = files.enter_context(atomic_write(output, newline="\n")) if output else sys.stdout
        for result in scorer.score_stream(pairs if pairs is not None else read_tsv_pairs(stdin())):
            sink.write(format_pair_score(result, as_json, word_scores))
    if scorer.truncated_lines:
        console.print(f"[yellow]warning:[/] {line_numbers([n - 1 for n in scorer.truncated_lines])}: the source "
                      f"is longer than the model takes ({scorer.max_source_tokens} pieces) and was cut before "
                      "scoring", highlight=False, soft_wrap=True)


def _keep(scorer, source: Path, target: Path, min_per_token: float, prefix: Path, output: Path | None) -> None:
    from nmt.atomic import atomic_write
    from nmt.logprob import keep_pairs

    with atomic_write(output, newline="\n") if output else contextlib.nullcontext() as scores:
        kept, total = keep_pairs(scorer, source, target, min_per_token, prefix, scores)
    console.print(f"kept {kept:,} of {total:,} pairs (per-token log-probability at least {min_per_token:g}) in "
                  f"{prefix}.*", highlight=False, soft_wrap=True)
