"""What `nmt serve` is started with: the operator's limits and defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nmt.errors import NmtError
from nmt.ranges import check_ranges, within


@dataclass
class ServeConfig:
    """`nmt serve`'s settings beyond the model's: address, key, per-request caps, batching, workers, time limits."""

    host: str = "127.0.0.1"  # loopback unless the operator says otherwise
    port: int = field(default=8000, metadata=within(1, 65535))
    api_key: str | None = None  # required by /v1 and /metrics (and LibreTranslate's /translate) when set
    # Caps on what one request may ask for.
    max_beam: int = field(default=8, metadata=within(1, 512))
    max_nbest: int = field(default=8, metadata=within(1, 512))
    # texts (LibreTranslate: q entries) per request
    max_sentences: int = field(default=64, metadata=within(1, 100_000))
    # per sentence; a longer one is a 400, not a slow decode
    max_characters: int = field(default=5000, metadata=within(1, 1_000_000))
    # the body as received, chunked bodies included
    max_request_bytes: int = field(default=1_000_000, metadata=within(1, 1_000_000_000))
    # Batching: sentences of concurrent requests gathered for up to batch_wait_ms into batches of max_tokens.
    batch_wait_ms: float = field(default=5.0, metadata=within(0, 60_000))
    max_tokens: int = field(default=6000, metadata=within(1, 10**7))
    # sentences waiting; beyond it a request is refused with 503
    max_queue: int = field(default=1024, metadata=within(1, 1_000_000))
    # batches decoded side by side, the CPU threads split among them
    workers: int = field(default=1, metadata=within(1, 256))
    worker_processes: bool = True  # several workers in processes of their own (a model copy each), not threads
    # a request not answered by then is a 504 and its sentences leave the queue
    timeout_s: float = field(default=30.0, metadata=within(0, 86_400, low_open=True))
    cors_origins: list[str] = field(default_factory=list)  # none: cross-origin requests are not allowed
    log_requests: bool = False  # request text and query strings in the log (off: method, path, status, time)
    graceful_shutdown_s: float = 30.0  # after SIGTERM, how long in-flight requests may take
    glossary: Path | None = None  # source term -> target term, applied to every text (nmt.terminology.Glossary)

    def validate(self) -> None:
        """Raise NmtError naming the flag of the first setting out of range."""
        check_ranges(self, lambda name: "--timeout" if name == "timeout_s" else f"--{name.replace('_', '-')}")
        if self.max_sentences > self.max_queue:
            raise NmtError("--max-sentences cannot exceed --max-queue: such a request could never be queued")
        if self.api_key is not None and not self.api_key.strip():
            raise NmtError("the API key is empty: set a key or none")


def choose_workers(workers: int | None, device: str | None) -> int:
    """--workers as given, else 2 on a CPU with 2 or more threads (two batches at half the threads each beat one at
    all: benchmarks/README.md), else 1; with several, PyTorch's threads are split among them, so that each worker's
    operations run on its share rather than all of them at once."""
    import torch

    from nmt.device import pick_device

    if workers is not None and workers < 1:
        raise NmtError(f"--workers must be at least 1, got {workers}")
    if workers is None:
        workers = 2 if pick_device(device).type == "cpu" and torch.get_num_threads() >= 2 else 1
    if workers > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // workers))
    return workers
