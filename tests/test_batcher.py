"""The server's batcher on its own: which sentences go into which batch. The translate function records the batches
(it is the batcher's caller-side contract, not a model: `nmt serve`'s tests run the real model behind it)."""

from __future__ import annotations

import threading

from nmt.config import SearchConfig
from nmt.engines.base import Translation
from nmt.serve.batcher import Batcher, Options


def recording_batcher(share: int = 4):
    batches: list[list[str]] = []
    release = threading.Event()
    decoding = threading.Event()

    def translate(texts, prefixes=None, search=None, record_attention=None, constraints=None, abandoned=None):
        decoding.set()
        release.wait(10)  # the first batch waits until every request is queued
        batches.append(list(texts))
        return [[Translation(text, 0.0, [])] for text in texts]
    batcher = Batcher(translate, lambda text: 4, max_tokens=10_000, wait_s=0.0, max_queue=1000, share=share)
    batcher.decoding = decoding
    return batcher, batches, release


def test_a_long_document_does_not_hold_up_the_requests_after_it():
    batcher, batches, release = recording_batcher()
    options = Options(SearchConfig())
    for _ in range(9):
        batcher.request_opened()
    first = batcher.submit(["warm"], [""], options)  # taken at once: the worker waits in translate with it
    assert batcher.decoding.wait(10)
    document = batcher.submit([f"doc {i}" for i in range(100)], [""] * 100, options)
    singles = [batcher.submit([f"single {i}"], [""], options) for i in range(7)]
    release.set()
    for job in first + document + [job for jobs in singles for job in jobs]:
        job.future.result(timeout=10)
    batcher.close(timeout=10)
    second = batches[1]
    # the next batch: every single sentence, and no more than `share` of the document's
    assert all(f"single {i}" in second for i in range(7))
    assert sum(text.startswith("doc") for text in second) == 4 and batches[0] == ["warm"]
    assert [t for batch in batches for t in batch if t.startswith("doc")] == [f"doc {i}" for i in range(100)]


def test_a_request_alone_fills_whole_batches():
    batcher, batches, release = recording_batcher()
    options = Options(SearchConfig())
    batcher.request_opened()
    jobs = batcher.submit([f"doc {i}" for i in range(50)], [""] * 50, options)
    release.set()
    for job in jobs:
        job.future.result(timeout=10)
    batcher.close(timeout=10)
    assert len(batches) <= 2 and sum(len(b) for b in batches) == 50
