"""`nmt report SAVE_DIR`: a Markdown page with the run's curves as PNGs, its config, data and final score."""

import json
import shutil

import pytest
from PIL import Image

from conftest import run_nmt
from nmt.config import replace_fields, transformer_tiny
from nmt.train.trainer import Trainer
from test_bad_input import one_line_error


@pytest.fixture(scope="module")
def run_with_bleu(copy_data, tmp_path_factory):
    """A tiny run that validates (loss and greedy BLEU) every 10 updates, with its test score saved."""
    tiny = transformer_tiny()
    train = replace_fields(tiny.train, {"max_updates": 30, "save_interval_updates": 10, "log_interval": 5,
                                        "valid_bleu": True, "max_tokens": 512})
    save_dir = tmp_path_factory.mktemp("report-run")
    Trainer(copy_data, save_dir, tiny.model, train).run()
    hyp = save_dir / "test.hyp"
    hyp.write_text(run_nmt("translate", "--checkpoint", str(save_dir / "checkpoint_last.pt"), "--input",
                           str(copy_data / "test.src")).stdout, encoding="utf-8")
    score = run_nmt("score", "--ref", str(copy_data / "test.tgt"), "--hyp", str(hyp), "--json").stdout
    (save_dir / "score.json").write_text(score, encoding="utf-8")
    return save_dir


def test_report_plots_every_curve_and_shows_config_data_and_signature(run_with_bleu):
    result = run_nmt("report", str(run_with_bleu))
    out = run_with_bleu / "report"
    assert "report.md" in result.stderr  # messages go to stderr, as all of nmt's
    for name in ("loss.png", "lr.png", "throughput.png", "bleu.png"):
        image = Image.open(out / name).convert("L")
        low, high = image.getextrema()
        assert image.size[0] >= 400 and high - low > 100, f"{name} is blank"
    text = (out / "report.md").read_text(encoding="utf-8")
    for name in ("loss.png", "lr.png", "throughput.png", "bleu.png"):
        assert f"]({name})" in text
    assert "| updates | 30 |" in text and "best validation BLEU" in text
    score = json.loads((run_with_bleu / "score.json").read_text())
    assert f"| bleu | {score['bleu']['score']:.2f} |" in text
    assert score["bleu"]["signature"].replace("|", "\\|") in text  # escaped: a pipe would end the table cell
    assert '"max_updates": 30' in text and '"d_model": 64' in text  # the config
    assert "| train pairs | 3,000" in text  # the data manifest


def test_report_of_a_run_killed_mid_line_says_so_and_still_plots(run_with_bleu, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_with_bleu, copy, ignore=shutil.ignore_patterns("*.pt", "report"))
    with open(copy / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"update": 31, "loss": 1.')  # the write a kill -9 cut short
    (copy / "score.json").unlink()
    run_nmt("report", str(copy), "--out", str(tmp_path / "out"))
    text = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "is not a record (a run killed mid-write" in text and "None saved" in text
    assert (tmp_path / "out" / "loss.png").stat().st_size > 1000


def test_report_of_something_that_is_not_a_run_is_one_line(tmp_path):
    one_line_error(run_nmt("report", str(tmp_path / "absent"), check=False), "no such directory")
    one_line_error(run_nmt("report", str(tmp_path), check=False), "no metrics.jsonl")
