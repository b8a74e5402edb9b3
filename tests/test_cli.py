"""The command line as a user meets it: a copy task end to end, help texts, and bad input."""

import json

import pytest

from conftest import run_nmt, write_copy_corpus

COMMANDS = ["prepare", "train", "average-checkpoints", "translate", "score", "report", "export"]


def test_a_tiny_model_learns_the_copy_task_through_the_cli(tmp_path):
    corpus = write_copy_corpus(tmp_path / "corpus", seed=1)
    data, run = tmp_path / "data", tmp_path / "run"
    run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(corpus / "train"),
            "--valid", str(corpus / "valid"), "--test", str(corpus / "test"), "--out", str(data),
            "--vocab-size", "400")
    trained = run_nmt("train", str(data), "--arch", "transformer_tiny", "--save-dir", str(run), "--max-updates",
                      "300", "--save-interval-updates", "100", "--threads", "2", "--no-valid-bleu")
    assert "parameters" in trained.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for name in ("update", "epoch", "loss", "nll_loss", "lr", "tgt_tokens_per_s", "src_tokens_per_s"):
        assert name in records[0]
    valid = [r for r in records if "valid_loss" in r]
    assert valid[-1]["valid_loss"] < valid[0]["valid_loss"]

    run_nmt("average-checkpoints", str(run), "--last", "2", "--output", str(run / "averaged.pt"))
    sources = (corpus / "test.src").read_text().splitlines()
    out = run_nmt("translate", "--checkpoint", str(run / "averaged.pt"), "--beam", "4",
                  input="\n".join(sources) + "\n")
    hypotheses = out.stdout.split("\n")[:-1]
    assert len(hypotheses) == len(sources)
    exact = sum(h == s for h, s in zip(hypotheses, sources)) / len(sources)
    assert exact >= 0.8, f"only {exact:.0%} copied exactly"

    (tmp_path / "hyp.txt").write_text(out.stdout)
    scored = run_nmt("score", "--ref", str(corpus / "test.tgt"), "--hyp", str(tmp_path / "hyp.txt"), "--json")
    result = json.loads(scored.stdout)
    assert result["bleu"]["score"] > 80 and "nrefs:1" in result["bleu"]["signature"]
    assert set(result) == {"bleu", "chrf", "ter"}


def test_empty_lines_and_empty_input(trained_checkpoint):
    out = run_nmt("translate", "--checkpoint", str(trained_checkpoint), input="red dog\n\n   \nthe cat\n")
    lines = out.stdout.split("\n")
    assert len(lines) == 5 and lines[1] == "" and lines[2] == "" and lines[0] and lines[3]
    empty = run_nmt("translate", "--checkpoint", str(trained_checkpoint), input="")
    assert empty.returncode == 0 and empty.stdout == ""


def test_nbest_lines_are_moses_style_and_the_first_is_the_one_best(trained_checkpoint):
    one = run_nmt("translate", "--checkpoint", str(trained_checkpoint), input="red dog runs\nthe big cat\n")
    nbest = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--nbest", "3",
                    input="red dog runs\nthe big cat\n")
    rows = [line.split(" ||| ") for line in nbest.stdout.splitlines()]
    assert [r[0] for r in rows] == ["0"] * 3 + ["1"] * 3
    for index, best in enumerate(one.stdout.splitlines()):
        group = [r for r in rows if r[0] == str(index)]
        assert group[0][1] == best
        scores = [float(r[2]) for r in group]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help(command):
    import click
    import typer

    from nmt.cli import app

    group = typer.main.get_command(app)
    click_command = group.commands[command]
    text = run_nmt(command, "--help").stdout
    assert click_command.help and click_command.help.split()[0] in text
    for param in click_command.params:
        if isinstance(param, click.Option):
            assert param.help, f"nmt {command} {param.opts[0]} has no help text"
            assert param.opts[0] in text
        else:
            assert getattr(param, "help", None), f"nmt {command} argument {param.name} has no help text"


def test_top_level_help_lists_the_commands():
    text = run_nmt("--help").stdout
    assert all(name in text for name in COMMANDS)


def one_line_error(result, *fragments):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    message = lines[-1]  # progress lines may come before it; the error is one line, the last
    assert message.startswith("error: "), result.stderr
    assert sum(line.startswith("error:") for line in lines) == 1
    for fragment in fragments:
        assert fragment in message, message


def prepare_custom(folder, train_src: bytes, train_tgt: bytes):
    """`nmt prepare custom` on a training pair as given and a one-line valid split."""
    (folder / "train.src").write_bytes(train_src)
    (folder / "train.tgt").write_bytes(train_tgt)
    (folder / "valid.src").write_text("a\n")
    (folder / "valid.tgt").write_text("a\n")
    return run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(folder / "train"),
                   "--valid", str(folder / "valid"), "--out", str(folder / "out"), check=False)


def test_corpus_sides_of_different_length(tmp_path):
    one_line_error(prepare_custom(tmp_path, b"a\nb\nc\n", b"a\nb\n"), "train.src", "train.tgt")


def test_missing_file(tmp_path):
    result = run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(tmp_path / "none"),
                     "--valid", str(tmp_path / "none"), "--out", str(tmp_path / "out"), check=False)
    one_line_error(result, "none.src")
    one_line_error(run_nmt("translate", "--checkpoint", str(tmp_path / "absent.pt"), input="x\n", check=False),
                   "absent.pt")


def test_invalid_utf8_names_file_and_line(tmp_path, trained_checkpoint):
    one_line_error(prepare_custom(tmp_path, b"ok\nok\nbad \xc3\x28 byte\n", b"a\nb\nc\n"), "train.src:3", "UTF-8")
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), input=b"red dog\n\xff\n", check=False)
    one_line_error(result, "<stdin>:2", "UTF-8")


def test_invalid_option_values(trained_checkpoint, tmp_path):
    one_line_error(run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--beam", "-1", input="x\n",
                           check=False), "--beam")
    one_line_error(run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--lenpen", "nan", input="x\n",
                           check=False), "--lenpen")
    one_line_error(run_nmt("train", str(tmp_path), "--arch", "transformer_huge", check=False), "--arch")


def test_a_run_in_the_save_dir_is_not_overwritten(trained_checkpoint, copy_data):
    result = run_nmt("train", str(copy_data), "--arch", "transformer_tiny", "--save-dir",
                     str(trained_checkpoint.parent), check=False)
    one_line_error(result, "--resume")


def test_score_counts_must_match(tmp_path):
    (tmp_path / "ref").write_text("a b c\nd e f\n")
    one_line_error(run_nmt("score", "--ref", str(tmp_path / "ref"), input="a b c\n", check=False),
                   "1 hypotheses", "2 lines")
