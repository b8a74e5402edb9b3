"""An output that survives its run being stopped: `nmt translate --input BIG --output OUT --resume`.

Without --resume, OUT appears whole at the end or not at all, so a run stopped after hours keeps nothing. With it,
the output grows window by window in OUT.partial; after each window is on disk (fsync), OUT.partial.json records how
many input lines and bytes are done, with what identifies the run (the input file's size and modification time, the
model and every setting that shapes the output). Run the same command again and it truncates OUT.partial to the
recorded size (a window cut short by the stop is dropped), skips the lines done and goes on; at the end OUT.partial
becomes OUT. A record made by another input or other settings is refused rather than continued.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from nmt.atomic import write_json
from nmt.errors import NmtError


class ResumableOutput:
    def __init__(self, output: Path, identity: dict):
        self.output = Path(output)
        self.partial = self.output.with_name(self.output.name + ".partial")
        self.record = self.output.with_name(self.output.name + ".partial.json")
        self.identity = json.loads(json.dumps(identity, default=str))  # as the record will read back
        self.binary = None
        self.text = None
        self.done = 0  # input lines the interrupted run had finished

    def open(self) -> int:
        """Open OUT.partial where the last run left it; returns the number of input lines already done."""
        done, size = 0, 0
        if self.record.exists():
            try:
                state = json.loads(self.record.read_text(encoding="utf-8"))
                done, size, identity = int(state["lines"]), int(state["bytes"]), state["identity"]
            except (OSError, ValueError, KeyError, TypeError):
                raise NmtError(f"{self.record}: not a record of an interrupted run (damaged?); remove it and "
                               f"{self.partial} to start again") from None
            if identity != self.identity:
                changed = sorted(k for k in set(identity) | set(self.identity) if identity.get(k) !=
                                 self.identity.get(k))
                raise NmtError(f"{self.partial} was written from another input or with other settings "
                               f"({', '.join(changed)} differ); remove it and {self.record.name} to start again")
            if not self.partial.exists() or self.partial.stat().st_size < size:
                raise NmtError(f"{self.partial} is shorter than {self.record.name} records; remove both to start "
                               "again")
        elif self.partial.exists():
            raise NmtError(f"{self.partial} exists without {self.record.name}: not a run this command can continue; "
                           "remove it")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.binary = open(self.partial, "r+b" if self.partial.exists() else "wb")
        self.binary.truncate(size)
        self.binary.seek(size)
        self.text = io.TextIOWrapper(self.binary, encoding="utf-8", newline="\n", write_through=True)
        self.done = done
        return done

    def write(self, text: str) -> None:
        self.text.write(text)

    def flush(self) -> None:
        self.text.flush()

    def mark(self, lines: int) -> None:
        """Everything written so far is the output of the first LINES input lines: make it durable and record it."""
        self.text.flush()
        os.fsync(self.binary.fileno())
        write_json(self.record, {"lines": lines, "bytes": self.binary.tell(), "identity": self.identity}, indent=1)

    def finish(self) -> None:
        """The run is complete: OUT.partial becomes OUT."""
        self.text.flush()
        os.fsync(self.binary.fileno())
        self.text.close()
        os.replace(self.partial, self.output)
        self.record.unlink(missing_ok=True)

    def close(self, exc_type=None, exc=None, traceback=None) -> None:
        """Stopped before the end (an ExitStack's exit callback): OUT.partial and its record stay for the next run,
        and an interruption says so."""
        if self.text is not None and not self.text.closed:
            self.text.close()
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt) and self.record.exists():
            lines = json.loads(self.record.read_text(encoding="utf-8"))["lines"]
            raise KeyboardInterrupt(f"{self.partial} holds the translations of the first {lines:,} lines; the same "
                                    "command goes on from there") from None


def input_identity(path: Path) -> dict:
    """What tells one input file from another, cheaply: its absolute path, size and modification time."""
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": stat.st_size, "modified_ns": stat.st_mtime_ns}
