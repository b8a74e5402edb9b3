"""Properties that must hold for any input (hypothesis): translate's line handling and the batcher's plan."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nmt.data.batching import make_batches
from nmt.engines.pytorch import Translator
from nmt.output_formats import format_translations

# Any text a line may hold: every Unicode category (controls, combining marks, other scripts, surrogates excluded
# as they cannot be UTF-8), with '\n' left out since it ends a line; '\r', '\u2028' and friends stay in.
LINE = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), max_size=40)


@pytest.fixture(scope="module")
def translator(trained_checkpoint):
    return Translator(trained_checkpoint, max_tokens=64)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, max_size=8))
def test_translate_gives_one_line_per_line_in_input_order_for_any_text(translator, lines):
    results = translator.translate(lines)
    assert len(results) == len(lines)
    written = "".join(format_translations(i, r, 1) for i, r in enumerate(results))
    assert written.count("\n") == len(lines)  # nothing in a translation breaks a line
    for line, result in zip(lines, results):
        if not line.strip():
            assert result[0].text == ""
        assert result[0].text == translator.translate([line])[0][0].text  # alone or in a batch: the same


@settings(max_examples=200, deadline=None)
@given(src=st.lists(st.integers(1, 300), min_size=1, max_size=300), data=st.data())
def test_every_sentence_once_per_epoch_within_the_token_budget(src, data):
    tgt = data.draw(st.lists(st.integers(1, 300), min_size=len(src), max_size=len(src)))
    budget = data.draw(st.integers(1, 2000))
    epoch = data.draw(st.integers(1, 5))
    plan = make_batches(np.array(src), np.array(tgt), budget, seed=3, epoch=epoch)
    seen = np.concatenate(plan.batches)
    assert sorted(seen.tolist()) == list(range(len(src)))  # each exactly once
    widths = np.maximum(src, tgt)
    for batch in plan.batches:
        padded = len(batch) * int(widths[batch].max())
        assert padded <= budget or len(batch) == 1  # over budget only alone
    assert plan.oversized == int((widths > budget).sum())
