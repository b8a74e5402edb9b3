"""`nmt translate`: lines from stdin (or a file) to translations on stdout (or a file), one engine, any search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from nmt.cli.app import command, console, dry_run, line_numbers, print_search_notes, set_threads, stdin
from nmt.cli.options import (Beam, Checkpoints, DecodingPrecision, Device, Engine, Glossary, Lenpen, LenpenStyle,
                             MaxLenA, MaxLenB, MinLen, NoRepeatNgramSize, Output, Quantize, SourceTokensPerBatch,
                             TargetLanguage, Threads, config_number, number)
from nmt.config import SearchConfig, default_checkpoint
from nmt.errors import NmtError
from nmt.ranges import Range


@command("translate")
def translate_command(
    checkpoint: Checkpoints = None,
    more_checkpoints: Annotated[Optional[list[Path]], typer.Argument(
        metavar="CHECKPOINT", help="More ensemble members (as in `--checkpoint a.pt b.pt`).",
        show_default=False)] = None,
    ensemble_combine: Annotated[str, typer.Option(
        help="How an ensemble combines its models at each step: logprob (the mean of their log-probabilities, "
             "Marian's log-linear ensemble) or prob (the log of the mean of their probabilities, fairseq's).")]
    = "logprob",
    input: Annotated[Optional[Path], typer.Option(help="Read lines from this file instead of stdin.")] = None,
    output: Output = None,
    beam: Beam = None, lenpen: Lenpen = None, lenpen_style: LenpenStyle = None,
    max_len_a: MaxLenA = 1.0, max_len_b: MaxLenB = 50, min_len: MinLen = 1,
    no_repeat_ngram_size: NoRepeatNgramSize = 0,
    nbest: Annotated[int, config_number(SearchConfig, "nbest",
                                        "Write the N best as `INDEX ||| TRANSLATION ||| SCORE` lines.")] = 1,
    sampling: Annotated[bool, typer.Option(
        "--sampling", help="Sample --nbest outputs from the model instead of beam search.")] = False,
    topk: Annotated[int, config_number(SearchConfig, "topk",
                                       "Sampling: only from the K most likely pieces (0: all).")] = 0,
    topp: Annotated[float, config_number(SearchConfig, "topp",
                                         "Sampling: only from the nucleus of probability P (1: all).")] = 1.0,
    temperature: Annotated[float, config_number(SearchConfig, "temperature",
                                                "Sampling: divide log-probabilities by this.")] = 1.0,
    seed: Annotated[int, config_number(
        SearchConfig, "seed", "Sampling: random seed. Each window of lines is sampled from it and the window's own "
                              "lines: the same input gives the same output, a resumed run an uninterrupted one's.")] = 1,
    prefix_file: Annotated[Optional[Path], typer.Option(
        help="Forced target prefixes, a line per input line (an empty line: none).")] = None,
    constraints: Annotated[Optional[Path], typer.Option(
        help="Target phrases each output must contain, a line per input line, phrases separated by tabs (an empty "
             "line: none). Constrained beam search with dynamic beam allocation; see docs/translation.md.")] = None,
    glossary: Glossary = None,
    print_alignment: Annotated[bool, typer.Option(
        "--print-alignment", help="Append ` ||| SRC-TGT ...` hard alignments of pieces, from the attention.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="One JSON object per line: translation, score, tokens, alignment (and nbest).")] = False,
    attention_plot: Annotated[Optional[Path], typer.Option(
        help="Write a PNG of each sentence's encoder-decoder attention into this folder (needs matplotlib).")] = None,
    quantize: Quantize = "none", precision: DecodingPrecision = "fp32", engine: Engine = "torch",
    max_tokens: SourceTokensPerBatch = 6000,
    buffer_size: Annotated[Optional[int], number(
        "Lines read before translating (sorted by length inside). Default: 1000, or 1 on a terminal.",
        Range(1, 10**7))] = None,
    device: Device = None, threads: Threads = None,
    target_language: TargetLanguage = None,
    text_format: Annotated[str, typer.Option(
        "--format", help="text: a line in, a line out. html: the whole input is one HTML document (line breaks "
                         "mean nothing in HTML); its text is translated sentence by sentence, inline markup is "
                         "carried over, code, scripts and styles are left as they are (docs/translation.md).")]
    = "text",
    split_sentences: Annotated[bool, typer.Option(
        "--split-sentences", help="Text: each line may hold several sentences; each is translated on its own and "
                                  "the line comes back as one line, its spaces kept.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="With --input and --output: write the output window by window (into OUTPUT.partial), so that "
                         "a run stopped by Ctrl-C, a crash or a time limit goes on from the last finished window when "
                         "started again with the same options (docs/reliability.md).")] = False,
) -> None:
    """Translate lines from stdin (or --input) to stdout (or --output): one line out for each line in."""
    from nmt.atomic import check_output_file
    from nmt.engines.spec import EngineSpec, check_engine_options, load_engine, resolve_search
    from nmt.output_formats import OutputFormat

    set_threads(threads)
    checkpoints = (checkpoint or []) + (more_checkpoints or [])
    resolved = resolve_search(checkpoints, engine, beam, lenpen, lenpen_style, max_len_a=max_len_a,
                              max_len_b=max_len_b, min_len=min_len, nbest=nbest,
                              no_repeat_ngram_size=no_repeat_ngram_size, sampling=sampling, topk=topk, topp=topp,
                              temperature=temperature, seed=seed)
    search = resolved.search
    print_search_notes(resolved, "decoding", "; options override them")
    check_engine_options(engine)  # the name now; what it cannot do once the other checks passed (below)
    if ensemble_combine not in ("logprob", "prob"):
        raise NmtError(f"--ensemble-combine must be logprob or prob, got {ensemble_combine!r}")
    check_document_options(text_format, nbest=nbest, as_json=as_json, print_alignment=print_alignment,
                           attention_plot=attention_plot, prefix_file=prefix_file, constraints=constraints,
                           resume=resume)
    if dry_run("translate", {"checkpoints": [str(c) for c in checkpoints] or "the default", "search": search}):
        return
    if output is not None:
        check_output_file(output)  # before any model loads
    checkpoints = checkpoints or [default_checkpoint()]
    if attention_plot is not None:
        from nmt.plot import check_plotting
        check_plotting()
    check_engine_options(engine, prefix_file=prefix_file, attention_plot=attention_plot,
                         print_alignment=print_alignment, constraints=constraints, glossary=glossary)
    constraint_source = constraint_source_of(constraints, glossary, sampling)
    output_format = OutputFormat(nbest, as_json, print_alignment, attention_plot)
    spec = EngineSpec(engine, checkpoints, search, device, max_tokens, quantize, threads, precision, target_language,
                      print_alignment or as_json or attention_plot is not None, ensemble_combine)
    resumable = resumable_output(resume, input, output, spec, output_format, text_format, split_sentences,
                                 prefix_file, constraints, glossary)
    translator = load_engine(spec)
    from nmt.translate import translate_input

    notes = translate_input(translator, input or stdin(), output, output_format, text_format, split_sentences,
                            buffer_size, prefix_file, constraint_source, resumable)
    print_notes(translator, notes, text_format, search.beam)


def constraint_source_of(constraints: Path | None, glossary: Path | None, sampling: bool):
    """Each line's constraints from --constraints and --glossary (nmt.terminology.ConstraintSource), or None."""
    given = ", ".join(name for name, path in (("--constraints", constraints), ("--glossary", glossary)) if path)
    if not given:
        return None
    if sampling:
        raise NmtError(f"{given}: constrained decoding is a beam search; not with --sampling")
    from nmt.terminology import ConstraintSource
    from nmt.terminology import Glossary as GlossaryFile
    return ConstraintSource(constraints, GlossaryFile.load(glossary) if glossary else None)


def resumable_output(resume: bool, input: Path | None, output: Path | None, spec, output_format, *settings):
    """With --resume, the output written window by window (nmt.resumable), identified by the input file, the
    model files and every setting that shapes the output."""
    if not resume:
        return None
    if input is None or output is None:
        raise NmtError("--resume continues an --output file from an --input file: give both")
    from nmt.resumable import ResumableOutput, input_identity
    files = {"input": input, **{f"model {i}": path for i, path in enumerate(spec.checkpoints)},
             **{f"file {i}": path for i, path in enumerate(settings) if isinstance(path, Path)}}
    identity = {name: input_identity(path) for name, path in files.items() if Path(path).is_file()}
    identity["settings"] = [spec.search, spec.engine, spec.quantize, spec.precision, spec.target_language,
                            spec.ensemble_combine, output_format, *settings]
    return ResumableOutput(output, identity)


def print_notes(translator, notes, text_format: str, beam: int) -> None:
    """What the run did beyond the options (nmt.translate.RunNotes): grown beams, lines cut at the model's limit or
    translated in parts, each named."""
    if notes.cut_inputs:
        where = "the document" if text_format == "html" else f"{line_numbers(notes.cut_inputs)}"
        console.print(f"[yellow]note:[/] sentences longer than the model takes ({translator.max_source_tokens} "
                      f"pieces) were translated in parts, cut at clause marks, in {where}", highlight=False,
                      soft_wrap=True)
    if translator.grown_beam:
        console.print(f"[cyan]note:[/] lines with more constraint pieces than --beam {beam} allows decoded "
                      f"with a beam of up to {translator.grown_beam} (constraint pieces + 1, for dynamic beam "
                      "allocation)", highlight=False, soft_wrap=True)
    if notes.truncated_inputs:
        console.print(f"[yellow]warning:[/] {line_numbers(notes.truncated_inputs)}: longer than the model takes "
                      f"({translator.max_source_tokens} pieces); only the start of each was translated "
                      "(--split-sentences translates such lines sentence by sentence)", highlight=False,
                      soft_wrap=True)


def check_document_options(text_format: str, *, nbest: int, as_json: bool, print_alignment: bool,
                           attention_plot: Path | None, prefix_file: Path | None, constraints: Path | None,
                           resume: bool = False) -> None:
    """--format html writes one document: the options that shape line output or need a line each do not apply."""
    if text_format not in ("text", "html"):
        raise NmtError(f"--format must be text or html, got {text_format!r}")
    if text_format != "html":
        return
    given = [name for name, was_given in (("--nbest", nbest != 1), ("--json", as_json),
                                          ("--print-alignment", print_alignment),
                                          ("--attention-plot", attention_plot is not None),
                                          ("--prefix-file", prefix_file is not None),
                                          ("--constraints", constraints is not None), ("--resume", resume))
             if was_given]
    if given:
        raise NmtError(f"{given[0]}: not with --format html, which writes the translated document as it came "
                       "(terminology: --glossary works)")
