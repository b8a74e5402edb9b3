"""`nmt tune`: the beam and length penalty chosen on the valid split and stored in the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from nmt.cli.app import command, console, dry_run, set_threads
from nmt.cli.options import Device, SourceTokensPerBatch, Threads
from nmt.cli.progress import counted_progress
from nmt.errors import NmtError


@command("tune")
def tune_command(
    checkpoint: Annotated[Path, typer.Argument(help="The checkpoint to tune (e.g. checkpoints/averaged.pt); the chosen "
                                                    "settings are stored in it.")],
    data_dir: Annotated[Path, typer.Argument(help="The prepared DATA_DIR whose valid split decides.")],
    lenpen: Annotated[str, typer.Option(help="Comma-separated length penalties alpha to try, for each style.")]
    = "0.2,0.6,1.0,1.4,2.0",
    beam: Annotated[str, typer.Option(help="Comma-separated beam sizes to try.")] = "4",
    max_tokens: SourceTokensPerBatch = 6000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trials and the choice as one JSON object.")]
    = False,
    device: Device = None, threads: Threads = None,
) -> None:
    """Choose the search settings on the valid split (never the test split): decode it with each length penalty (both
    styles; each beam size given) and store the best by sacreBLEU in the checkpoint, which `nmt translate` then uses
    unless an option overrides it. The best alpha of the |Y|^alpha style is stored too, for exports (CTranslate2)."""
    from nmt.tune import best_settings, parse_grid, store_settings, tune

    set_threads(threads)
    alphas, beams = parse_grid(lenpen, beam)
    if dry_run("tune", {"checkpoint": checkpoint, "data_dir": data_dir, "lenpen": alphas, "beam": beams}):
        return
    if not checkpoint.is_file():
        from nmt.checkpoint import describe_missing_checkpoint
        raise NmtError(describe_missing_checkpoint(checkpoint, takes_engine=False))
    table = Table("beam", "style", "lenpen", "valid BLEU", "BP", title=f"search settings on {data_dir}'s valid split")
    with counted_progress("tune") as progress:
        task = progress.add_task("tune", total=len(alphas) * len(beams) * 2)
        results = tune(checkpoint, data_dir, alphas, beams, max_tokens, device,
                       progress=lambda result: progress.advance(task))
    tied = len({r.bleu for r in results}) == 1
    # Every setting at (near) zero BLEU: the model translates nothing yet, and the grid's first setting would be
    # stored as if it had been chosen. A tie above that only says the settings make no difference to this model.
    settings = None if tied and results[0].bleu < 1.0 else best_settings(results)
    if settings is not None:
        store_settings(checkpoint, settings)
    if tied:
        console.print(f"[yellow]warning:[/] every setting scored the same valid BLEU ({results[0].bleu:.2f}): "
                      + (f"the model translates nothing of the valid split yet; nothing was stored in {checkpoint} "
                         "(train longer)" if settings is None else "the settings make no difference to this model; "
                         "the first of the grid was stored"), highlight=False, soft_wrap=True)
    if as_json:
        typer.echo(json.dumps({"trials": [vars(r) for r in results], "chosen": settings}))
        return
    for r in results:
        table.add_row(str(r.beam), r.lenpen_style, f"{r.lenpen:g}", f"{r.bleu:.2f}", f"{r.brevity_penalty:.3f}")
    Console().print(table)
    if settings is None:
        return
    typer.echo(f"stored in {checkpoint}: beam {settings['beam']}, lenpen {settings['lenpen']:g} (gnmt), valid BLEU "
               f"{settings['valid_bleu']:.2f}; for exports (|Y|^alpha): lenpen "
               f"{settings['length_style']['lenpen']:g}")
