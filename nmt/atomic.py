"""Writing outputs so that nobody sees half of one: every file and folder nmt writes goes through here.

A regular file (or a new path) is written under a temporary name beside it and renamed over it once complete, so the
path holds the old file or the new one, never a mix; a failure of any kind (disk full, Ctrl-C, an exception in the
code producing the data) removes the temporary. What is not a regular file, a terminal, `/dev/null`, a FIFO another
program reads, is written in place: replacing it would swap the system's device for a plain file, or leave the reader
with nothing. A symbolic link stays a link: the file it points to is the one replaced.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import stat
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from nmt.errors import NmtError

# Set by the command line's signal handler (nmt.cli.app): an interruption that code along the way swallowed (a
# library's own error handling, a finalizer) must still keep a file from being put in place.
interrupted = threading.Event()


def check_output_file(path: Path, what: str = "--output") -> Path:
    """Refuse, before any work is done, an output path that cannot become a file: a folder, a path under a file.
    Missing folders on the way are fine: they are made when the file is written (as `mkdir -p` would)."""
    path = Path(path)
    if path.is_dir():
        raise NmtError(f"{what} {path}: is a folder; name a file to write")
    check_parent(path, what)
    return path


def check_parent(path: Path, what: str = "") -> None:
    """Refuse a path whose nearest existing ancestor is not a folder (a file, a device): nothing can be made there."""
    ancestor = next(folder for folder in Path(os.path.abspath(path)).parents if folder.exists())
    if not ancestor.is_dir():
        raise NmtError(f"{what + ' ' if what else ''}{path}: {ancestor} is a file, not a folder")


def readable_by_all(path: Path) -> None:
    """Give PATH the mode a file written with open() gets (0666 less the umask), where a library chose a narrower
    one."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def is_special(path: Path) -> bool:
    """True for what exists and is neither a regular file nor a folder: a device, a FIFO, a socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def temporary_name(path: Path, suffix: str = "tmp") -> Path:
    """The hidden sibling a file is written under before it is renamed into place."""
    path = Path(os.path.abspath(path))
    return path.with_name(f".{path.name}.{suffix}")


@contextmanager
def atomic_write(path: Path, mode: str = "w", *, encoding: str | None = "utf-8", newline: str | None = None,
                 durable: bool = False) -> Iterator[IO]:
    """A handle to write `path` through: the file appears whole when the block ends, or not at all.

    durable: fsync before the rename, so that a power cut cannot leave a renamed but empty file (checkpoints)."""
    path = Path(path)
    kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
    if is_special(path):
        with open(path, mode, **kwargs) as handle:
            yield handle
        return
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    if target.is_dir():
        raise NmtError(f"{path}: is a folder; name a file to write")
    tmp = temporary_name(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = None
    try:
        handle = open(tmp, mode, **kwargs)
        yield handle
        handle.flush()
        if durable:
            os.fsync(handle.fileno())
        handle.close()
        if interrupted.is_set():
            raise KeyboardInterrupt
        os.replace(tmp, target)
    except OSError as error:
        # Name the file the user asked for, not the hidden temporary (a failed write names none at all).
        if error.filename is None or error.filename == str(tmp):
            error.filename = str(path)
        raise
    finally:
        if handle is not None and not handle.closed:
            try:
                handle.close()
            except OSError:
                pass  # the error that brought us here is the one to report
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w", newline="") as handle:
        handle.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_json(path: Path, value, indent: int | None = 2) -> None:
    write_text(path, json.dumps(value, indent=indent, ensure_ascii=False, default=str) + "\n")


def link_or_copy(source: Path, dest: Path) -> None:
    """`dest` becomes the same file as `source` (a hard link, renamed into place; a copy where links are not
    supported)."""
    tmp = temporary_name(dest)
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(out_dir: Path) -> Iterator[Path]:
    """A fresh hidden folder to fill; when the block ends it replaces `out_dir` (which the caller has agreed may be
    replaced), and on any failure it is removed. Whoever reads `out_dir` sees the old folder or the new one."""
    out_dir = Path(os.path.abspath(out_dir))
    partial = temporary_name(out_dir, "partial")
    old = temporary_name(out_dir, "old")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.mkdir()
    try:
        yield partial
        if interrupted.is_set():
            raise KeyboardInterrupt
        if not out_dir.exists():
            os.rename(partial, out_dir)
        elif _exchange(partial, out_dir):  # one step: the new folder in place, the old one under `partial`
            pass
        else:  # two renames; between them (microseconds) the old folder is at `old`
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out_dir, old)
            os.rename(partial, out_dir)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
