"""`nmt score` and `nmt report`: translations scored against references, and a run written up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nmt.cli.app import command, console, dry_run, stdin
from nmt.cli.options import number
from nmt.errors import NmtError
from nmt.ranges import Range


@command("score")
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
    paired_bs_n: Annotated[int, number("Bootstrap resamples of --paired-bs.", Range(1, 1_000_000))] = 1000,
    terms: Annotated[Optional[Path], typer.Option(
        help="A glossary (TSV of `source term<TAB>target term`): also print term accuracy, the share of source-term "
             "occurrences whose target term the hypothesis holds (and the reference, for comparison). Needs "
             "--source.")] = None,
    source: Annotated[Optional[Path], typer.Option(help="The source side, for --terms.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with scores and signatures.")] = False,
) -> None:
    """Score translations against references with sacreBLEU (detokenized BLEU, chrF, TER) and their signatures."""
    from nmt.data.text import read_lines, read_text_lines
    from nmt.score import language_of, make_metric, score_systems
    from nmt.terminology import Glossary

    names = [name.strip().lower() for name in metrics.split(",") if name.strip()]
    if not names:
        raise NmtError("--metrics: name at least one of bleu, chrf, ter")
    for name in names:
        make_metric(name)
    if (terms is None) != (source is None):
        raise NmtError("--terms and --source go together: term accuracy looks the glossary's source terms up in the "
                       "source")
    if dry_run("score", {"references": [str(r) for r in ref], "paper": paper, "paired_bs": paired_bs}):
        return
    glossary = Glossary.load(terms) if terms is not None else None
    references = [list(read_lines(path)) for path in ref]
    systems = ([(str(path), list(read_lines(path))) for path in hyp] if hyp
               else [("stdin", list(read_text_lines(stdin())))])
    sources = list(read_lines(source)) if source is not None else None
    report = score_systems(systems, references, names, (lang or language_of(ref[0])) if paper else None, glossary,
                           sources, paired_bs_n if paired_bs else 0)
    typer.echo(report.json() if as_json else report.text(), nl=as_json)


@command("report")
def report_command(
    save_dir: Annotated[Path, typer.Argument(help="A save dir of nmt train (metrics.jsonl, config.json).")],
    out: Annotated[Optional[Path], typer.Option(help="Where report.md and its PNGs go. Default: SAVE_DIR/report.")]
    = None,
) -> None:
    """A Markdown page about a training run: loss, learning rate, tokens/s and validation BLEU plotted over updates,
    the config, the data manifest and the final score (SAVE_DIR/score.json from `nmt score --json`)."""
    from nmt.report import write_report

    if dry_run("report", {"save_dir": save_dir}):
        return
    path = write_report(save_dir, out)
    console.print(f"wrote {path} and its plots")
