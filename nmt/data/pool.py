"""Worker processes for `nmt prepare` that leave Ctrl-C and SIGTERM to the parent."""

from __future__ import annotations

import contextlib
import os
import signal
from multiprocessing import get_context

from nmt.data.binarize import worker_init


@contextlib.contextmanager
def worker_pool(processes: int):
    """Fresh ("spawn") worker processes that leave Ctrl-C to this one: on an interrupt or an error they are stopped
    at once (a shard or a SentencePiece run in progress is abandoned; its temporary files never get a final name)."""
    # Ctrl-C or SIGTERM while the workers start would leave a half-started worker without the data the parent sends
    # it, and its traceback on the terminal: a signal then is only noted, and acted on once every worker has what
    # it needs. (Blocking the signals would not do: the kernel hands them to another thread, and Python runs the
    # handler in the main thread all the same.)
    pool = _start_pool(processes)
    try:
        yield pool
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()


def _start_pool(processes: int):
    noted: list[int] = []
    stopping = (signal.SIGINT, signal.SIGTERM)
    handlers = {number: signal.getsignal(number) for number in stopping}
    for number in stopping:
        if callable(handlers[number]):  # a handler of ours or Python's; an ignored signal stays ignored
            signal.signal(number, lambda signum, frame: noted.append(signum))
    try:
        pool = get_context("spawn").Pool(processes, initializer=worker_init, initargs=(os.getpid(),))
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
    if noted:
        pool.terminate()
        pool.join()
        handler = handlers[noted[0]]
        if callable(handler):
            handler(noted[0], None)  # as if it came now: KeyboardInterrupt (Ctrl-C, or nmt's SIGTERM handler)
        raise KeyboardInterrupt
    return pool
