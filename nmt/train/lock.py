"""One training run per save dir: an advisory lock on SAVE_DIR/.lock, held while the run lives.

Two runs writing one save dir would interleave checkpoints and metrics and each resume from the other's state. The
lock is `flock`, so the kernel releases it when the process ends in any way (kill -9 included): a stale lock file
never blocks a later run. The file holds the owner's pid and host, for the message.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from nmt.errors import NmtError


class SaveDirLock:
    def __init__(self, save_dir: Path):
        self.path = Path(save_dir) / ".lock"
        self.handle = None
        self.created: Path | None = None  # the outermost folder acquire() created, if any

    def acquire(self) -> "SaveDirLock":
        missing = [folder for folder in (self.path.parent, *self.path.parent.parents) if not folder.exists()]
        self.created = missing[-1] if missing else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise NmtError(f"{self.path.parent} is in use by another nmt train ({owner}); wait for it to end or "
                           "choose another --save-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self, abandoned: bool = False) -> None:
        """Unlock. ABANDONED: the run ended before writing anything; the folders acquire() created go too."""
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        if abandoned and self.created is not None and not any(p.name != ".lock" for p in self.path.parent.iterdir()):
            self.path.unlink(missing_ok=True)
            for folder in (self.path.parent, *self.path.parent.parents):
                folder.rmdir()
                if folder == self.created:
                    break
            self.created = None

    def __del__(self):
        self.release()
