"""Stamps that make `nmt prepare` idempotent and resumable, like a build system's.

A finished step writes a stamp: the parameters it ran with (inputs' fingerprints and options), the files it made
(with their sizes) and a small JSON result. A rerun skips a step whose stamp has the same parameters and whose files
are still there; any other step runs again, and every step after it that depends on its result sees new parameters.
The stamp is written after the step's files are in place, so an interrupted step simply runs again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from nmt.atomic import write_json


def digest(value) -> str:
    """A short, stable fingerprint of JSON-able parameters."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def file_fingerprint(path: Path) -> str:
    """Size and modification time: how `make` tells a changed input, without reading gigabytes to hash them."""
    stat = Path(path).stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


class Stamps:
    """Stamps in `folder`; files under `root` are recorded relative to it, so a moved DATA_DIR stays done."""

    def __init__(self, folder: Path, root: Path):
        self.folder, self.root = Path(folder), Path(root).resolve()

    def _name(self, path: Path) -> str:
        path = Path(path).resolve()
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def _path(self, step: str) -> Path:
        return self.folder / f"{step.replace('/', '_')}.json"

    def done(self, step: str, params: dict) -> dict | None:
        """The result of `step` if it finished with exactly `params` and its files are still as it left them."""
        path = self._path(step)
        try:
            stamp = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if stamp.get("params") != json.loads(json.dumps(params, default=str)):
            return None
        for name, fingerprint in stamp.get("outputs", {}).items():
            path = self.root / name  # an absolute name stays absolute
            if not path.is_file() or file_fingerprint(path) != fingerprint:
                return None
        return stamp.get("result", {})

    def record(self, step: str, params: dict, outputs: list[Path], result: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = {"step": step, "params": params,
                 "outputs": {self._name(path): file_fingerprint(path) for path in outputs}, "result": result}
        write_json(self._path(step), stamp, indent=1)

    def forget(self, step: str) -> None:
        self._path(step).unlink(missing_ok=True)
