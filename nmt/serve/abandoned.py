"""Which queued sentences nobody waits for any more (their request timed out or its client left), readable by the
search while their batch decodes, in the server's process and in its worker processes.

Every sentence the batcher takes gets a serial number. Giving up on one writes its serial into a ring of slots in
shared memory (slot = serial mod the ring's size); a batch's decoding asks, once a step, whether its sentences'
serials are there. A slot holds the serial itself, not a flag, so that a slot reused by a later sentence can never
make a wanted sentence look abandoned: at worst an old abandonment is forgotten, and that sentence decodes to its
end as it would have without this.
"""

from __future__ import annotations

import itertools
import multiprocessing
from dataclasses import dataclass

RING = 4096
_ring = None  # this process's view of the shared slots: made by the server, handed to its worker processes
_serials = itertools.count()


def shared_ring():
    """The ring of this process (made on first use), to hand to worker processes when they start."""
    global _ring
    if _ring is None:
        _ring = multiprocessing.get_context("spawn").RawArray("q", [-1] * RING)
    return _ring


def attach(ring) -> None:
    """In a worker process: read the server's ring."""
    global _ring
    _ring = ring


def next_serial() -> int:
    return next(_serials)


def give_up(serial: int) -> None:
    shared_ring()[serial % RING] = serial


@dataclass(frozen=True)
class Abandoned:
    """A batch's question, sent along with it (to a worker process, pickled): which of its sentences (positions in
    the batch) nobody waits for any more."""

    serials: tuple[int, ...]

    def __call__(self) -> set[int]:
        ring = _ring if _ring is not None else shared_ring()
        return {position for position, serial in enumerate(self.serials) if ring[serial % RING] == serial}
