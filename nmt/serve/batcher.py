"""Dynamic batching: the sentences of concurrent requests, gathered into batches for the model workers.

Requests queue their sentences and wait on a future per sentence. Each worker thread (one, or several side by side,
each decoding here or handing its batch to a worker process) takes sentences request by request in turn (round
robin), so that a document of hundreds of sentences does not hold up the one-sentence requests that came after it:
while other requests are open, one request gives a batch at most `share` sentences, and is decoded in one batch at
a time (the other workers serve the other requests meanwhile, as a worker of their own would). A batch grows up to
`max_tokens` source pieces, and while other requests are open (arrived and not yet queued) waits up to `wait_s` for
them too; a lone client never waits. It then decodes the sentences that share
search options together (the Translator sorts them by length and splits them by its own token budget), and hands
each answer back to its future. A sentence's translation does not depend on the batch it was in (the search masks
padding, and every sentence ends on its own), so batching changes nothing beyond floating-point rounding.

A sentence whose request gave up (deadline, client gone) is cancelled where it waits: the worker skips it; one
already being decoded leaves its batch at the search's next step (nmt.serve.abandoned), so that work nobody waits
for does not hold up the requests behind it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from nmt.config import SearchConfig
from nmt.serve.abandoned import Abandoned, give_up, next_serial


class Overloaded(Exception):
    """The queue cannot take a request's sentences now."""


@dataclass(frozen=True)
class Options:
    """What decides how a sentence is decoded; sentences with equal options share a batch."""

    search: SearchConfig
    attention: bool = False
    language: str | None = None  # the token each text starts with: a multilingual model's target language (>>de<<)

    def key(self) -> tuple:
        return (tuple(sorted(vars(self.search).items())), self.attention, self.language)


@dataclass
class Job:
    text: str
    prefix: str
    options: Options
    tokens: int  # source pieces, for the batch budget
    request: int = 0  # which submit() it came from
    constraints: list[str] = field(default_factory=list)  # target phrases the translation must contain
    future: Future = field(default_factory=Future)
    counted: bool = True  # still counted against the queue's limit (until taken or cancelled)
    serial: int = field(default_factory=next_serial)  # names it to the search while it decodes (abandoned.py)


# What the worker reports after each batch: sentences, target pieces.
BatchObserver = Callable[[int, int], None]


class Batcher:
    """Worker threads decoding queued sentences in batches. `translate(texts, prefixes, search, attention,
    constraints)` is a Translator's (both engines'); `count_tokens(text)` sizes a sentence for the budget."""

    def __init__(self, translate, count_tokens: Callable[[str], int], max_tokens: int, wait_s: float, max_queue: int,
                 on_batch: BatchObserver | None = None, workers: int = 1, share: int = 4):
        self.translate = translate
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.share = share
        self._pending: OrderedDict[int, deque[Job]] = OrderedDict()  # request -> its queued sentences, in turn
        self._in_batches: dict[int, int] = {}  # request -> batches of it being decoded now
        self._stops = 0  # stops asked of the workers by close(), taken once nothing is queued
        self._waiting = 0  # sentences queued and not yet taken
        self._open = 0  # requests between request_opened() and request_closed()
        self._requests = 0
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)
        # Several workers decode batches side by side, each with its share of the CPU threads: on a few cores, two
        # batches at one thread each kept both cores busier than one batch at two threads (benchmarks/README.md,
        # "Serving"). `translate` runs in this thread (the model is read-only in inference, so threads can share
        # it) or hands the batch to a worker process (nmt.serve.workers).
        self._workers = [threading.Thread(target=self._run, name=f"nmt-serve-worker-{n}", daemon=True)
                         for n in range(workers)]
        for worker in self._workers:
            worker.start()

    @property
    def waiting(self) -> int:
        return self._waiting

    def busy(self) -> bool:
        """Whether any request is open or any sentence waiting."""
        return self._open > 0 or self._waiting > 0

    def request_opened(self) -> None:
        """A request has arrived whose sentences will be submitted (so a batch being gathered may wait for them)."""
        with self._lock:
            self._open += 1

    def request_closed(self) -> None:
        with self._lock:
            self._open -= 1

    def submit(self, texts: list[str], prefixes: list[str], options: Options,
               constraints: list[list[str]] | None = None) -> list[Job]:
        """Queue a request's sentences (all or none); raises Overloaded when the queue cannot take them. Each job's
        `future` gets its n-best list."""
        with self._lock:
            self._requests += 1
            request = self._requests
        jobs = [Job(text, prefix, options, self.count_tokens(text), request, constraints=phrases)
                for text, prefix, phrases in zip(texts, prefixes, constraints or [[]] * len(texts))]
        with self._lock:
            if self._waiting + len(jobs) > self.max_queue:
                raise Overloaded(f"the queue holds {self._waiting} sentences; {len(jobs)} more would pass its "
                                 f"limit of {self.max_queue}")
            self._waiting += len(jobs)
            if jobs:
                self._pending[request] = deque(jobs)
            self._queued.notify_all()
        return jobs

    def cancel(self, jobs: list[Job]) -> int:
        """Give up on the jobs not yet answered: those still waiting leave the queue at once (their places are free),
        those being decoded leave their batch at its next step; how many were given up."""
        dropped = 0
        with self._lock:
            for job in jobs:
                if job.future.cancel():
                    dropped += 1
                    if job.counted:
                        job.counted = False
                        self._waiting -= 1
                elif not job.future.done():
                    give_up(job.serial)
                    dropped += 1
        return dropped

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the workers."""
        with self._lock:
            self._stops += len(self._workers)  # one stop for each, taken once the queue is empty
            self._queued.notify_all()
        for worker in self._workers:
            worker.join(timeout)

    def _take(self, block: bool, timeout: float | None = None, skip: frozenset[int] = frozenset()) -> Job | None:
        """The next sentence in turn (from the request after the last one served), of a request not in `skip`;
        None once close() was called and nothing is queued; queue.Empty where nothing came in time."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                busy = self._in_batches if self._open > 1 else {}  # alone, a request may use every worker
                request = next((r for r in self._pending if r not in skip and r not in busy), None)
                if request is not None:
                    break
                if not self._pending and self._stops:
                    self._stops -= 1
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if not block or (remaining is not None and remaining <= 0):
                    raise queue.Empty
                self._queued.wait(remaining)
            jobs = self._pending[request]
            job = jobs.popleft()
            if jobs:
                self._pending.move_to_end(request)  # its next sentence after the other requests' next ones
            else:
                del self._pending[request]
            if job.counted:
                job.counted = False
                self._waiting -= 1
            return job

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """The first job and what else comes within the wait, up to the token budget (and, while other requests are
        open, `share` sentences of any one request); True once the queue is closed."""
        batch, tokens = [first], first.tokens
        taken = {first.request: 1}
        full: set[int] = set()
        deadline = time.monotonic() + self.wait_s
        while tokens < self.max_tokens:
            remaining = deadline - time.monotonic()
            others_coming = self._open > len(taken)
            if self._open > 1:
                full.update(r for r, count in taken.items() if count >= self.share)
            try:
                job = self._take(block=remaining > 0 and others_coming, timeout=max(remaining, 0) or None,
                                 skip=frozenset(full))
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
            taken[job.request] = taken.get(job.request, 0) + 1
            tokens += job.tokens
        return batch, False

    def _run(self) -> None:
        closed = False
        while not closed:
            first = self._take(block=True)
            if first is None:
                break
            batch, closed = self._gather(first)
            requests = {job.request for job in batch}
            with self._lock:
                for request in requests:
                    self._in_batches[request] = self._in_batches.get(request, 0) + 1
            try:
                live = [job for job in batch if job.future.set_running_or_notify_cancel()]  # the cancelled left
                groups: dict[tuple, list[Job]] = {}
                for job in live:
                    groups.setdefault(job.options.key(), []).append(job)
                for jobs in groups.values():
                    self._decode(jobs)
            finally:
                with self._lock:
                    for request in requests:
                        self._in_batches[request] -= 1
                        if not self._in_batches[request]:
                            del self._in_batches[request]
                    self._queued.notify_all()  # their next sentences may go now

    def _decode(self, jobs: list[Job]) -> None:
        options = jobs[0].options
        prefixes = [job.prefix for job in jobs]
        constraints = [job.constraints for job in jobs]
        try:
            texts = [f"{options.language} {job.text}" if options.language else job.text for job in jobs]
            results = self.translate(texts, prefixes if any(prefixes) else None,
                                     search=options.search, record_attention=options.attention,
                                     constraints=constraints if any(constraints) else None,
                                     abandoned=Abandoned(tuple(job.serial for job in jobs)))
        except Exception as error:  # noqa: BLE001 - the requests hear of it; the worker goes on
            for job in jobs:
                job.future.set_exception(error)
            return
        if self.on_batch is not None:
            self.on_batch(len(jobs), sum(len(results_[0].tokens) for results_ in results if results_))
        for job, translations in zip(jobs, results):
            job.future.set_result(translations)
