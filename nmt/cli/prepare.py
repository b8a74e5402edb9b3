"""`nmt prepare`: download (or take from a mirror), clean, learn the vocabulary and binarize a corpus."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nmt.cli.app import command, console, dry_run
from nmt.cli.options import config_number
from nmt.cli.progress import ProgressBars
from nmt.config import DATA_ROOT, replace_fields
from nmt.data.prepare_options import CleaningOptions, PrepareOptions, SyntheticCorpus
from nmt.errors import NmtError


@command("prepare")
def prepare(
    corpora: Annotated[Optional[list[str]], typer.Argument(
        help="A recipe (see --list), several recipes for one multilingual dataset (multi30k-en-de multi30k-en-fr), "
             "or 'custom' for your own files (--src, --tgt or --pairs, --train, --valid).", show_default=False,
        metavar="CORPUS...")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output DATA_DIR. Default: data/CORPUS.")] = None,
    mirror: Annotated[Optional[str], typer.Option(
        help="A folder or http(s) URL holding the recipe's files under their upstream names, used instead of "
             "the upstream addresses.")] = None,
    vocab_size: Annotated[Optional[int], config_number(
        PrepareOptions, "vocab_size",
        "Pieces in the joint SentencePiece BPE vocabulary. Default: the recipe's (8000 for Multi30k).")] = None,
    spm_sample: Annotated[int, config_number(
        PrepareOptions, "spm_max_sentences", "Sentences (both sides together) sampled from the training data to "
                                             "learn SentencePiece; bounds its memory and time.")] = 2_000_000,
    workers: Annotated[Optional[int], config_number(
        PrepareOptions, "workers",
        "Processes that clean, encode and binarize the training data. Default: the CPU count, at most 8.")] = None,
    max_tokens: Annotated[Optional[int], config_number(
        CleaningOptions, "max_tokens", "Drop training pairs with a side longer than this many pieces. Default: "
                                       "250.")] = None,
    max_ratio: Annotated[Optional[float], config_number(
        CleaningOptions, "max_ratio", "Drop training pairs whose length ratio (in pieces) exceeds this. Default: "
                                      "the recipe's.")] = None,
    no_verify: Annotated[bool, typer.Option(
        "--no-verify", help="Skip checksum verification (for a mirror of repackaged files).")] = False,
    src: Annotated[Optional[str], typer.Option(help="custom: source language code (file suffix).")] = None,
    tgt: Annotated[Optional[str], typer.Option(help="custom: target language code (file suffix).")] = None,
    pairs: Annotated[Optional[str], typer.Option(
        help="custom, several pairs in one dataset: SRC-TGT,SRC-TGT (en-de,en-fr), each read from "
             "PREFIX.SRC-TGT.SRC and PREFIX.SRC-TGT.TGT (or .gz), as fairseq names them.")] = None,
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
    synthetic: Annotated[Optional[list[str]], typer.Option(
        help="A synthetic training corpus (back-translations, a teacher's translations): PREFIX.SRC and PREFIX.TGT "
             "(or .gz), added to the training split only; repeat for several. See docs/synthetic-data.md.",
        show_default=False)] = None,
    synthetic_tag: Annotated[Optional[list[str]], typer.Option(
        help="The tag each --synthetic corpus's sources start with, e.g. '<BT>' (tagged back-translation), a piece "
             "of its own in the vocabulary: once for all, or once per corpus in order. Default: none.",
        show_default=False)] = None,
    synthetic_weight: Annotated[Optional[list[float]], config_number(
        SyntheticCorpus, "weight", "How many times an epoch draws each --synthetic corpus's sentences (the parallel "
                                   "data's: 1; 0.5: a different half each epoch): once for all, or once per corpus. "
                                   "Default: 1.", show_default=False)] = None,
    reserve_tag: Annotated[Optional[list[str]], typer.Option(
        help="A tag (e.g. '<BT>') the learned vocabulary keeps as a piece of its own, for a dataset prepared later "
             "with --vocab from this one whose --synthetic corpora carry it.", show_default=False)] = None,
    list_recipes: Annotated[bool, typer.Option("--list", help="List the recipes and exit.")] = False,
) -> None:
    """Download (or take from --mirror), clean, learn a joint BPE vocabulary and binarize a corpus into DATA_DIR.
    Several recipes (or --pairs) make one dataset for a multilingual model: each source starts with its target
    language's token (>>de<<), the vocabulary is learned on a sample balanced by language."""
    from nmt.data.recipes import RECIPES, combine

    if list_recipes or not corpora:
        _list_recipes(RECIPES)
        return
    recipe = _recipe(corpora, RECIPES, combine, pairs, {"--src": src or pairs, "--tgt": tgt or pairs,
                                                        "--train": train, "--valid": valid})
    if pairs and (src or tgt):
        raise NmtError("--pairs names every pair's languages: give it without --src and --tgt")
    corpus = "+".join(corpora)
    out = out or DATA_ROOT / (corpus if len(corpora) == 1 else "-".join(corpora))
    cleaning = recipe.cleaning if recipe is not None else CleaningOptions()
    if separate_vocabs and vocab is not None:
        raise NmtError("--separate-vocabs learns two vocabularies, --vocab uses a given one: choose one")
    synthetic_corpora = _synthetic(synthetic, synthetic_tag, synthetic_weight, reserve_tag, vocab,
                                   (recipe.src, recipe.tgt) if recipe is not None else (src, tgt), pairs)
    options = PrepareOptions(vocab_size=vocab_size, spm_max_sentences=spm_sample, separate_vocabs=separate_vocabs,
                             workers=workers or min(os.cpu_count() or 1, 8),
                             cleaning=replace_fields(cleaning, {"max_tokens": max_tokens, "max_ratio": max_ratio}),
                             synthetic=tuple(synthetic_corpora), reserved_tags=tuple(reserve_tag or ()))
    recipe_vocab = recipe.vocab_size if recipe is not None else 8000
    options.resolved(recipe_vocab, options.cleaning)  # option values first, before any file is read
    if dry_run("prepare", {"corpus": corpus, "out": out, "mirror": mirror or "upstream addresses",
                           "vocabulary": vocab or "learned"}):
        return
    if vocab is not None:  # read once the options are known good; checked against --vocab-size
        from nmt.checkpoint import load_vocabulary

        options = dataclasses.replace(options, vocab_model=load_vocabulary(vocab), vocab_source=str(vocab))
        options.resolved(recipe_vocab, options.cleaning)
    if no_verify and corpus != "custom":
        console.print("[yellow]warning:[/] --no-verify: sizes and checksums are not checked")
    prepared = _run(out, recipe, options, mirror, not no_verify, src, tgt, pairs,
                    {"train": train, "valid": valid, "test": test})
    _print_prepared(out, prepared)


def _run(out: Path, recipe, options: PrepareOptions, mirror: str | None, verify: bool, src: str | None,
         tgt: str | None, pairs: str | None, prefixes: dict[str, str | None]):
    """The preparation itself, with progress bars; a recipe, or (recipe None) your own files."""
    from nmt.data.prepare import custom_pairs, find_side, prepare_corpus, prepare_recipe

    log = lambda message: console.print(f"[cyan]prepare[/] {message}")  # noqa: E731
    try:
        with ProgressBars() as hook:
            if recipe is None and pairs:
                return custom_pairs(out, pairs, prefixes, options, log, hook)
            if recipe is None:
                splits = {name: (find_side(prefix, src), find_side(prefix, tgt))
                          for name, prefix in prefixes.items() if prefix}
                return prepare_corpus(out, src, tgt, splits, options, {"recipe": "custom"}, log, hook)
            return prepare_recipe(recipe, out, options, mirror, verify, hook, log)
    except KeyboardInterrupt:
        console.print(f"[bold red]interrupted:[/] {out} is incomplete (no manifest.json); run the same command "
                      "again to go on from where it stopped", soft_wrap=True)
        raise typer.Exit(130) from None


def _print_prepared(out: Path, prepared) -> None:
    """What a prepared DATA_DIR holds: each split's pairs, the vocabulary, what cleaning dropped, and each pair of
    a multilingual dataset."""
    manifest = prepared.manifest
    if all(step["status"] == "skipped" for step in prepared.steps.values()):
        console.print(f"[green]up to date[/] {out}: every step was done already with these options")
    report = manifest["cleaning"]["train"]
    console.print(f"[green]prepared[/] {out}: " + ", ".join(
        f"{name} {split['sentences']:,} pairs" for name, split in manifest["splits"].items())
        + f"; vocabulary {manifest['vocab_size']}; training pairs kept {report['kept']:,}, dropped "
        + (", ".join(f"{reason} {count:,}" for reason, count in report["dropped"].items()) or "none"))
    for corpus in manifest.get("train_corpora", []):
        start, end = corpus["rows"]
        if corpus["synthetic"]:
            console.print(f"  {escape(corpus['name'])} ({escape(corpus['tag']) or 'untagged'}, weight "
                          f"{corpus['weight']:g}): {end - start:,} training pairs", soft_wrap=True)
    for pair in manifest.get("pairs", []):
        rows = pair["rows"]
        console.print(f"  {pair['src']}->{pair['tgt']} ({pair['token']}): " + ", ".join(
            f"{split} {end - start:,}" for split, (start, end) in rows.items()))


def _synthetic(prefixes, tags, weights, reserved_tags, vocab, languages, pairs) -> list:
    """The --synthetic corpora, checked before anything is read: tags, weights, and that they join a dataset of one
    pair."""
    from nmt.data.synthetic import check_tag, synthetic_corpora

    corpora = synthetic_corpora(prefixes or [], tags or [], weights or [])
    for tag in reserved_tags or []:
        check_tag(tag, "--reserve-tag")
    if reserved_tags and vocab is not None:
        raise NmtError("--reserve-tag adds pieces to a vocabulary being learned; --vocab's pieces are given")
    if corpora and (pairs or "mul" in languages or len(set(languages)) < 2):
        raise NmtError("--synthetic corpora are for a dataset of one pair; a multilingual dataset cannot take them")
    return corpora  # their files are looked for when the preparation starts, as --train's are


def _recipe(corpora: list[str], recipes: dict, combine, pairs: str | None, custom_needs: dict):
    """The recipe the corpora name (several: one multilingual recipe), or None for `custom`, whose options are
    checked here."""
    for name in corpora:
        if name not in recipes and name != "custom":
            raise NmtError(f"unknown corpus {name!r}; `nmt prepare --list` shows the recipes")
    if "custom" in corpora and len(corpora) > 1:
        raise NmtError("custom takes its files from --train/--valid: name it alone (several pairs: --pairs)")
    if corpora != ["custom"]:
        if pairs:
            raise NmtError("--pairs is for custom corpora; name several recipes instead")
        return combine([recipes[name] for name in corpora])
    for flag, value in custom_needs.items():
        if not value:
            raise NmtError(f"prepare custom needs {flag}" + (" (or --pairs)" if flag in ("--src", "--tgt") else ""))
    return None


def _list_recipes(recipes) -> None:
    table = Table("recipe", "description", "download", "from")
    for recipe in recipes.values():
        size, unknown = recipe.download_size()
        hosts = sorted({remote.url.split("/")[2] for remote in recipe.files.values()})
        table.add_row(recipe.name, recipe.description,
                      f"{size / 1e6:,.1f} MB" + (f" + {unknown} file(s) of unpublished size" if unknown else ""),
                      ", ".join(hosts))
    table.add_row("custom", "your own files: --src, --tgt, --train, --valid [--test]", "-", "-")
    Console().print(table)
