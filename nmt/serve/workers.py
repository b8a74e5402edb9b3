"""Model workers in processes of their own, each with its own copy of the model.

Worker threads in one process share the model but also the interpreter lock: the search's Python between operations
runs one thread at a time, and the HTTP side waits on it too. Worker processes do not. Each loads the model from the
same EngineSpec with its share of the CPU threads, at a lower priority than the server process, and ignores SIGINT
and SIGTERM: the server process drains and then stops them. A worker dies with the server (kill -9 included: the
kernel's parent-death signal), and a worker that dies alone (the OOM killer) is replaced: its batch is tried once
more on the new processes, and the restart counted.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from nmt.config import SearchConfig
from nmt.engines.base import Translation
from nmt.engines.spec import EngineSpec, load_engine
from nmt.errors import NmtError
from nmt.serve.abandoned import Abandoned, attach, shared_ring

_engine = None  # in a worker process: its translator
# Worker processes run at a lower priority than the server's own, so that taking requests in and answering them is
# never starved of CPU by decoding: at 64 clients on 2 cores, 106.5 sentences/s with it against 87.7 without.
WORKER_NICENESS = 10


class WorkerLost(NmtError):
    """A worker process died while decoding and its replacement failed too: the request may be sent again."""


def _die_with(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux's PR_SET_PDEATHSIG); elsewhere nothing."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was set
        os._exit(1)


def _start(spec: EngineSpec, threads: int, parent: int, abandoned_ring) -> None:
    global _engine
    import torch

    _die_with(parent)
    attach(abandoned_ring)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if WORKER_NICENESS and hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    torch.set_num_threads(threads)
    _engine = load_engine(spec)


def _translate(texts: list[str], prefixes: list[str] | None, search: SearchConfig | None,
               record_attention: bool | None, constraints: list[list[str]] | None,
               given_up: Abandoned | None) -> list[list[Translation]]:
    return _engine.translate(texts, prefixes, search=search, record_attention=record_attention,
                             constraints=constraints, abandoned=given_up)


def _ready(seconds: float) -> None:
    time.sleep(seconds)


class ProcessWorkers:
    """`translate(texts, prefixes, search, record_attention, constraints)` run in one of `count` processes."""

    def __init__(self, spec: EngineSpec, count: int, threads_each: int, on_restart=None):
        self.spec, self.count, self.threads_each = spec, count, threads_each
        self.on_restart = on_restart  # called once per replacement of the processes (a metric)
        self.restarting = threading.Lock()
        self.replacing = False  # while new processes load their model after one died: nothing can decode
        self.pool = self._started()

    def _started(self) -> ProcessPoolExecutor:
        # spawn, not fork: a forked child of a process whose OpenMP threads have started can hang
        pool = ProcessPoolExecutor(self.count, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                                   initargs=(self.spec, self.threads_each, os.getpid(), shared_ring()))
        # Start every process now, so that the first requests do not wait for a model to load: `count` tasks
        # that overlap need `count` processes.
        for future in [pool.submit(_ready, 0.5) for _ in range(self.count)]:
            future.result()
        return pool

    def translate(self, texts: list[str], prefixes: list[str] | None = None, search: SearchConfig | None = None,
                  record_attention: bool | None = None,
                  constraints: list[list[str]] | None = None,
                  abandoned: Abandoned | None = None) -> list[list[Translation]]:
        for attempt in range(2):
            pool = self.pool
            try:
                return pool.submit(_translate, texts, prefixes, search, record_attention, constraints,
                                   abandoned).result()
            except BrokenProcessPool:
                self._replace(pool)
        raise WorkerLost("a model worker died while decoding this request and again after its restart")

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """New processes for a pool one of whose processes died (the pool is unusable then), once per breakage."""
        with self.restarting:
            if self.pool is not broken:  # another batch replaced it already
                return
            # The executor ends a broken pool's other processes with SIGTERM, which workers ignore (they finish
            # their batch when the server drains): they would live on, and the interpreter's exit would wait for
            # them forever. Kill them.
            for process in list(getattr(broken, "_processes", {}).values()):
                process.kill()
            broken.shutdown(wait=False, cancel_futures=True)
            self.replacing = True
            try:
                self.pool = self._started()
            finally:
                self.replacing = False
            if self.on_restart is not None:
                self.on_restart()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
