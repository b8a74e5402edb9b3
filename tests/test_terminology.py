"""Terminology: constrained beam search, constraint files, glossaries and term accuracy, on the tiny copy-task model
(a real trained Transformer that copies its input, so a word absent from the source is one it never writes
unconstrained) and its real SentencePiece vocabulary."""

from __future__ import annotations

import json
import re

import pytest
import torch

from nmt.checkpoint import load_checkpoint, save_checkpoint
from nmt.config import SearchConfig
from nmt.search.lexical import PhraseState, PhraseTable, advance, constrained_beam_search, round_robin_order
from nmt.terminology import Glossary, term_accuracy
from nmt.engines.pytorch import Translator, beam_groups

from conftest import run_nmt

LINES = ["red dog runs", "the big cat plays with a ball", "green water near the small street bike man", "blue",
         "woman jumps", "a man plays with a big red ball near the water"]


def Vocab_of(checkpoint):
    from nmt.checkpoint import vocab_from_payload
    return vocab_from_payload(load_checkpoint(checkpoint), checkpoint)


def has(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


@pytest.fixture(scope="module")
def translator(trained_checkpoint):
    torch.set_num_threads(2)
    return Translator(trained_checkpoint, SearchConfig(beam=4, lenpen=0.6), "cpu")


# --- the search --------------------------------------------------------------------------------------------------

def test_each_constraint_appears_one_piece_multi_piece_two_per_line_and_words_the_model_never_writes(translator):
    pieces = translator.vocab.encode_target(["zebra", "dog", "street bike"])
    assert len(pieces[0]) > 1 and len(pieces[1]) == 1 and len(pieces[2]) == 2  # multi-, one- and two-piece phrases
    constraints = [["dog"], ["zebra"], ["street bike", "cat"], ["green water", "zebra"], ["woman"], ["ball", "dog"]]
    plain = [t[0].text for t in translator.translate(LINES)]
    assert not any(has(text, "zebra") for text in plain)  # a copying model never writes a word it was not given
    outputs = translator.translate(LINES, constraints=constraints)
    for line, phrases, (best,) in zip(LINES, constraints, outputs):
        for phrase in phrases:
            assert has(best.text, phrase), (line, phrases, best.text)


def test_a_line_without_constraints_gets_exactly_the_unconstrained_output(translator):
    constraints = [[], ["zebra"], [], ["water"], [], []]
    plain = translator.translate(LINES)
    mixed = translator.translate(LINES, constraints=constraints)
    for position in (0, 2, 4, 5):
        assert mixed[position][0].text == plain[position][0].text
        assert mixed[position][0].score == plain[position][0].score
    assert has(mixed[1][0].text, "zebra") and mixed[1][0].text != plain[1][0].text


def test_batched_constrained_search_equals_each_sentence_alone_even_with_different_beams(trained_checkpoint):
    translator = Translator(trained_checkpoint, SearchConfig(beam=4, nbest=4), "cpu")
    lines = LINES + ["the dog", "cat near water bike"]
    constraints = [["dog"], ["zebra crossing"], ["street bike", "cat"], [], ["woman jumps high"], ["ball", "dog"],
                   ["zebra"], ["green", "woman man"]]
    together = translator.translate(lines, constraints=constraints)
    beams = {max(4, sum(len(p) for p in translator.vocab.encode_target(c)) + 1) for c in constraints if c}
    assert len(beams) > 1  # the batch mixes beams
    for line, phrases, batched in zip(lines, constraints, together):
        alone = translator.translate([line], constraints=[phrases])[0]
        assert [t.text for t in alone] == [t.text for t in batched]  # the whole n-best list
        assert [t.score for t in alone] == pytest.approx([t.score for t in batched], abs=1e-4)


def test_nbest_hypotheses_all_hold_the_constraints(trained_checkpoint):
    translator = Translator(trained_checkpoint, SearchConfig(beam=5, nbest=3), "cpu")
    for translations in translator.translate(LINES[:3], constraints=[["zebra"], ["dog"], ["cat", "near"]]):
        assert len(translations) == 3
        assert [t.score for t in translations] == sorted((t.score for t in translations), reverse=True)
    for translations, phrases in zip(translator.translate(LINES[:3], constraints=[["zebra"], ["dog"], ["cat", "near"]]),
                                     [["zebra"], ["dog"], ["cat", "near"]]):
        assert all(has(t.text, p) for t in translations for p in phrases), [t.text for t in translations]


def test_the_length_limit_grows_for_a_line_whose_constraints_do_not_fit(trained_checkpoint):
    translator = Translator(trained_checkpoint, SearchConfig(beam=4, max_len_a=0.0, max_len_b=2), "cpu")
    phrase = "big green street"  # three pieces: with eos, more than the limit of 2
    (best,), = translator.translate(["dog"], constraints=[[phrase]])
    assert has(best.text, phrase) and len(best.tokens) >= 3


def test_a_forced_prefix_and_constraints_together(translator):
    (best,), = translator.translate(["red dog runs"], prefixes=["the"], constraints=[["zebra"]])
    assert best.text.startswith("the") and has(best.text, "zebra")


def test_the_piece_after_a_completed_constraint_may_not_continue_its_word(translator):
    # Which pieces continue a word: no word-start marker and a letter first ("s" after "ball" would write "balls"),
    # or a byte of byte fallback ("<0xC3>"), which glues onto the word whatever character it begins.
    mask, piece = translator.word_continuations, translator.vocab.target.piece
    continuing = [piece(i) for i in range(len(mask)) if mask[i]]
    letters = [p for p in continuing if not p.startswith("<0x")]
    assert letters and not any(p.startswith("\u2581") or not p[0].isalnum() for p in letters)
    assert "<0xC3>" in continuing and "." not in continuing and "\u2581" not in continuing
    assert not mask[translator.vocab.encode_target(["ball"])[0][0]]
    # The rule itself, on the real model: mark "▁the" as continuing a word, and "near" may no longer precede it.
    vocab = translator.vocab
    source = torch.tensor([vocab.encode_source(["a big ball near the water"])[0] + [vocab.eos_id]])
    phrases = [[vocab.encode_target(["near"])[0]]]
    the = vocab.encode_target(["the"])[0][0]
    marked = torch.zeros_like(mask)
    marked[the] = True
    (plain,), = constrained_beam_search(translator.model, source, SearchConfig(beam=4), phrases)
    (after,), = constrained_beam_search(translator.model, source, SearchConfig(beam=4), phrases,
                                        word_continuations=marked)
    near = phrases[0][0][0]  # one piece, "▁near"
    assert plain.tokens[plain.tokens.index(near) + 1] == the  # the model writes "near the"
    assert near in after.tokens and after.tokens[after.tokens.index(near) + 1] != the


def test_dynamic_beam_allocation_takes_the_best_of_each_bank_fullest_first():
    # one sentence, 6 candidates: scores and banks (constraint pieces met); the full bank is 2
    scores = torch.tensor([[-1.0, -2.0, -3.0, -4.0, -5.0, float("-inf")]])
    banks = torch.tensor([[0, 0, 1, 2, 2, 2]])
    order = round_robin_order(scores, banks, torch.tensor([2]))
    # bank 2's best (-4), bank 1's best (-3), bank 0's best (-1), then bank 2's second (-5), bank 0's second (-2)
    assert order[0].tolist() == [3, 2, 0, 4, 1, 5]


def test_phrase_state_follows_progress_loses_it_on_a_wrong_piece_and_completes_phrases():
    table = PhraseTable.build([[[7, 8], [9]]], "cpu")  # phrases "7 8" and "9"
    state = PhraseState.start(table, beam=1)
    tokens = torch.tensor([[7, 9, 5]])
    met, current, progress, bank, completes = advance(state, tokens, table.pieces, table.lengths)
    assert progress[0].tolist() == [1, 0, 0] and bank[0].tolist() == [1, 1, 0]
    assert met[0, 1].tolist() == [False, True] and completes[0].tolist() == [False, True, False]
    writing = PhraseState(met[:, 0], current[:, 0], progress[:, 0])  # after 7
    met, current, progress, bank, completes = advance(writing, torch.tensor([[8, 5, 7]]), table.pieces,
                                                      table.lengths)
    assert bank[0].tolist() == [2, 0, 1]  # 8 completes "7 8"; 5 loses the progress; 7 starts the phrase again
    assert met[0, 0].tolist() == [True, False] and completes[0].tolist() == [True, False, False]


def test_lines_are_grouped_by_beam_so_that_few_wide_lines_do_not_widen_many_narrow_ones():
    beams = [4] * 100 + [6] * 3 + [0] * 5 + [7] * 2 + [14]  # 0: unconstrained, not grouped here
    groups = beam_groups(beams)
    assert sorted(p for g in groups for p in g) == [p for p, b in enumerate(beams) if b]
    # a group costs GROUP_COST_ROWS (32) + lines x its widest beam: 6 and 7 share (67 < 50 + 46); 14 stays alone
    assert [sorted({beams[p] for p in g}) for g in groups] == [[4], [6, 7], [14]]


# --- glossaries and term accuracy ----------------------------------------------------------------------------------

def test_glossary_terms_match_on_word_boundaries_with_the_case_as_given(tmp_path):
    path = tmp_path / "glossary.tsv"
    path.write_text("dog\tHund\nbig dog\tgroßer Hund\nCat\tKatze\n# a comment\n\nball\tBall\n", encoding="utf-8")
    glossary = Glossary.load(path)
    assert glossary.constraints("a big dog and a dog") == ["großer Hund", "Hund"]  # longest first at a position
    assert glossary.constraints("dogs play with the cat") == []  # not inside a word; Cat is not cat
    assert glossary.constraints("the ball, the Cat") == ["Ball", "Katze"]


def test_term_accuracy_counts_each_occurrence_against_its_target_term(tmp_path):
    path = tmp_path / "glossary.tsv"
    path.write_text("dog\tHund\nball\tBall\n", encoding="utf-8")
    glossary = Glossary.load(path)
    sources = ["the dog and the dog", "a ball", "nothing here"]
    result = term_accuracy(glossary, sources, ["der Hund", "ein Ball", "nichts"])
    assert (result.found, result.total) == (2, 3) and result.score == pytest.approx(200 / 3)
    assert term_accuracy(glossary, sources, ["Hund Hund", "Balls", ""]).found == 2  # "Balls" is not "Ball"


# --- the command line --------------------------------------------------------------------------------------------

def test_translate_with_a_constraints_file_and_a_glossary_in_json_and_nbest(trained_checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("red dog runs\nthe cat plays\n\nblue ball\n", encoding="utf-8")
    constraints = tmp_path / "constraints.tsv"
    constraints.write_text("zebra\n\n\nwoman\tgreen man\n", encoding="utf-8")
    glossary = tmp_path / "glossary.tsv"
    glossary.write_text("cat\tbike\n", encoding="utf-8")
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--input", str(source), "--constraints",
                     str(constraints), "--glossary", str(glossary), "--json", "--nbest", "2")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 4 and records[2]["translation"] == ""
    for record, phrases in zip(records, [["zebra"], ["bike"], [], ["woman", "green man"]]):
        for hypothesis in record.get("nbest", []):
            assert all(has(hypothesis["translation"], p) for p in phrases), record
    zebra = len(Vocab_of(trained_checkpoint).encode_target(["zebra"])[0])
    assert f"decoded with a beam of up to {zebra + 1}" in result.stderr.replace("\n", " ")  # its pieces + 1 > 4


@pytest.fixture(scope="module")
def short_output_checkpoint(trained_checkpoint, tmp_path_factory):
    """The copy model with a learned position table of 12 rows: it can write at most 12 pieces."""
    from nmt.checkpoint import config_from_payload
    from nmt.model.transformer import build_model

    payload = load_checkpoint(trained_checkpoint)
    payload["model_config"].update(learned_positions=True, max_positions=12)
    weights = build_model(config_from_payload(payload)).state_dict()
    weights.update(payload["model"])
    payload["model"] = weights
    path = tmp_path_factory.mktemp("short") / "short.pt"
    save_checkpoint(payload, path)
    return path


def refused(*args, input: str = "red dog runs\nblue cat\n") -> str:
    result = run_nmt(*args, input=input, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    return message


def test_bad_constraint_and_glossary_files_end_in_one_line_naming_file_and_line(trained_checkpoint, tmp_path):
    checkpoint = ["translate", "--checkpoint", str(trained_checkpoint)]
    files = {"short.tsv": "dog\n", "long.tsv": "dog\n\ncat\n", "empty.tsv": "dog\ncat\t\tball\n",
             "notab.tsv": "dog\tHund\ncat Katze\n", "blank.tsv": "dog\t \n", "three.tsv": "dog\tHund\tchien\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert f"{tmp_path / 'short.tsv'} has fewer lines than the input (1 against 2 or more)" in refused(
        *checkpoint, "--constraints", str(tmp_path / "short.tsv"))
    # found after the first window was translated: an --output file appears whole or not at all
    output = tmp_path / "out.txt"
    assert "has fewer lines than the input" in refused(*checkpoint, "--constraints", str(tmp_path / "short.tsv"),
                                                       "--buffer-size", "1", "--output", str(output))
    assert not output.exists() and not (tmp_path / ".out.txt.tmp").exists()
    assert f"{tmp_path / 'missing.tsv'}: file not found" in refused(*checkpoint, "--constraints",
                                                                  str(tmp_path / "missing.tsv"))
    assert f"{tmp_path / 'long.tsv'} has more lines than the input (2)" in refused(
        *checkpoint, "--constraints", str(tmp_path / "long.tsv"))
    assert f"{tmp_path / 'empty.tsv'}:2: an empty constraint" in refused(
        *checkpoint, "--constraints", str(tmp_path / "empty.tsv"))
    assert f"{tmp_path / 'notab.tsv'}:2: expected `source term<TAB>target term`, found no tab" in refused(
        *checkpoint, "--glossary", str(tmp_path / "notab.tsv"))
    assert f"{tmp_path / 'blank.tsv'}:1: empty target term" in refused(
        *checkpoint, "--glossary", str(tmp_path / "blank.tsv"))
    assert "three.tsv:1: expected `source term<TAB>target term`, found 3 tab-separated fields" in refused(
        *checkpoint, "--glossary", str(tmp_path / "three.tsv"))


def test_a_constraint_longer_than_the_model_can_write_is_refused_naming_the_line(short_output_checkpoint,
                                                                                tmp_path):
    constraints = tmp_path / "constraints.tsv"
    long_phrase = "green bike near the big red ball with a small woman near the water"  # 14 pieces
    constraints.write_text(f"dog\n{long_phrase}\n", encoding="utf-8")
    message = refused("translate", "--checkpoint", str(short_output_checkpoint), "--constraints", str(constraints))
    assert message.startswith(f"error: {constraints}:2: the constraints need 15 pieces with end-of-sentence; "
                              "this model writes at most 12"), message
    glossary = tmp_path / "glossary.tsv"
    glossary.write_text(f"cat\t{long_phrase}\n", encoding="utf-8")
    message = refused("translate", "--checkpoint", str(short_output_checkpoint), "--glossary", str(glossary))
    assert "input line 2 (its glossary terms): the constraints need 15 pieces" in message
    fits = tmp_path / "fits.tsv"
    fits.write_text("dog\ngreen bike near the big red ball\n", encoding="utf-8")  # 7 pieces + eos: within 12
    result = run_nmt("translate", "--checkpoint", str(short_output_checkpoint), "--constraints", str(fits),
                     input="red dog runs\nblue cat\n")
    assert "green bike near the big red ball" in result.stdout.splitlines()[1]


def test_options_that_cannot_honour_constraints_are_refused(trained_checkpoint, tmp_path):
    constraints = tmp_path / "constraints.tsv"
    constraints.write_text("dog\tred dog\ncat\n", encoding="utf-8")
    checkpoint = ["translate", "--checkpoint", str(trained_checkpoint), "--constraints", str(constraints)]
    assert "not with --sampling" in refused(*checkpoint, "--sampling")
    assert "--constraints: not with --engine ctranslate2 (CTranslate2 has no constrained search)" in refused(
        *checkpoint, "--engine", "ctranslate2")
    assert (f"{constraints}:1: the constraints repeat the pieces \u2581dog, which --no-repeat-ngram-size 1 forbids"
            in refused(*checkpoint, "--no-repeat-ngram-size", "1"))
    assert run_nmt(*checkpoint, "--no-repeat-ngram-size", "2", input="red dog runs\nblue cat\n").returncode == 0


def test_score_prints_term_accuracy_beside_bleu(tmp_path):
    files = {"src": "the dog\na cat and a dog\nnothing\n", "ref": "der Hund\neine Katze und ein Hund\nnichts\n",
             "hyp": "der Hund\neine Mieze und ein Hund\nnichts\n", "glossary": "dog\tHund\ncat\tKatze\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    args = ["score", "--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--terms",
            str(tmp_path / "glossary"), "--source", str(tmp_path / "src")]
    text = run_nmt(*args).stdout
    assert "BLEU = " in text and "term accuracy = 66.67 (2 of 3 source-term occurrences" in text
    assert "the reference: 100.00, 3 of 3" in text
    report = json.loads(run_nmt(*args, "--json").stdout)
    assert report["term_accuracy"] == {"score": 66.67, "found": 2, "total": 3, "reference": 100.0,
                                       "reference_found": 3}
    assert "--terms and --source go together" in refused(*args[:-2])


@pytest.mark.parametrize("settings", [{"precision": "bf16"}, {"ensemble": True}, {"record_attention": True}],
                         ids=["bf16-autocast", "ensemble", "attention"])
def test_constraints_hold_under_bf16_autocast_with_an_ensemble_and_with_attention(trained_checkpoint, settings):
    # bf16 autocast is the GPU path (log-probabilities stay fp32); an ensemble is another DecodingModel
    checkpoints = [trained_checkpoint]
    if settings.get("ensemble"):
        checkpoints.append(sorted(trained_checkpoint.parent.glob("checkpoint_*[0-9].pt"))[0])
    translator = Translator(checkpoints, SearchConfig(beam=4), "cpu", precision=settings.get("precision", "fp32"),
                            record_attention=settings.get("record_attention", False))
    constraints = [["zebra"], ["street bike", "cat"], ["woman"]]
    for (best,), phrases in zip(translator.translate(LINES[:3], constraints=constraints), constraints):
        assert all(has(best.text, p) for p in phrases), best.text
        if settings.get("record_attention"):
            assert best.attention.shape[1] == len(best.tokens) + 1 and len(best.alignment) == len(best.tokens)
