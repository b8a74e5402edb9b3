"""`nmt score` is sacreBLEU: the same numbers and signatures as calling the library directly; `--paper` is the
paper's tokenized BLEU, checked step by step on known examples and against a figure worked out by hand."""

import json
import math
from pathlib import Path

import pytest
import sacrebleu

from conftest import run_nmt
from nmt.errors import NmtError
from nmt.score import PaperTokenizer, paired_bootstrap, paper_bleu, score, split_compounds

HYPS = ["The cat sat on the mat.", "A man rides a bike down the street.", "Two dogs play."]
REFS = ["The cat sat on a mat.", "A man is riding a bicycle down the street.", "Two dogs are playing."]


def test_scores_equal_sacrebleu():
    results = {r.metric: r for r in score(HYPS, [REFS], ["bleu", "chrf", "ter"])}
    assert results["bleu"].score == round(sacrebleu.corpus_bleu(HYPS, [REFS]).score, 2)
    assert results["chrf"].score == round(sacrebleu.corpus_chrf(HYPS, [REFS]).score, 2)
    assert results["ter"].score == round(sacrebleu.corpus_ter(HYPS, [REFS]).score, 2)
    assert "tok:13a" in results["bleu"].signature and "case:mixed" in results["bleu"].signature


def test_several_references():
    other = ["The cat sat on the mat.", "A man rides a bike down the street.", "Two dogs play."]
    assert score(HYPS, [REFS, other], ["bleu"])[0].score == 100.0


# --- the paper's tokenized BLEU with compound splitting ----------------------------------------------------------

PAPER_FILES = Path(__file__).parent / "data" / "paper_bleu"


def test_moses_tokenization_escapes_as_tokenizer_perl():
    tokenize = PaperTokenizer("de")
    assert tokenize('Er sagt: "A & B".') == "Er sagt : &quot; A &amp; B &quot; ."
    assert tokenize("Wie geht's? <gut> [ja] | nein") == "Wie geht &apos; s ? &lt; gut &gt; &#91; ja &#93; &#124; nein"
    assert PaperTokenizer("en")("It's") == "It &apos;s"  # English keeps the clitic together


def test_compound_split_is_perls_non_overlapping_substitution():
    assert split_compounds("Pre-Trainings-Modell") == "Pre ##AT##-##AT## Trainings ##AT##-##AT## Modell"
    assert split_compounds("1-2-3") == "1 ##AT##-##AT## 2-3"  # the 2 was consumed by the first match, as in Perl
    assert split_compounds("x - y") == "x - y"  # a free-standing dash is not a compound
    assert PaperTokenizer("de")("ein E-Book.") == "ein E ##AT##-##AT## Book ."


def test_paper_bleu_on_committed_files_equals_the_figure_worked_out_by_hand():
    """tests/data/paper_bleu, tokenized (shown by the assertions below), counted by hand:

    H1 Der Hunde ##AT##-##AT## Besitzer sagt &quot; Hallo &quot; .                     (9 tokens)
    R1 Der Hunde ##AT##-##AT## Besitzer sagt : &quot; Hallo &amp; tschüss &quot; .   (12)
    H2 Sie kauft ein Buch .                                                            (5)
    R2 Sie kauft ein E ##AT##-##AT## Book .                                            (7)

    matching 1-grams 9 + 4 of 14; 2-grams 6 + 2 of 12 (H1 misses "sagt &quot;", "Hallo &quot;"; H2 "ein Buch",
    "Buch ."); 3-grams 3 + 1 of 10; 4-grams 2 + 0 of 8; hypothesis length 14, reference length 19:
    BLEU = exp(1 - 19/14) * (13/14 * 8/12 * 4/10 * 2/8) ** (1/4) = 34.90
    """
    hypotheses = (PAPER_FILES / "hyp.de").read_text(encoding="utf-8").splitlines()
    references = (PAPER_FILES / "ref.de").read_text(encoding="utf-8").splitlines()
    tokenize = PaperTokenizer("de")
    assert [tokenize(line) for line in hypotheses] == [
        "Der Hunde ##AT##-##AT## Besitzer sagt &quot; Hallo &quot; .", "Sie kauft ein Buch ."]
    assert [tokenize(line) for line in references] == [
        "Der Hunde ##AT##-##AT## Besitzer sagt : &quot; Hallo &amp; tschüss &quot; .",
        "Sie kauft ein E ##AT##-##AT## Book ."]
    by_hand = 100 * math.exp(1 - 19 / 14) * (13 / 14 * 8 / 12 * 4 / 10 * 2 / 8) ** 0.25
    assert round(by_hand, 2) == 34.90
    result = paper_bleu(hypotheses, [references], "de")
    assert result.score == 34.90
    assert "moses-de-escape+atat" in result.signature and "tok:none" in result.signature
    # Detokenized sacreBLEU on the same files is another figure: its 13a tokenizer keeps compounds whole.
    assert score(hypotheses, [references], ["bleu"])[0].score != result.score


def test_score_cli_prints_both_figures_labelled_and_a_paired_bootstrap(tmp_path):
    better = tmp_path / "better.de"
    better.write_text('Der Hunde-Besitzer sagt: "Hallo".\nSie kauft ein E-Book.\n', encoding="utf-8")
    result = run_nmt("score", "--ref", str(PAPER_FILES / "ref.de"), "--hyp", str(PAPER_FILES / "hyp.de"),
                     "--hyp", str(better), "--metrics", "bleu", "--paper", "--paired-bs", "--paired-bs-n", "200")
    assert "tokenized BLEU as in the paper" in result.stdout and "detokenized sacreBLEU: BLEU = " in result.stdout
    assert "BLEU = 34.90" in result.stdout  # the paper figure of hyp.de, the language taken from ref.de
    assert "paired bootstrap resampling (200 resamples)" in result.stdout and "bs:200" in result.stdout
    as_json = json.loads(run_nmt("score", "--ref", str(PAPER_FILES / "ref.de"), "--hyp", str(PAPER_FILES / "hyp.de"),
                                 "--hyp", str(better), "--metrics", "bleu", "--paired-bs", "--json").stdout)
    baseline, system = as_json["paired_bs"]
    assert baseline["p_value"] is None and 0.0 <= system["p_value"] <= 1.0
    assert system["score"] == as_json["systems"][str(better)]["bleu"]["score"]


def test_paired_bootstrap_needs_two_systems():
    with pytest.raises(NmtError, match="baseline and at least one more"):
        paired_bootstrap([("a", HYPS)], [REFS], ["bleu"])
