"""Small batches decode at the faster of one thread and the configured count, timed once on the model."""

import pytest
import torch

from nmt.config import SearchConfig
from nmt.engines.threads import SMALL_BATCH_SENTENCES, SmallBatchThreads, cpu_threads
from nmt.engines.pytorch import Translator

LINES = ["red dog", "blue cat sees a green bird", "a big yellow house"]


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


def test_cpu_threads_sets_the_count_inside_the_block_and_restores_it_after_an_error(two_threads):
    with cpu_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == two_threads
    with pytest.raises(RuntimeError), cpu_threads(1):
        raise RuntimeError("a batch that fails")
    assert torch.get_num_threads() == two_threads
    with cpu_threads(None):
        assert torch.get_num_threads() == two_threads


def test_only_small_batches_on_a_cpu_get_a_timed_choice_and_it_is_timed_once(trained_checkpoint, two_threads):
    translator = Translator(trained_checkpoint)
    threads = translator.threads
    assert threads.for_batch(SMALL_BATCH_SENTENCES + 1) is None  # large: as configured, nothing timed
    assert threads.timed == {}
    choice = threads.for_batch(1)
    assert choice in (1, two_threads)
    assert set(threads.timed) == {1, two_threads} and all(t > 0 for t in threads.timed.values())
    assert choice == min(threads.timed, key=threads.timed.get)
    timed = dict(threads.timed)
    assert threads.for_batch(SMALL_BATCH_SENTENCES) == choice and threads.timed == timed  # not timed again
    with cpu_threads(1):
        assert threads.for_batch(1) is None  # one thread configured: nothing to choose
    assert SmallBatchThreads(translator.model, torch.device("cuda"), 4).for_batch(1) is None


def test_the_thread_count_changes_no_output(trained_checkpoint, two_threads):
    translator = Translator(trained_checkpoint, SearchConfig(nbest=2))
    seen = []  # the thread count each decoding step ran with
    decode_step = translator.model.decode_step
    translator.model.decode_step = lambda *args: seen.append(torch.get_num_threads()) or decode_step(*args)
    outputs = {}
    for forced in (1, two_threads):
        translator.threads.choice = forced
        seen.clear()
        outputs[forced] = [[(t.text, round(t.score, 4)) for t in translator.translate([line])[0]] for line in LINES]
        assert seen and set(seen) == {forced}
        assert torch.get_num_threads() == two_threads  # restored after each batch
    assert outputs[1] == outputs[two_threads]
    seen.clear()
    translator.translate(LINES)  # a batch of three: the configured count
    assert set(seen) == {two_threads}
