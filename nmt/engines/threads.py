"""How many CPU threads a small decoding batch runs on.

At a single sentence's few hypothesis rows a decoding step is dozens of small operations, and splitting each across
threads can cost more than it gains: whether it does depends on the CPU and on the model (benchmarks/README.md,
"Decoding speed against CTranslate2": on one 2-core AMD EPYC VM transformer_small decoded a sentence faster on one
thread and transformer_base on two; on another, transformer_small too was faster on two). So the choice is timed on the model itself, once, when the first small batch comes, and a
bulk translation, whose batches are large, never pays for it.
"""

from __future__ import annotations

import contextlib
import time

import torch

from nmt.search.protocol import DecodingModel

# Batches of at most this many sentences (a request, a few interactive lines) decode at the timed choice.
SMALL_BATCH_SENTENCES = 2
# Decoding steps per timing, and timings per thread count (alternating, the best of each kept).
TIMED_STEPS = 6
TIMINGS = 2


@contextlib.contextmanager
def cpu_threads(count: int | None):
    """PyTorch's intra-op threads set to `count` inside the block, restored after (None: left as they are)."""
    before = torch.get_num_threads()
    if count is None or count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class SmallBatchThreads:
    """The thread count for each batch: the faster of one thread and the configured count for small batches on a
    CPU (timed at the first one), the configured count otherwise."""

    def __init__(self, model: DecodingModel, device: torch.device, rows_per_sentence: int):
        self.model = model
        self.cpu = device.type == "cpu"
        self.rows_per_sentence = rows_per_sentence
        self.timed: dict[int, float] = {}  # thread count -> best seconds of TIMED_STEPS steps, once timed
        self.choice: int | None = None

    def for_batch(self, sentences: int) -> int | None:
        """Threads to decode a batch of `sentences` with; None: as configured."""
        threads = torch.get_num_threads()
        if not self.cpu or sentences > SMALL_BATCH_SENTENCES or threads == 1:
            return None
        if self.choice is None:
            self.timed = self.time_steps((threads, 1))
            self.choice = min(self.timed, key=self.timed.get)
        return self.choice

    @torch.inference_mode()
    def time_steps(self, counts: tuple[int, ...]) -> dict[int, float]:
        """Best wall-clock seconds of TIMED_STEPS decoding steps of one 20-piece sentence at each thread count (both
        shorter where a learned position table is shorter)."""
        config = self.model.config
        specials = {config.pad_id, config.bos_id, config.eos_id}
        length = min(20, config.max_positions) if config.learned_positions else 20
        words = [i for i in range(config.vocab_size) if i not in specials][: length - 1]
        steps = min(TIMED_STEPS, length)
        source = torch.tensor([words + [config.eos_id]])
        best = {count: float("inf") for count in counts}
        for _ in range(TIMINGS):
            for count in counts:
                with cpu_threads(count):
                    started = time.perf_counter()
                    state = self.model.init_state(self.model.encode(source), self.rows_per_sentence)
                    tokens = torch.full((self.rows_per_sentence,), config.bos_id)
                    for _ in range(steps):
                        self.model.decode_step(tokens, state)
                    best[count] = min(best[count], time.perf_counter() - started)
        return best
