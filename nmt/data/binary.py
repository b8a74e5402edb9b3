"""The binarized format on disk: token arrays and the manifest. No torch here: prepare's workers import this.

A side of a split is two files: NAME.bin, every sentence's token ids (end-of-sentence included) one after another
(uint16 when the vocabulary fits, else int32), and NAME.idx, the int64 offsets of the sentences (n + 1 of them).
Both are memory-mapped: a WMT-sized corpus is never read whole into memory.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from nmt.atomic import atomic_write
from nmt.errors import NmtError
from nmt.vocab import EOS_ID

MANIFEST_FORMAT = "nmt-data"
MANIFEST_VERSION = 1


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


class TokenArrayWriter:
    """Appends sentences to PREFIX.bin/.idx under temporary names; `close()` renames them into place."""

    def __init__(self, prefix: Path, dtype: np.dtype, eos_id: int = EOS_ID):
        self.prefix, self.dtype, self.eos_id = Path(prefix), np.dtype(dtype), eos_id
        self.lengths: list[int] = []
        self._bin = ExitStack()
        self._handle = self._bin.enter_context(atomic_write(self.prefix.with_name(self.prefix.name + ".bin"), "wb"))

    def add(self, token_ids: list[int]) -> None:
        """One sentence; end-of-sentence is appended here."""
        self.add_many([token_ids])

    def add_many(self, sentences: list[list[int]]) -> None:
        """Sentences written with one array conversion: far faster than one per sentence."""
        flat: list[int] = []
        for ids in sentences:
            flat.extend(ids)
            flat.append(self.eos_id)
            self.lengths.append(len(ids) + 1)
        self._handle.write(np.asarray(flat, dtype=self.dtype).tobytes())

    def close(self) -> dict:
        offsets = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=offsets[1:])
        bin_name, idx_name = self.prefix.name + ".bin", self.prefix.name + ".idx"
        self._bin.close()  # NAME.bin into place
        with atomic_write(self.prefix.with_name(idx_name), "wb") as handle:
            offsets.tofile(handle)
        return {"sentences": len(self.lengths), "tokens": int(offsets[-1]), "bin": bin_name, "idx": idx_name}

    def abort(self) -> None:
        """Drop what was written: NAME.bin stays as it was."""
        error = RuntimeError("binarization aborted")
        self._bin.__exit__(type(error), error, None)


class TokenArray:
    """The sentences of one side of one split, memory-mapped."""

    def __init__(self, bin_path: Path, idx_path: Path, dtype: np.dtype):
        for path in (bin_path, idx_path):
            if not path.is_file():
                raise NmtError(f"{path}: file not found (prepare the data again with `nmt prepare`)")
        self.offsets = np.fromfile(idx_path, dtype=np.int64)
        expected = int(self.offsets[-1]) * dtype.itemsize if len(self.offsets) else 0
        if len(self.offsets) == 0 or bin_path.stat().st_size != expected:
            raise NmtError(f"{bin_path}: size does not match its index {idx_path.name} (a damaged dataset)")
        # np.memmap cannot map an empty file; an empty split has nothing to map.
        self.tokens = np.memmap(bin_path, dtype=dtype, mode="r") if expected else np.zeros(0, dtype=dtype)
        self.lengths = np.diff(self.offsets).astype(np.int64)  # end-of-sentence included

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index]:self.offsets[index + 1]]


def load_manifest(data_dir: Path) -> dict:
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise NmtError(_no_manifest(Path(data_dir)))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise NmtError(f"{path}: not a valid JSON manifest") from None
    if not isinstance(manifest, dict):
        raise NmtError(f"{path}: not a manifest (a JSON {type(manifest).__name__}); prepare the data again")
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != MANIFEST_VERSION:
        raise NmtError(f"{path}: data format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                       f"this nmt reads {MANIFEST_FORMAT!r} version {MANIFEST_VERSION}: prepare the data again")
    _check_manifest(manifest, path)
    return manifest


def _no_manifest(data_dir: Path) -> str:
    """What is at DATA_DIR instead of a prepared dataset, and the likely fix."""
    if not data_dir.exists():
        return (f"{data_dir}: no such folder; prepare a dataset into it first (`nmt prepare CORPUS --out "
                f"{data_dir}`) or name the folder `nmt prepare` wrote")
    if not data_dir.is_dir():
        return f"{data_dir}: a file, not a DATA_DIR folder; name the folder `nmt prepare` wrote"
    inside = sorted(str(manifest.parent) for manifest in data_dir.glob("*/manifest.json"))
    if inside:
        return (f"{data_dir}: no manifest.json here, but {', '.join(inside[:3])} "
                f"{'holds' if len(inside) == 1 else 'hold'} a prepared dataset: name "
                f"{'it' if len(inside) == 1 else 'one'} as DATA_DIR")
    return f"{data_dir}: no manifest.json; prepare a dataset there with `nmt prepare CORPUS --out {data_dir}`"


def _check_manifest(manifest: dict, path: Path) -> None:
    """The fields training reads, of the types it reads them as: a damaged manifest is named, not a KeyError."""
    def damaged(what: str) -> NmtError:
        return NmtError(f"{path}: {what} (a damaged manifest; prepare the data again)")

    if manifest.get("token_dtype") not in ("uint16", "int32"):
        raise damaged(f"token_dtype is {manifest.get('token_dtype')!r}, not uint16 or int32")
    if not isinstance(manifest.get("spm_model"), str) or not manifest["spm_model"]:
        raise damaged("spm_model names no file")
    for key in ("src", "tgt"):
        if not isinstance(manifest.get(key), str):
            raise damaged(f"{key} is not a language code")
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise damaged("it lists no splits")
    for name, entry in splits.items():
        sides = [entry.get(side) if isinstance(entry, dict) else None for side in ("src", "tgt")]
        if not all(isinstance(side, dict) and isinstance(side.get("bin"), str) and isinstance(side.get("idx"), str)
                   for side in sides):
            raise damaged(f"split {name!r} does not name its .bin and .idx files")
