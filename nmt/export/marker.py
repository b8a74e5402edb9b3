"""What marks a folder as an export of nmt, and when `--force` may replace one.

Every exporter writes `nmt.json` into its folder: the format, the exporter, the checkpoint it came from. `--force`
replaces only a folder that holds one, so a mistyped OUT_DIR (the run's save dir, a home folder) is refused instead
of deleted, and never the folder that holds the checkpoint being exported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nmt.atomic import check_parent, write_json
from nmt.errors import NmtError

MARKER = "nmt.json"
FORMAT = "nmt-export"


def write_export_marker(folder: Path, exporter: str, checkpoint: Path, facts: dict) -> None:
    write_json(Path(folder) / MARKER, {"format": FORMAT, "exporter": exporter,
                                       "source_checkpoint": str(checkpoint), **facts}, indent=1)


def is_export(folder: Path) -> bool:
    """A folder an nmt exporter wrote (the marker is there and says so; older exports named only their source)."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and (marker.get("format") == FORMAT or "source_checkpoint" in marker)


def check_export_folder(checkpoint: Path, out_dir: Path, force: bool) -> None:
    """Refuse, before any work, an OUT_DIR that the export must not write or replace."""
    out_dir = Path(out_dir)
    if not Path(checkpoint).is_file():
        from nmt.checkpoint import describe_missing_checkpoint
        raise NmtError(describe_missing_checkpoint(checkpoint, takes_engine=False))
    check_parent(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir():
        raise NmtError(f"{out_dir} exists and is not a folder; name a new folder for the export")
    if not force:
        raise NmtError(f"{out_dir} exists; pass --force to replace it")
    source = Path(os.path.realpath(checkpoint))
    if Path(os.path.realpath(out_dir)) in source.parents:
        raise NmtError(f"{out_dir} holds the checkpoint being exported ({checkpoint}); --force would delete it: "
                       "name another folder")
    if not is_export(out_dir):
        raise NmtError(f"{out_dir} is not an export of nmt (no {MARKER} there); --force replaces only an earlier "
                       "export: name a new folder")
