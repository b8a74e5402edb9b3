"""Beam search: cache against re-decoding, beam 1 against a greedy loop written here, and the small pieces."""

import pytest
import torch

from nmt.config import ModelConfig, SearchConfig
from nmt.model.transformer import build_model
from nmt.search.beam import beam_search, expand_beams, length_penalty


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=40, encoder_layers=2, decoder_layers=2, d_model=32, d_ff=64, heads=4)
    return build_model(config).eval()


def sources(config, lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), config.pad_id)
    for row, length in enumerate(lengths):
        src[row, :length - 1] = torch.randint(4, config.vocab_size, (length - 1,), generator=generator)
        src[row, length - 1] = config.eos_id
    return src


def test_cached_decoding_gives_the_same_tokens_and_scores_as_redecoding_the_prefix(model):
    src = sources(model.config, [5, 9, 3, 7])
    search = SearchConfig(beam=4, nbest=4, max_len_b=8)
    cached, uncached = beam_search(model, src, search), beam_search(model, src, search, use_cache=False)
    for with_cache, without in zip(cached, uncached):
        assert [h.tokens for h in with_cache] == [h.tokens for h in without]
        for a, b in zip(with_cache, without):
            assert a.score == pytest.approx(b.score, abs=1e-5)


def greedy_reference(model, src_row, max_len):
    """Argmax at every step, re-running the whole decoder on the prefix: no cache, no beam."""
    config = model.config
    prefix = [config.bos_id]
    with torch.no_grad():
        encoder_out = model.encode(src_row[None])
        for _ in range(max_len):
            logits = model.decode(torch.tensor([prefix]), encoder_out)[0, -1]
            logits[[config.pad_id, config.bos_id]] = float("-inf")
            token = int(logits.argmax())
            if token == config.eos_id:
                return prefix[1:]
            prefix.append(token)
    return prefix[1:]


def test_beam_one_equals_a_plain_greedy_loop(model):
    lengths = [4, 8, 6]
    src = sources(model.config, lengths, seed=3)
    search = SearchConfig(beam=1, max_len_a=0.0, max_len_b=12)
    results = beam_search(model, src, search)
    for row, hyps in enumerate(results):
        reference = greedy_reference(model, src[row, :lengths[row]], max_len=12)
        assert hyps[0].tokens == reference[:11]  # the search ends with eos by step 12 at the latest


def test_nbest_is_sorted_and_outputs_respect_the_length_limit(model):
    src = sources(model.config, [6, 3])
    search = SearchConfig(beam=5, nbest=5, max_len_a=1.0, max_len_b=4)
    for row, hyps in enumerate(beam_search(model, src, search)):
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True) and len(hyps) == 5
        src_len = int(src[row].ne(model.config.pad_id).sum())
        assert all(len(h.tokens) + 1 <= src_len + 4 for h in hyps)  # + 1: the eos


def test_a_batch_decodes_each_sentence_as_it_would_alone(model):
    src = sources(model.config, [7, 4, 9], seed=5)
    search = SearchConfig(beam=3, max_len_b=6)
    together = beam_search(model, src, search)
    for row in range(3):
        alone = beam_search(model, src[row:row + 1, : int(src[row].ne(0).sum())], search)
        assert alone[0][0].tokens == together[row][0].tokens
        assert alone[0][0].score == pytest.approx(together[row][0].score, abs=1e-5)


def test_min_len_forbids_early_end(model):
    src = sources(model.config, [5])
    hyps = beam_search(model, src, SearchConfig(beam=2, min_len=6, max_len_b=10))
    assert len(hyps[0][0].tokens) + 1 >= 6


def test_length_penalties():
    assert length_penalty(7, 0.6, "gnmt") == pytest.approx(((5 + 7) / 6) ** 0.6)
    assert length_penalty(7, 0.6, "length") == pytest.approx(7 ** 0.6)
    assert length_penalty(7, 0.0, "gnmt") == 1.0


def test_expand_beams_repeats_each_row():
    assert expand_beams(3, 2, "cpu").tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("lenpen, style, nbest", [(0.6, "gnmt", 1), (0.6, "length", 2), (0.0, "gnmt", 1),
                                                  (1.5, "length", 1), (-0.5, "gnmt", 3)])
def test_stopping_a_settled_sentence_early_returns_what_waiting_for_the_whole_beam_does(trained_checkpoint, lenpen,
                                                                                      style, nbest, monkeypatch):
    """Sentences stop once no continuing beam can beat their nbest-th finished hypothesis (cannot_be_beaten); the
    result must be that of waiting for `beam` finished hypotheses, in fewer decoding steps."""
    import nmt.search.beam as beam_module
    from nmt.checkpoint import load_model

    trained, vocab, _ = load_model(trained_checkpoint)
    lines = ["a red dog runs", "the small cat plays with a ball near the water", "blue", "a man and a woman"] * 3
    src = torch.nn.utils.rnn.pad_sequence([torch.tensor(ids + [3]) for ids in vocab.encode_source(lines)],
                                          batch_first=True, padding_value=0)
    search = SearchConfig(beam=4, nbest=nbest, lenpen=lenpen, lenpen_style=style)
    steps = {}
    results = {}
    for early in (False, True):
        monkeypatch.setattr(beam_module, "EARLY_STOP", early)
        calls = []
        original = trained.decode_step
        monkeypatch.setattr(trained, "decode_step", lambda tokens, state: calls.append(len(tokens)) or
                            original(tokens, state))
        results[early] = beam_search(trained, src, search)
        steps[early] = sum(calls)  # hypotheses decoded, summed over steps
        monkeypatch.undo()
    for waited, early in zip(results[False], results[True]):
        assert [h.tokens for h in waited] == [h.tokens for h in early]
        assert [h.score for h in waited] == pytest.approx([h.score for h in early], abs=1e-5)
    assert steps[True] <= steps[False]
    if (lenpen, style, nbest) == (0.6, "gnmt", 1):  # the paper's setting: settled sentences do stop early here
        assert steps[True] < steps[False]


@pytest.mark.parametrize("search", ["beam", "sample", "constrained"])
def test_an_abandoned_sentence_leaves_the_batch_and_the_others_decode_as_before(model, search):
    """What a server's timed-out request asks of the search: sentence 1 is given up after three steps; it ends
    with no hypothesis, and the steps after go on without its rows; the others' results do not change."""
    from nmt.search.lexical import constrained_beam_search
    from nmt.search.sampling import sample

    src = sources(model.config, [5, 9, 3, 7])
    config = SearchConfig(beam=3, nbest=2, max_len_b=12, min_len=10)  # long enough to be stopped midway
    rows_seen: list[int] = []

    def decode(abandoned=None):
        if search == "beam":
            return beam_search(model, src, config, abandoned=abandoned)
        if search == "sample":
            return sample(model, src, SearchConfig(sampling=True, nbest=2, max_len_b=12, min_len=10),
                          torch.Generator().manual_seed(0), abandoned=abandoned)
        return constrained_beam_search(model, src, config, [[[7, 8]]] * 4, abandoned=abandoned)

    def after_three_steps():
        rows_seen.append(1)
        return {1} if len(rows_seen) > 3 else set()

    whole, stopped = decode(), decode(after_three_steps)
    assert whole[1] and stopped[1] == []
    for kept in (0, 2, 3):
        if search == "sample":  # fewer rows draw differently from the shared generator: only the counts hold
            assert len(stopped[kept]) == 2 and all(len(h.tokens) >= 9 for h in stopped[kept])
        else:
            assert [h.tokens for h in stopped[kept]] == [h.tokens for h in whole[kept]]
    assert len(rows_seen) >= 10  # asked at every step, and the others went on to their end
