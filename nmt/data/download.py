"""Resumable, verified downloads with progress, and mirrors (a local folder or an http(s) URL).

A file is fetched to NAME.part, resumed with an HTTP Range request after a dropped connection, verified against its
published size and SHA-256, and only then renamed to NAME: a file under its final name is always complete.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nmt.errors import NmtError

CHUNK = 1 << 16

# progress(file_name, bytes_done, bytes_total_or_None): called as bytes arrive; the CLI draws it with Rich.
ProgressHook = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class RemoteFile:
    name: str  # the upstream file name, also its name in a mirror
    url: str
    sha256: str | None = None
    size: int | None = None
    md5: str | None = None  # where only an MD5 is published (sacreBLEU's list of WMT test sets)


def digests_of(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file, in one read."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha256.update(block)
            md5.update(block)
    return sha256.hexdigest(), md5.hexdigest()


def verify(path: Path, remote: RemoteFile, source: str) -> str:
    """Raise NmtError if `path` does not have the published size and checksums; return its SHA-256."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise NmtError(f"{remote.name} from {source}: size {size} bytes, expected {remote.size}")
    sha256, md5 = digests_of(path)
    for kind, actual, expected in (("SHA-256", sha256, remote.sha256), ("MD5", md5, remote.md5)):
        if expected is not None and actual != expected:
            raise NmtError(f"{remote.name} from {source}: {kind} {actual[:16]}..., expected {expected[:16]}... "
                           "(a corrupt or different file; use --no-verify only for a mirror of repackaged files)")
    return sha256


def fetch(remote: RemoteFile, dest_dir: Path, mirror: str | None = None, verify_checksum: bool = True,
          progress: ProgressHook | None = None, retries: int = 5, backoff: float = 1.0) -> Path:
    """Return a local, verified copy of `remote`, downloading it into `dest_dir` unless it is already there."""
    return fetch_verified(remote, dest_dir, mirror, verify_checksum, progress, retries, backoff)[0]


def fetch_verified(remote: RemoteFile, dest_dir: Path, mirror: str | None = None, verify_checksum: bool = True,
                   progress: ProgressHook | None = None, retries: int = 5,
                   backoff: float = 1.0) -> tuple[Path, str]:
    """`fetch`, also returning the file's SHA-256 (computed while verifying, so the file is read once).

    `mirror` replaces the upstream address: a folder is read in place (after verification), a URL gets the same
    file name appended.
    """
    checked = remote if verify_checksum else RemoteFile(remote.name, remote.url)  # sizes and sums skipped
    if mirror and not _is_url(mirror):
        local = Path(mirror).expanduser() / remote.name
        if not local.is_file():
            raise NmtError(f"mirror {mirror}: {remote.name} not found there")
        return local, verify(local, checked, str(local))

    url = f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / remote.name
    if dest.is_file():
        try:
            return dest, verify(dest, checked, str(dest))
        except NmtError:
            dest.unlink()  # a stale or foreign file under the name: fetch it anew
    partial = dest_dir / (remote.name + ".part")
    _download_with_retries(url, partial, remote, progress, retries, backoff)
    try:
        sha256 = verify(partial, checked, url)
    except NmtError:
        partial.unlink(missing_ok=True)  # never keep a corrupt file to be resumed from
        raise
    os.replace(partial, dest)
    return dest, sha256


def _is_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


def _download_with_retries(url, partial: Path, remote: RemoteFile, progress, retries: int, backoff: float) -> None:
    for attempt in range(retries + 1):
        try:
            _download_once(url, partial, remote, progress)
            return
        except urllib.error.HTTPError as error:
            if error.code == 416:  # the range starts at the end: the partial file is already whole
                return
            if error.code < 500 or attempt == retries:
                raise NmtError(f"{url}: HTTP {error.code} {error.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            if attempt == retries:
                reason = getattr(error, "reason", None) or error
                raise NmtError(f"{url}: download failed after {retries + 1} attempts ({reason}); without a "
                               "network, give a local copy of the files with --mirror DIR_OR_URL") from None
        time.sleep(backoff * 2 ** attempt)


def _download_once(url: str, partial: Path, remote: RemoteFile, progress) -> None:
    done = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "nmt"})
    if done:
        request.add_header("Range", f"bytes={done}-")
    with urllib.request.urlopen(request, timeout=60) as response:
        if done and response.status != 206:
            done = 0  # the server ignored the Range header: start over
        total = remote.size
        if total is None and response.headers.get("Content-Length"):
            total = done + int(response.headers["Content-Length"])
        expected_more = int(response.headers["Content-Length"]) if response.headers.get("Content-Length") else None
        received = 0
        with open(partial, "ab" if done else "wb") as handle:
            while block := response.read(CHUNK):
                handle.write(block)
                received += len(block)
                if progress:
                    progress(remote.name, done + received, total)
        if expected_more is not None and received < expected_more:
            raise ConnectionError(f"connection closed after {done + received} of {done + expected_more} bytes")
