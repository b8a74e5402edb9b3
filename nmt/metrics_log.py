"""metrics.jsonl, written by the trainer and read back: what `--resume`, `average-checkpoints --best`, pruning and
`nmt report` take from it.

The trainer appends one JSON object per line. A run killed mid-write leaves a cut last line, and a file edited or
damaged by hand may hold anything: a bare number, a record without its update, bytes that are not UTF-8, a string
where a number belongs. Such lines are skipped (and counted) rather than trusted, and a value of the wrong type is
dropped from its record, so no reader ever meets anything but {"update": int, name: number, ...}.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from nmt.atomic import write_text


@dataclass
class MetricsLog:
    records: list[dict] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)  # line numbers that were not records

    def valid_losses(self) -> dict[int, float]:
        """update -> validation loss, of the records that have one."""
        return {record["update"]: record["valid_loss"] for record in self.records if "valid_loss" in record}


def parse_record(line: str) -> dict | None:
    """The record a line holds, or None where it holds none. Values that are not finite numbers are dropped (but
    for `pairs`, the numbers of each pair)."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    update = value.get("update")
    if isinstance(update, bool) or not isinstance(update, int) or update < 0:
        return None
    record = _numbers(value)
    record["update"] = update
    if isinstance(value.get("pairs"), dict):  # a multilingual run's validation: each pair's figures
        record["pairs"] = {str(name): _numbers(figures) for name, figures in value["pairs"].items()
                           if isinstance(figures, dict)}
    return record


def _numbers(value: dict) -> dict:
    """The entries of `value` that are finite numbers."""
    return {key: item for key, item in value.items()
            if isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item)}


def read_metrics(path: Path) -> MetricsLog:
    log = MetricsLog()
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            record = parse_record(raw.decode("utf-8", errors="replace"))
            if record is None:
                log.skipped.append(number)
            else:
                log.records.append(record)
    return log


def append_record(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def keep_records_up_to(path: Path, update: int) -> None:
    """A resumed run continues the log from its checkpoint's update: records a crash left beyond it go (and lines
    that are not records), so the log reads as one uninterrupted run."""
    if not Path(path).is_file():
        return
    kept = []
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            record = parse_record(line)
            if record is not None and record["update"] <= update:
                kept.append(line + "\n")
    write_text(path, "".join(kept))
