"""The server's Prometheus metrics (prometheus_client), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("nmt_requests", "HTTP requests by endpoint and status code.", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("nmt_request_seconds", "Time from a request's arrival to its answer.", ["endpoint"],
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
                                 registry=self.registry)
        self.batch_sentences = Histogram("nmt_batch_sentences", "Sentences decoded together in one batch.",
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=self.registry)
        self.queue_depth = Gauge("nmt_queue_sentences", "Sentences waiting for the model.", registry=self.registry)
        self.sentences = Counter("nmt_translated_sentences", "Sentences translated.", registry=self.registry)
        self.tokens = Counter("nmt_translated_tokens", "Target pieces produced (best hypotheses).",
                              registry=self.registry)
        self.dropped = Counter("nmt_dropped_sentences", "Sentences given up while queued or decoding, by reason "
                               "(disconnect: the client left; deadline: the request timed out).", ["reason"],
                               registry=self.registry)
        self.worker_restarts = Counter("nmt_worker_restarts", "Times the model worker processes were replaced "
                                       "after one died (the OOM killer, a crash).", registry=self.registry)
        self.model_sentences = Counter("nmt_model_translated_sentences", "Sentences translated, by model (a server "
                                       "of several).", ["model"], registry=self.registry)
        self.pivoted = Counter("nmt_pivoted_requests", "Requests for a pair no model serves, translated through a "
                               "pivot language by two models.", ["source", "target", "pivot"], registry=self.registry)
        for reason in ("disconnect", "deadline"):
            self.dropped.labels(reason)

    def observe_batch(self, sentences: int, tokens: int, model: str = "model") -> None:
        self.batch_sentences.observe(sentences)
        self.sentences.inc(sentences)
        self.tokens.inc(tokens)
        self.model_sentences.labels(model).inc(sentences)
