"""Streams of lines through an engine: windows of lines translated together (sorted by length inside, by the
engine) and written back in input order, each with its forced prefix and constraints; and the file loop of `nmt
translate`, whose output file appears whole or not at all.

The engines themselves are in nmt.engines; how each line is written, in nmt.output_formats.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from nmt.atomic import atomic_write
from nmt.data.text import read_text_lines
from nmt.engines.base import Engine, Translation
from nmt.errors import NmtError
from nmt.output_formats import OutputFormat
from nmt.resumable import ResumableOutput
from nmt.terminology import ConstraintError, ConstraintSource


def translate_stream(engine: Engine, lines: Iterable[str], window: int = 1000, prefixes: Iterable[str] | None = None,
                     constraints: ConstraintSource | None = None) -> Iterator[list[Translation]]:
    """`engine.translate` on successive windows of `window` lines, yielding each line's n-best in input order (each
    window is written before the next is read). A line whose constraints cannot be honoured ends the stream with an
    error naming the line."""
    prefix_lines = iter(prefixes) if prefixes is not None else None
    buffer: list[str] = []
    buffer_prefixes: list[str] = []
    buffer_constraints: list[list[str]] = []
    done = 0  # lines translated before the buffer

    def flush():
        try:
            return engine.translate(buffer, buffer_prefixes if prefix_lines is not None else None,
                                    constraints=buffer_constraints if constraints is not None else None)
        except ConstraintError as error:
            raise NmtError(f"{constraints.where(done + error.index + 1) if constraints else done + error.index + 1}: "
                           f"{error.message}") from None

    for line in lines:
        buffer.append(line)
        if prefix_lines is not None:
            prefix = next(prefix_lines, None)
            if prefix is None:
                raise NmtError(f"--prefix-file has fewer lines than the input ({len(buffer) + done} or more)")
            buffer_prefixes.append(prefix)
        if constraints is not None:
            buffer_constraints.append(constraints.next_for(line))
        if len(buffer) >= window:
            yield from flush()
            done += len(buffer)
            buffer, buffer_prefixes, buffer_constraints = [], [], []
    if constraints is not None:
        constraints.check_finished()
    if buffer:
        yield from flush()


@dataclass
class RunNotes:
    """What a run did that its user should hear of: inputs (numbered from 0) translated in parts, and inputs cut at
    the model's limit, their ends untranslated."""

    cut_inputs: list[int] = field(default_factory=list)
    truncated_inputs: list[int] = field(default_factory=list)


def translate_file(engine: Engine, source: Path | BinaryIO, output: Path | None, output_format: OutputFormat,
                   window: int | None = None, prefix_file: Path | None = None,
                   constraints: ConstraintSource | None = None, resume: ResumableOutput | None = None) -> list[int]:
    """Translate the lines of `source` (a file, or a binary stream such as stdin) into `output` (stdout for None),
    `window` lines at a time (default: 1000, or 1 on a terminal), each with its forced prefix (a line of
    `prefix_file`) and its constraints. A file appears whole once every line is translated, or not at all; stdout
    streams, flushed after each window. With `resume`, the output grows window by window and a run started again
    goes on after the last window finished (nmt.resumable). Returns the lines (from 0) cut at the model's limit."""
    truncated = []
    with contextlib.ExitStack() as files:
        stream = files.enter_context(open(source, "rb")) if isinstance(source, Path) else source
        window = window or (1 if stream.isatty() else 1000)
        if window < 1:
            raise NmtError("--buffer-size must be at least 1")
        prefix_stream = files.enter_context(open(prefix_file, "rb")) if prefix_file else None
        done = 0
        if resume is not None:
            done, sink = resume.open(), resume
            files.push(resume.close)
        else:
            sink = files.enter_context(atomic_write(output, newline="\n")) if output else sys.stdout
        lines = read_text_lines(stream, str(source) if isinstance(source, Path) else "<stdin>")
        prefixes = read_text_lines(prefix_stream, str(prefix_file)) if prefix_stream else None
        _skip(done, lines, prefixes, constraints, source)
        for index, translations in enumerate(translate_stream(engine, lines, window, prefixes, constraints), done):
            sink.write(output_format.format(index, translations))
            if translations[0].truncated:
                truncated.append(index)
            if output_format.attention_plot is not None and translations[0].attention is not None:
                from nmt.plot import plot_attention
                plot_attention(translations[0], output_format.attention_plot / f"line-{index + 1:06d}.png",
                               title=f"line {index + 1}")
            if (index - done) % window == window - 1:
                sink.flush()
                if resume is not None:
                    resume.mark(index + 1)
        sink.flush()
        if resume is not None:
            resume.finish()
    return truncated


def _skip(count: int, lines: Iterator[str], prefixes: Iterator[str] | None, constraints: ConstraintSource | None,
          source) -> None:
    """Read past the first COUNT input lines (and their prefixes and constraints): a resumed run's lines done."""
    for number in range(count):
        line = next(lines, None)
        if line is None:
            raise NmtError(f"{source} has {number} lines, but the interrupted run it continues had done {count}")
        if prefixes is not None:
            next(prefixes, None)
        if constraints is not None:
            constraints.next_for(line)


def translate_document(engine: Engine, source: Path | BinaryIO, output: Path | None) -> None:
    """Translate the whole of `source` as one document (an HTML page: its line breaks are not boundaries) into
    `output` (stdout for None), which appears whole or not at all."""
    name = str(source) if isinstance(source, Path) else "<stdin>"
    with contextlib.ExitStack() as files:
        stream = files.enter_context(open(source, "rb")) if isinstance(source, Path) else source
        data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise NmtError(f"{name}: not UTF-8 text (byte {error.start})") from None
    translation = engine.translate([text])[0][0]
    if not translation.sentences:
        raise NmtError(f"{name}: no text to translate" + (" (only markup)" if text.strip() else ""))
    with atomic_write(output, newline="") if output else contextlib.nullcontext(sys.stdout) as sink:
        sink.write(translation.text)
        sink.flush()


def translate_input(engine: Engine, source: Path | BinaryIO, output: Path | None, output_format: OutputFormat,
                    text_format: str = "text", split_sentences: bool = False, window: int | None = None,
                    prefix_file: Path | None = None, constraints: ConstraintSource | None = None,
                    resume: ResumableOutput | None = None) -> RunNotes:
    """`nmt translate`'s whole run: lines through `engine` (each line split into its sentences with
    `split_sentences`), or with text_format "html" the whole input as one document."""
    documents = None
    if text_format == "html" or split_sentences:
        from nmt.documents.engine import DocumentEngine

        documents = DocumentEngine(engine, text_format,
                                   glossary=constraints.glossary if constraints is not None else None)
    notes = RunNotes()
    if text_format == "html":
        translate_document(documents, source, output)
    else:
        notes.truncated_inputs = translate_file(documents or engine, source, output, output_format, window,
                                                prefix_file, constraints, resume)
    offset = resume.done if resume is not None else 0  # a resumed run numbers its lines from where it went on
    notes.cut_inputs = [offset + i for i in documents.cut_inputs] if documents is not None else []
    return notes
