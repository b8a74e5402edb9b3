"""`nmt logprob`: the model's log-probability of given translations, checked against teacher-forced decoding written
out here pair by pair, and against the score beam search gave its own output."""

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import run_nmt
from nmt.checkpoint import load_model
from nmt.logprob import ForcedScorer
from nmt.search.beam import length_penalty
from nmt.engines.pytorch import Translator

SOURCES = ["red dog runs", "the small cat plays with a ball near the water", "a man", "blue bike street",
           "the big woman jumps"]
TARGETS = ["red dog runs", "the small cat plays with a ball near water", "a woman", "green bike street", "the big"]


def teacher_forced_logprobs(checkpoint, source: str, target: str) -> list[float]:
    """One pair alone, no batching or padding: log P(piece_t | source, pieces before t) for each piece and eos."""
    model, vocab, _ = load_model(checkpoint)
    config = model.config
    source_ids = vocab.encode_source([source])[0] + [config.eos_id]
    target_ids = vocab.encode_target([target])[0] + [config.eos_id]
    prev = [config.bos_id] + target_ids[:-1]
    with torch.no_grad():
        logits = model(torch.tensor([source_ids]), torch.tensor([prev]))[0]
    logprobs = F.log_softmax(logits.double(), dim=-1)
    return [float(logprobs[t, token]) for t, token in enumerate(target_ids)]


def test_scores_equal_teacher_forced_decoding_of_each_pair_alone(trained_checkpoint):
    results = ForcedScorer(trained_checkpoint, max_tokens=40).score(SOURCES, TARGETS)  # several padded batches
    for source, target, result in zip(SOURCES, TARGETS, results):
        expected = teacher_forced_logprobs(trained_checkpoint, source, target)
        assert result.piece_logprobs == pytest.approx(expected, abs=1e-5)
        assert result.logprob == pytest.approx(sum(expected), abs=1e-5)
        assert result.per_token == pytest.approx(sum(expected) / len(expected), abs=1e-5)
        assert result.pieces[-1] == "</s>" and len(result.pieces) == len(expected)
    # A copy the model learned is likely; a changed word is not.
    assert results[0].per_token > results[3].per_token


def test_the_score_of_the_beams_own_output_is_its_score_without_the_length_penalty(trained_checkpoint):
    translator = Translator(trained_checkpoint)
    best = [hyps[0] for hyps in translator.translate(SOURCES)]
    scorer = ForcedScorer(trained_checkpoint)
    compared = 0
    for source, hypothesis, result in zip(SOURCES, best, scorer.score(SOURCES, [h.text for h in best])):
        if result.pieces[:-1] != hypothesis.tokens:
            continue  # the text re-encodes to other pieces than the beam chose: another target
        penalty = length_penalty(len(hypothesis.tokens) + 1, translator.search.lenpen, translator.search.lenpen_style)
        assert result.logprob == pytest.approx(hypothesis.score * penalty, abs=1e-4)
        compared += 1
    assert compared >= 4


def test_nmt_logprob_reads_two_files_or_tsv_and_writes_a_line_per_pair(trained_checkpoint, tmp_path):
    source, target = tmp_path / "s.txt", tmp_path / "t.txt"
    source.write_text("\n".join(SOURCES) + "\n")
    target.write_text("\n".join(TARGETS) + "\n")
    files = run_nmt("logprob", "--checkpoint", str(trained_checkpoint), "--source", str(source), "--target",
                    str(target), "--word-scores").stdout.splitlines()
    tsv = run_nmt("logprob", "--checkpoint", str(trained_checkpoint), "--word-scores",
                  input="".join(f"{s}\t{t}\n" for s, t in zip(SOURCES, TARGETS))).stdout.splitlines()
    assert files == tsv and len(files) == len(SOURCES)
    expected = ForcedScorer(trained_checkpoint).score(SOURCES, TARGETS)
    for line, result in zip(files, expected):
        total, per_token, words = line.split("\t")
        assert float(total) == pytest.approx(result.logprob, abs=1e-5)
        assert float(per_token) == pytest.approx(result.per_token, abs=1e-5)
        assert len(words.split()) == len(result.pieces)
    run_nmt("logprob", "--checkpoint", str(trained_checkpoint), "--source", str(source), "--target", str(target),
            "--json", "--output", str(tmp_path / "out.jsonl"))
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["logprob"] for r in records] == pytest.approx([r.logprob for r in expected], abs=1e-5)
    assert records[0]["pieces"][-1] == "</s>" and "word_scores" not in records[0]


@pytest.mark.parametrize("case", ["fewer targets", "empty target", "no tab", "one file only", "missing file"])
def test_bad_pairs_end_in_one_line_and_write_nothing(trained_checkpoint, tmp_path, case):
    source, target, out = tmp_path / "s.txt", tmp_path / "t.txt", tmp_path / "out.txt"
    source.write_text("a red dog\nthe cat\nblue bike\n")
    target.write_text({"fewer targets": "a red dog\nthe cat\n", "empty target": "a red dog\n\nblue bike\n"}.get(
        case, "a red dog\nthe cat\nblue bike\n"))
    args = ["logprob", "--checkpoint", str(trained_checkpoint), "--output", str(out)]
    stdin = None
    if case == "no tab":
        stdin = "a red dog\tein roter hund\nthe cat\n"
    elif case == "one file only":
        args += ["--source", str(source)]
    elif case == "missing file":
        args += ["--source", str(source), "--target", str(tmp_path / "nowhere.txt")]
    else:
        args += ["--source", str(source), "--target", str(target)]
    result = run_nmt(*args, input=stdin, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr and lines[-1].startswith("error:")
    expected = {"fewer targets": "has 3 lines but", "empty target": "line 2: the target is empty",
                "no tab": "<stdin>:2: expected `source<TAB>target`", "one file only": "give both --source and --target",
                "missing file": "nowhere.txt: file not found"}[case]
    assert expected in lines[-1]
    assert not out.exists()
