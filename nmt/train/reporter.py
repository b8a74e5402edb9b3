"""How a training run is shown: the trainer calls a `TrainReporter` and knows nothing of the display (the CLI's draws
a Rich progress bar; `NullReporter` shows nothing)."""

from __future__ import annotations

from typing import Protocol


class TrainReporter(Protocol):
    def start(self, first_update: int, total_updates: int | None, info: dict) -> None: ...
    def advance(self, update: int) -> None: ...
    def record(self, record: dict) -> None: ...
    def message(self, text: str) -> None: ...
    def stop(self) -> None: ...


class NullReporter:
    def start(self, first_update, total_updates, info): pass
    def advance(self, update): pass
    def record(self, record): pass
    def message(self, text): pass
    def stop(self): pass
