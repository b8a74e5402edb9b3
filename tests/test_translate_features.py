"""`nmt translate` beyond the beam: ensembles, sampling, prefixes, n-gram blocking, alignments, JSON, pictures, int8,
and the CTranslate2 export, on the tiny copy-task model (a real trained Transformer) and its real vocabulary."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nmt.checkpoint import load_model
from nmt.config import SearchConfig
from nmt.search.step_rules import block_repeated_ngrams
from nmt.search.ensemble import Ensemble
from nmt.search.sampling import filter_distribution
from nmt.engines.pytorch import Translator
from nmt.translate import translate_stream

from conftest import run_nmt

LINES = ["red dog runs", "the big cat plays with a ball", "a", "green water near the small street bike man",
         "blue", "woman jumps"]


@pytest.fixture(scope="module")
def other_checkpoint(trained_checkpoint):
    """An earlier checkpoint of the same run: same vocabulary, different weights."""
    earlier = sorted(trained_checkpoint.parent.glob("checkpoint_*[0-9].pt"))
    assert earlier, list(trained_checkpoint.parent.iterdir())
    return earlier[0]


def test_an_ensemble_of_one_checkpoint_twice_gives_that_checkpoints_output(trained_checkpoint):
    single = Translator(trained_checkpoint, SearchConfig(nbest=2)).translate(LINES)
    twice = Translator([trained_checkpoint, trained_checkpoint], SearchConfig(nbest=2)).translate(LINES)
    for a, b in zip(single, twice):
        assert [t.text for t in a] == [t.text for t in b]
        assert [t.score for t in a] == pytest.approx([t.score for t in b], abs=1e-5)


def test_an_ensemble_steps_with_the_mean_of_its_models_log_probabilities(trained_checkpoint, other_checkpoint):
    first, vocab, _ = load_model(trained_checkpoint)
    second, _, _ = load_model(other_checkpoint)
    src = torch.tensor([vocab.encode_source(["the big cat"])[0] + [vocab.eos_id]])
    bos = torch.tensor([vocab.bos_id])
    with torch.no_grad():
        expected = [model.decode_step(bos, model.init_state(model.encode(src))) for model in (first, second)]
        steps = {}
        for combine in ("logprob", "prob"):
            ensemble = Ensemble([first, second], combine)
            steps[combine] = ensemble.decode_step(bos, ensemble.init_state(ensemble.encode(src)))
    assert not torch.allclose(expected[0], expected[1], atol=1e-3)  # the two models do differ
    # The default (the and Marian's): the mean of the log-probabilities.
    torch.testing.assert_close(steps["logprob"], (expected[0] + expected[1]) / 2, rtol=1e-5, atol=1e-5)
    # --ensemble-combine prob (fairseq's): the log of the mean of the probabilities.
    torch.testing.assert_close(steps["prob"], torch.log((expected[0].exp() + expected[1].exp()) / 2),
                               rtol=1e-5, atol=1e-5)


def test_block_repeated_ngrams_forbids_exactly_the_completing_tokens():
    logprobs = torch.zeros(2, 10)
    generated = torch.tensor([[5, 6, 7, 5], [4, 4, 4, 4]])  # row 0: "5 6" seen, last is 5 -> 6 banned
    block_repeated_ngrams(logprobs, generated, 2)
    assert logprobs[0].isinf().nonzero().flatten().tolist() == [6]
    assert logprobs[1].isinf().nonzero().flatten().tolist() == [4]


def test_no_ngram_repeats_under_no_repeat_ngram_size(trained_checkpoint):
    repetitive = ["red red red dog red red dog", "the cat the cat the cat the cat"]
    plain = Translator(trained_checkpoint).translate(repetitive)
    blocked = Translator(trained_checkpoint, SearchConfig(no_repeat_ngram_size=2)).translate(repetitive)
    assert any(_has_repeat(t[0].tokens, 2) for t in plain)  # the copy model does repeat them
    for translations in blocked:
        assert not _has_repeat(translations[0].tokens, 2)


def _has_repeat(pieces: list[str], n: int) -> bool:
    grams = [tuple(pieces[i:i + n]) for i in range(len(pieces) - n + 1)]
    return len(grams) != len(set(grams))


def test_nbest_is_sorted_by_score_and_its_first_is_the_one_best(trained_checkpoint):
    one = Translator(trained_checkpoint, SearchConfig(beam=5)).translate(LINES)
    many = Translator(trained_checkpoint, SearchConfig(beam=5, nbest=5)).translate(LINES)
    for best, nbest in zip(one, many):
        assert len(nbest) == 5 and nbest[0].text == best[0].text
        scores = [t.score for t in nbest]
        assert scores == sorted(scores, reverse=True)


def test_outputs_come_back_in_input_order_for_shuffled_lengths(trained_checkpoint):
    import random

    rng = random.Random(3)
    words = "red blue green dog cat runs jumps a the big small man woman bike".split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(40)]
    alone = [Translator(trained_checkpoint).translate([line])[0][0].text for line in lines]
    translator = Translator(trained_checkpoint, max_tokens=40)  # many small batches, sorted by length
    streamed = [t[0].text for t in translate_stream(translator, lines + [""], window=16)]
    assert streamed == alone + [""]


def test_an_empty_line_gives_an_empty_line_in_every_output_form(trained_checkpoint):
    for options in ([], ["--json"], ["--print-alignment"], ["--sampling", "--nbest", "2"]):
        out = run_nmt("translate", "--checkpoint", str(trained_checkpoint), *options, input="red dog\n\nblue\n")
        lines = out.stdout.splitlines()
        if "--json" in options:
            assert json.loads(lines[1])["translation"] == "" and json.loads(lines[0])["translation"]
        elif "--sampling" in options:
            assert lines[2] == "1 |||  ||| 0.0000" and len(lines) == 5  # one empty entry for the empty line
        else:
            assert lines[1] in ("", " ||| ") and lines[0].split(" ||| ")[0]


def test_sampling_with_a_fixed_seed_is_reproducible(trained_checkpoint):
    def samples(seed):
        search = SearchConfig(sampling=True, nbest=4, temperature=3.0, seed=seed)
        return [[t.text for t in ts] for ts in Translator(trained_checkpoint, search).translate(LINES)]

    assert samples(7) == samples(7)
    assert samples(7) != samples(8)  # at temperature 3 the copy model's samples vary


def test_sampling_from_the_top_one_token_is_greedy_search(trained_checkpoint):
    greedy = Translator(trained_checkpoint, SearchConfig(beam=1)).translate(LINES)
    top1 = Translator(trained_checkpoint, SearchConfig(sampling=True, topk=1)).translate(LINES)
    assert [t[0].text for t in top1] == [t[0].text for t in greedy]
    assert [t[0].score for t in top1] == pytest.approx([t[0].score for t in greedy], abs=1e-4)


def test_topp_keeps_the_smallest_nucleus_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = filter_distribution(probs.log(), 1.0, 0, 0.75).isfinite()[0].tolist()
    assert kept == [True, True, False, False]  # 0.5 < 0.75 <= 0.5 + 0.3
    assert filter_distribution(probs.log(), 1.0, 0, 0.1).isfinite()[0].tolist() == [True, False, False, False]
    assert filter_distribution(probs.log(), 1.0, 3, 1.0).isfinite()[0].tolist() == [True, True, True, False]


def test_a_forced_prefix_starts_the_translation(trained_checkpoint, tmp_path):
    prefixes = tmp_path / "prefixes.txt"
    prefixes.write_text("woman\n\nthe small\n", encoding="utf-8")
    out = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--prefix-file", str(prefixes),
                  input="red dog runs\nred dog runs\nthe big cat\n")
    first, free, third = out.stdout.splitlines()
    assert first.startswith("woman") and third.startswith("the small")
    assert free == "red dog runs"  # the copy model, unforced
    short = tmp_path / "short.txt"
    short.write_text("woman\n", encoding="utf-8")
    failed = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--prefix-file", str(short),
                     input="a\nb\n", check=False)
    assert failed.returncode == 1 and "fewer lines" in failed.stderr and "Traceback" not in failed.stderr


def test_alignments_of_the_copy_task_are_the_diagonal(trained_checkpoint):
    out = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--print-alignment",
                  input="the big cat plays with a ball\nred dog runs\n")
    pairs = []
    for line in out.stdout.splitlines():
        text, alignment = line.split(" ||| ")
        assert text
        pairs += [tuple(map(int, p.split("-"))) for p in alignment.split()]
    on_diagonal = sum(s == t for s, t in pairs)
    assert pairs and on_diagonal >= 0.8 * len(pairs)


def test_json_lines_carry_translation_score_tokens_and_alignment(trained_checkpoint):
    out = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--json", "--nbest", "2",
                  input="red dog runs\n")
    record = json.loads(out.stdout)
    assert record["translation"] == "red dog runs"
    assert record["score"] < 0 and record["tokens"] and "".join(record["tokens"]).replace("\u2581", " ").strip()
    assert len(record["alignment"].split()) == len(record["tokens"])
    assert [r["translation"] for r in record["nbest"]][0] == record["translation"] and len(record["nbest"]) == 2


def test_attention_plot_writes_a_png_per_sentence(trained_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    plots = tmp_path / "plots"
    run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--attention-plot", str(plots),
            input="red dog runs\nthe big cat\n")
    files = sorted(p.name for p in plots.iterdir())
    assert files == ["line-000001.png", "line-000002.png"]
    import matplotlib.image

    image = matplotlib.image.imread(plots / files[0])
    assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0  # a picture, not a blank


def test_int8_translates_the_copy_task_nearly_as_fp32(trained_checkpoint):
    fp32 = Translator(trained_checkpoint).translate(LINES)
    int8 = Translator(trained_checkpoint, quantize="int8")
    assert any("quantized" in type(m).__module__ for m in int8.model.modules())
    same = sum(a[0].text == b[0].text for a, b in zip(fp32, int8.translate(LINES)))
    assert same >= len(LINES) - 1


def test_ctranslate2_export_gives_our_beam_searchs_tokens(trained_checkpoint, copy_data, tmp_path):
    pytest.importorskip("ctranslate2")
    exported = tmp_path / "ct2"
    run_nmt("export", "ctranslate2", str(trained_checkpoint), str(exported))
    lines = (copy_data / "test.src").read_text(encoding="utf-8").splitlines()
    options = ["--lenpen-style", "length", "--beam", "4", "--input", str(copy_data / "test.src")]
    ours = run_nmt("translate", "--checkpoint", str(trained_checkpoint), *options).stdout.splitlines()
    theirs = run_nmt("translate", "--engine", "ctranslate2", "--checkpoint", str(exported),
                     *options).stdout.splitlines()
    assert len(ours) == len(theirs) == len(lines)
    same = sum(a == b for a, b in zip(ours, theirs))
    assert same >= math.ceil(0.99 * len(lines)), [(a, b) for a, b in zip(ours, theirs) if a != b]
    told_gnmt = run_nmt("translate", "--engine", "ctranslate2", "--checkpoint", str(exported), "--lenpen-style",
                        "gnmt", *options[2:])
    assert told_gnmt.stdout.splitlines() == theirs and "--lenpen-style length is used" in told_gnmt.stderr
    again = run_nmt("export", "ctranslate2", str(trained_checkpoint), str(exported), check=False)
    assert again.returncode == 1 and "--force" in again.stderr


def test_bf16_decoding_runs_its_matrix_products_in_bf16_and_keeps_the_translations(trained_checkpoint):
    lines = ["a red dog runs", "the small cat plays with a ball", "a man near the water", "blue bike"]
    reference = Translator(trained_checkpoint).translate(lines)
    half = Translator(trained_checkpoint, precision="bf16")
    seen = []
    half.model.decoder_layers[0].ffn.linear1.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    results = half.translate(lines)
    assert seen and set(seen) == {torch.bfloat16}  # autocast is on: the products ran in bf16
    assert all(math.isfinite(r[0].score) for r in results)
    same = sum(a[0].text == b[0].text for a, b in zip(reference, results))
    assert same >= len(lines) - 1, [(a[0].text, b[0].text) for a, b in zip(reference, results)]


def test_precision_is_an_option_of_nmt_translate(trained_checkpoint):
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--precision", "bf16", input="a cat\n\n")
    assert result.stdout.count("\n") == 2
    for bad in (["--precision", "fp8"], ["--precision", "bf16", "--quantize", "int8"]):
        failed = run_nmt("translate", "--checkpoint", str(trained_checkpoint), *bad, input="a cat\n", check=False)
        assert failed.returncode == 1 and failed.stderr.strip().splitlines()[-1].startswith("error:")


def test_cpu_fp32_decoding_packs_its_weights_and_translates_as_unpacked(trained_checkpoint, monkeypatch):
    import nmt.engines.pytorch
    from nmt.model.packed import PackedLinear, packing_available

    if not packing_available():
        pytest.skip("this torch has no oneDNN linear")
    lines = ["a red dog runs", "the small cat plays with a ball near the water", "blue bike", ""]
    packed = Translator(trained_checkpoint)
    assert any(isinstance(m, PackedLinear) for m in packed.model.modules())
    monkeypatch.setattr(nmt.engines.pytorch, "PACK_FOR_CPU", False)
    plain = Translator(trained_checkpoint)
    assert not any(isinstance(m, PackedLinear) for m in plain.model.modules())
    for a, b in zip(packed.translate(lines), plain.translate(lines)):
        assert a[0].tokens == b[0].tokens and a[0].score == pytest.approx(b[0].score, abs=1e-4)
    half = Translator(trained_checkpoint, precision="bf16")  # packed weights are fp32: autocast keeps nn.Linear
    assert not any(isinstance(m, PackedLinear) for m in half.model.modules())
