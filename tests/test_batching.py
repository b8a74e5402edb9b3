"""Token-bucketed batches: within budget, every sentence once, deterministic, sharded by rank."""

import numpy as np
import pytest

from nmt.data.batching import make_batches


@pytest.fixture
def lengths():
    rng = np.random.default_rng(0)
    return rng.integers(1, 60, 5000), rng.integers(1, 60, 5000)


def test_batches_stay_within_budget_and_cover_every_sentence_once(lengths):
    src, tgt = lengths
    plan = make_batches(src, tgt, max_tokens=500, seed=3, epoch=2)
    seen = np.concatenate(plan.batches)
    assert sorted(seen.tolist()) == list(range(len(src)))
    for batch in plan.batches:
        assert len(batch) * max(src[batch].max(), tgt[batch].max()) <= 500
    assert plan.oversized == 0
    assert 0.0 <= plan.padding_ratio < 0.2  # length-sorted buckets pad little


def test_a_pair_longer_than_the_budget_is_alone_not_lost():
    src = np.array([3, 4, 900, 5])
    tgt = np.array([3, 1000, 2, 5])
    plan = make_batches(src, tgt, max_tokens=100)
    assert plan.oversized == 2
    alone = [b.tolist() for b in plan.batches if len(b) == 1 and max(src[b[0]], tgt[b[0]]) > 100]
    assert sorted(alone) == [[1], [2]]
    assert sorted(np.concatenate(plan.batches).tolist()) == [0, 1, 2, 3]


def test_same_seed_and_epoch_give_the_same_batches_and_epochs_differ(lengths):
    src, tgt = lengths
    a = make_batches(src, tgt, 800, seed=1, epoch=1)
    b = make_batches(src, tgt, 800, seed=1, epoch=1)
    c = make_batches(src, tgt, 800, seed=1, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(a.batches, b.batches))
    assert not all(np.array_equal(x, y) for x, y in zip(a.batches, c.batches))


def test_ranks_take_disjoint_equal_shards(lengths):
    src, tgt = lengths
    shards = [make_batches(src, tgt, 800, seed=1, epoch=1, rank=r, world_size=3) for r in range(3)]
    assert len({len(s.batches) for s in shards}) == 1
    everything = np.concatenate([np.concatenate(s.batches) for s in shards])
    assert len(np.unique(everything)) == len(everything)


def test_max_sentences_caps_batch_size(lengths):
    src, tgt = lengths
    plan = make_batches(src, tgt, 10_000, max_sentences=16)
    assert max(len(b) for b in plan.batches) <= 16


def test_pairs_of_one_width_are_grouped_by_their_source_and_target_lengths():
    # 200 pairs all 10 tokens wide: half have a 3-token source, half a 3-token target. Sorting on the width alone
    # would mix them and pad both sides of most batches to 10; the secondary keys keep each batch homogeneous.
    src = np.array([3] * 100 + [10] * 100)
    tgt = np.array([10] * 100 + [3] * 100)
    plan = make_batches(src, tgt, max_tokens=100, seed=5)
    assert len(plan.batches) == 20
    for batch in plan.batches:
        assert len(set(src[batch].tolist())) == 1 and len(set(tgt[batch].tolist())) == 1
    assert plan.padding_ratio == 0.0  # padding counted on each side, against that side's longest


def test_padding_ratio_counts_each_side_against_its_own_longest():
    plan = make_batches(np.array([2, 4]), np.array([4, 4]), max_tokens=100)
    # One batch: source slots 2 x 4 = 8 holding 6 tokens, target slots 8 holding 8 tokens.
    assert plan.padding_ratio == pytest.approx(1 - 14 / 16)
