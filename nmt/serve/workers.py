"""Model workers in processes of their own, each with its own copy of the model.

Worker threads in one process share the model but also the interpreter lock: the search's Python between operations
runs one thread at a time, and the HTTP side waits on it too. Worker processes do not. Each loads the model from the
same EngineSpec with its share of the CPU threads, at a lower priority than the server process, and ignores SIGINT
and SIGTERM: the server process drains and then stops them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor

from nmt.config import SearchConfig
from nmt.engines.base import Translation
from nmt.engines.spec import EngineSpec, load_engine

_engine = None  # in a worker process: its translator
# Worker processes run at a lower priority than the server's own, so that taking requests in and answering them is
# never starved of CPU by decoding: at 64 clients on 2 cores, 106.5 sentences/s with it against 87.7 without.
WORKER_NICENESS = 10


def _start(spec: EngineSpec, threads: int) -> None:
    global _engine
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if WORKER_NICENESS and hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    torch.set_num_threads(threads)
    _engine = load_engine(spec)


def _translate(texts: list[str], prefixes: list[str] | None, search: SearchConfig | None,
               record_attention: bool | None, constraints: list[list[str]] | None) -> list[list[Translation]]:
    return _engine.translate(texts, prefixes, search=search, record_attention=record_attention,
                             constraints=constraints)


def _ready(seconds: float) -> None:
    time.sleep(seconds)


class ProcessWorkers:
    """`translate(texts, prefixes, search, record_attention, constraints)` run in one of `count` processes."""

    def __init__(self, spec: EngineSpec, count: int, threads_each: int):
        # spawn, not fork: a forked child of a process whose OpenMP threads have started can hang
        self.pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                                        initargs=(spec, threads_each))
        # Start every process now, so that the first requests do not wait for a model to load: `count` tasks
        # that overlap need `count` processes.
        for future in [self.pool.submit(_ready, 0.5) for _ in range(count)]:
            future.result()

    def translate(self, texts: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None) -> list[list[Translation]]:
        return self.pool.submit(_translate, texts, prefixes, search, record_attention, constraints).result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
