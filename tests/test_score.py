"""`nmt score` is sacreBLEU: the same numbers and signatures as calling the library directly."""

import sacrebleu

from nmt.score import score

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
