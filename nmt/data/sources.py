"""Where one side of a corpus comes from, and its extraction to plain text with one sentence per line.

A side is a file (plain, gzipped, or an SGML test set) or a member of a tar archive (itself possibly gzipped, and
the member possibly gzipped or SGML, as WMT ships them). Archives are read as streams, once each, whatever the
number of members wanted from them: the 0.7-2.6 GB WMT archives are never unpacked whole nor read twice.
Lines are copied as bytes; UTF-8 is checked later, where a bad line can be reported or dropped and counted.
"""

from __future__ import annotations

import gzip
import re
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from nmt.atomic import atomic_write
from nmt.errors import NmtError

# progress(description, done, total, unit): the CLI draws it with Rich.
Progress = Callable[..., None]

_SEGMENT = re.compile(rb"<seg[^>]*>(.*?)</seg>", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    file: str  # a recipe's file name (downloaded) or, for your own corpora, a path
    member: str | None = None  # a path inside the tar archive `file`

    @property
    def inner_name(self) -> str:
        return self.member or self.file

    @property
    def is_sgml(self) -> bool:
        return self.inner_name.endswith(".sgm")

    @property
    def is_gzip(self) -> bool:
        return self.inner_name.endswith(".gz")

    @property
    def needs_extraction(self) -> bool:
        """Plain local text is read where it is; anything else becomes a plain text file first."""
        return self.member is not None or self.is_sgml or self.is_gzip

    def extracted_name(self) -> str:
        """A file name for the extracted text, unique per source."""
        inner = self.inner_name.removesuffix(".gz").removesuffix(".sgm")
        stem = Path(self.file).name if self.member is None else f"{Path(self.file).name}/{inner}"
        return stem.replace("/", "__") + ".txt"


def sgml_segments(lines: Iterable[bytes], where: str) -> Iterable[bytes]:
    """The text of each <seg> of a WMT SGML file, in order, as sacreBLEU reads them (no entity unescaping)."""
    for number, line in enumerate(lines, start=1):
        for match in _SEGMENT.finditer(line):
            segment = match.group(1).strip()
            try:
                segment.decode("utf-8")
            except UnicodeDecodeError:
                raise NmtError(f"{where}:{number}: not valid UTF-8") from None
            yield segment


def _write_text(stream: BinaryIO, source: Source, dest: Path, where: str) -> None:
    """Plain text of `stream` (gunzipped, or the segments of SGML) to `dest`, atomically."""
    try:
        with atomic_write(dest, "wb") as out:
            if source.is_gzip:
                stream = gzip.GzipFile(fileobj=stream, mode="rb")
            if source.is_sgml:
                for segment in sgml_segments(stream, where):
                    out.write(segment + b"\n")
            else:
                shutil.copyfileobj(stream, out, 1 << 20)
    except (OSError, EOFError, zlib.error, tarfile.TarError) as error:
        raise NmtError(f"{where}: cannot read ({error})") from None


class _CountingReader:
    """A file wrapper that reports how far into the (compressed) file reading has got."""

    def __init__(self, handle: BinaryIO, report: Callable[[int], None]):
        self.handle, self.report, self.done = handle, report, 0

    def read(self, size: int = -1) -> bytes:
        block = self.handle.read(size)
        self.done += len(block)
        self.report(self.done)
        return block


def extract(path: Path, sources: list[Source], dest_dir: Path, progress: Progress | None = None) -> dict[Source, Path]:
    """Plain text of every source of the local file `path` (all read from one pass over it), under `dest_dir`."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    outputs = {source: dest_dir / source.extracted_name() for source in sources}
    archived = {source.member: source for source in sources if source.member is not None}
    for source in sources:
        if source.member is None:
            with open(path, "rb") as handle:
                _write_text(handle, source, outputs[source], str(path))
    if not archived:
        return outputs

    total = path.stat().st_size
    report = (lambda done: progress(f"extract {path.name}", done, total, "B")) if progress else (lambda done: None)
    remaining = dict(archived)
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=_CountingReader(raw, report), mode="r|*") as archive:
            for member in archive:
                source = remaining.pop(member.name, None)
                if source is None:
                    continue
                stream = archive.extractfile(member)
                if stream is None:
                    raise NmtError(f"{path}: {member.name} is not a regular file")
                _write_text(stream, source, outputs[source], f"{path.name}:{member.name}")
                if not remaining:
                    break  # the rest of the archive holds nothing wanted: stop reading it
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise NmtError(f"{path}: not a readable tar archive ({error})") from None
    report(total)
    if remaining:
        raise NmtError(f"{path}: no member {', '.join(sorted(remaining))} (a different or repackaged archive?)")
    return outputs
