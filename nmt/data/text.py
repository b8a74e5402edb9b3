"""Reading raw corpora (plain or gzipped, strict UTF-8, lines end at '\\n' only), normalization and cleaning."""

from __future__ import annotations

import functools
import gzip
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterator

from nmt.data.prepare_options import CleaningOptions  # noqa: F401 (read from here by the data steps)
from nmt.errors import NmtError


def check_input_file(path: Path | str, option: str = "") -> Path:
    """PATH as a file to read, or one line naming what it is instead: a folder, or nothing. A pipe counts as a file
    (bash's `<(...)` gives /dev/fd/63, read once from start to end)."""
    path = Path(path)
    label = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise NmtError(f"{label}: Is a directory (a file was expected)")
    if not path.exists():
        raise NmtError(f"{label}: file not found")
    return path


def open_bytes(path: Path):
    path = check_input_file(path)
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as error:
        raise NmtError(f"{path}: cannot read ({error.strerror or error})") from None


def read_lines(path: Path) -> Iterator[str]:
    """The lines of a text file without their '\\n'. Only '\\n' ends a line ('\\r', U+2028 are content).

    Raises NmtError naming the file and line for bytes that are not UTF-8 or a corrupt gzip stream.
    """
    with open_bytes(path) as handle:
        line_number = 0
        try:
            for line_number, raw in enumerate(handle, start=1):
                yield decode_line(raw, path, line_number)
        except (OSError, EOFError, gzip.BadGzipFile) as error:
            raise NmtError(f"{path}: cannot read after line {line_number} ({error})") from None


def decode_line(raw: bytes, path, line_number: int) -> str:
    try:
        return raw.rstrip(b"\n").decode("utf-8")
    except UnicodeDecodeError as error:
        raise NmtError(f"{path}:{line_number}: not valid UTF-8 (byte {error.start + 1} of the line)") from None


def read_text_lines(stream, name: str = "<stdin>") -> Iterator[str]:
    """Lines of a byte stream, decoded as strict UTF-8 (an error names the line); only '\\n' ends a line."""
    for line_number, raw in enumerate(stream, start=1):
        yield decode_line(raw, name, line_number)


def read_parallel(src_path: Path, tgt_path: Path) -> Iterator[tuple[str, str]]:
    """Pairs of lines; a corpus whose sides differ in length is an error that names both files and counts."""
    src_lines, tgt_lines = read_lines(src_path), read_lines(tgt_path)
    count = 0
    for src_line in src_lines:
        tgt_line = next(tgt_lines, None)
        if tgt_line is None:
            raise NmtError(f"{src_path} has more lines than {tgt_path} ({tgt_path} ends after {count} lines)")
        count += 1
        yield src_line, tgt_line
    if next(tgt_lines, None) is not None:
        raise NmtError(f"{tgt_path} has more lines than {src_path} ({src_path} ends after {count} lines)")


def normalize(line: str) -> str:
    """Unicode NFC, control characters removed, whitespace runs folded to one space, ends stripped."""
    if not line.isascii():
        line = unicodedata.normalize("NFC", line)  # a no-op check, fast, on text already in NFC
        line = _control_characters().sub("", line)
    elif not line.isprintable():
        line = _control_characters().sub("", line)
    # str.split() splits at exactly the characters regex \s matches (str.isspace()), and is several times faster.
    return " ".join(line.split())


@functools.cache
def _control_characters() -> re.Pattern:
    """A character class of the invisible noise in corpora: Cc controls that are not whitespace (whitespace is folded
    instead), and Cf format characters other than the joiners scripts need (ZWNJ, ZWJ). Built once, from the
    running Python's Unicode tables (a regex is ~50x faster than testing each character in Python)."""
    ranges: list[list[int]] = []
    for code_point in range(sys.maxunicode + 1):
        ch = chr(code_point)
        category = unicodedata.category(ch)
        if (category == "Cc" and not ch.isspace()) or (category == "Cf" and ch not in "\u200c\u200d"):
            if ranges and ranges[-1][1] == code_point - 1:
                ranges[-1][1] = code_point
            else:
                ranges.append([code_point, code_point])
    return re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]")


class CleaningReport:
    """Counts of kept and dropped training pairs, per reason."""

    def __init__(self):
        self.kept = 0
        self.dropped: Counter[str] = Counter()

    def as_dict(self) -> dict:
        return {"kept": self.kept, "dropped": dict(self.dropped)}


def clean_text_pair(src: str, tgt: str, options: CleaningOptions, report: CleaningReport) -> tuple[str, str] | None:
    """First cleaning pass, on characters: normalize, drop empty and over-long pairs."""
    src, tgt = normalize(src), normalize(tgt)
    if not src or not tgt:
        report.dropped["empty"] += 1
        return None
    if len(src) > options.max_chars or len(tgt) > options.max_chars:
        report.dropped["too_long"] += 1
        return None
    return src, tgt


def keep_token_pair(src_len: int, tgt_len: int, options: CleaningOptions, report: CleaningReport) -> bool:
    """Second cleaning pass, on SentencePiece pieces: the length limit and the length ratio."""
    if src_len > options.max_tokens or tgt_len > options.max_tokens:
        report.dropped["too_long"] += 1
        return False
    longer, shorter = max(src_len, tgt_len), max(min(src_len, tgt_len), 1)
    if longer > options.ratio_min_tokens and longer / shorter > options.max_ratio:
        report.dropped["ratio"] += 1
        return False
    report.kept += 1
    return True
