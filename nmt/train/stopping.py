"""SIGINT and SIGTERM during training (Ctrl-C, a scheduler's preemption): noted, not acted on at once. The trainer
stops at its next update, once every rank knows (a stop decided by one rank alone would leave the others waiting in
a collective), and saves a checkpoint; a second signal acts at once (the handlers before are back)."""

from __future__ import annotations

import signal


class StopSignals:
    def __init__(self):
        self.received: str | None = None  # the name of the signal that asked for a stop
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._note)
        except ValueError:  # not the main thread: signals stay as they are
            self._previous = {}
        return self

    def _note(self, signum, frame) -> None:
        self.received = signal.Signals(signum).name
        signal.signal(signum, self._previous[signum])

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
