"""What a new user stumbles on, each through the command they type: suggestions that work as printed, messages that
say what a path is and what to do, defaults taken from the checkpoint, warnings where a command quietly did less
than asked, a time limit that holds, and readable help. (The example scripts run from a fresh clone in
test_docs.py.)"""

import json
import os
import shlex
import time

import pytest

from conftest import REPO, run_nmt
from nmt.checkpoint import load_checkpoint


def error_line(result) -> str:
    """The one `error:` line a failing command prints; no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("error:"), result.stderr
    return lines[-1]


def test_the_export_suggestion_works_exactly_as_printed(trained_checkpoint, tmp_path):
    pytest.importorskip("ctranslate2")
    exported = run_nmt("export", "ctranslate2", str(trained_checkpoint), str(tmp_path / "ct2"))
    suggestion = exported.stderr.split("try:", 1)[1].strip()
    words = shlex.split(suggestion)
    assert words[:2] == ["nmt", "translate"]
    translated = run_nmt(*words[1:], input="red dog runs\n")
    assert translated.stdout == "red dog runs\n"
    # Asked for the style CTranslate2 lacks, it says so and uses the one it has.
    told = run_nmt(*words[1:], "--lenpen-style", "gnmt", input="red dog runs\n")
    assert told.stdout == "red dog runs\n" and "--lenpen-style length is used" in told.stderr


def test_a_folder_given_as_checkpoint_is_named_with_what_to_do(trained_checkpoint, tmp_path):
    save_dir = trained_checkpoint.parent
    result = run_nmt("translate", "--checkpoint", str(save_dir), input="red dog\n", check=False)
    line = error_line(result)
    assert "is a folder, not a checkpoint file" in line and "checkpoint_last.pt" in line
    pytest.importorskip("ctranslate2")
    exported = tmp_path / "ct2"
    run_nmt("export", "ctranslate2", str(trained_checkpoint), str(exported))
    line = error_line(run_nmt("translate", "--checkpoint", str(exported), input="red dog\n", check=False))
    assert "CTranslate2 model folder" in line and "--engine ctranslate2" in line
    line = error_line(run_nmt("translate", "--engine", "ctranslate2", "--checkpoint", str(trained_checkpoint),
                              input="red dog\n", check=False))
    assert "--engine torch" in line
    line = error_line(run_nmt("translate", "--checkpoint", str(tmp_path / "nowhere.pt"), input="x\n", check=False))
    assert line.endswith("checkpoint not found")


def test_init_from_and_resume_take_the_checkpoints_architecture(trained_checkpoint, copy_data, tmp_path):
    # No --arch: the checkpoint's (transformer_tiny here), not the transformer_base default.
    tuned = tmp_path / "tuned"
    result = run_nmt("train", str(copy_data), "--init-from", str(trained_checkpoint), "--save-dir", str(tuned),
                     "--max-updates", "2", "--no-valid-bleu", "--threads", "1")
    assert "from --init-from" in result.stderr and "transformer_tiny" in result.stderr
    assert load_checkpoint(tuned / "checkpoint_last.pt")["model_config"]["d_model"] == 64
    # Resuming that run without --arch continues it with the run's own settings.
    resumed = run_nmt("train", str(copy_data), "--resume", "--save-dir", str(tuned), "--max-updates", "4",
                      "--no-valid-bleu", "--threads", "1")
    assert "at update 4" in resumed.stderr
    # A conflicting --arch is refused, naming the checkpoint's preset.
    line = error_line(run_nmt("train", str(copy_data), "--arch", "transformer_small", "--init-from",
                              str(trained_checkpoint), "--save-dir", str(tmp_path / "x"), check=False))
    assert "the checkpoint is a transformer_tiny" in line and "--arch transformer_tiny" in line


def test_average_checkpoints_warns_when_fewer_exist_and_refuses_one_file_twice(trained_checkpoint, tmp_path):
    save_dir = trained_checkpoint.parent  # 3 interval checkpoints (100, 200, 300)
    result = run_nmt("average-checkpoints", str(save_dir), "--last", "5", "--output", str(tmp_path / "a.pt"))
    assert "--last 5 asked, but" in result.stderr and "only 3" in result.stderr
    assert len(load_checkpoint(tmp_path / "a.pt")["averaged_from"]) == 3
    last = save_dir / "checkpoint_last.pt"
    twin = save_dir / "checkpoint_300.pt"
    assert os.path.samefile(last, twin)
    line = error_line(run_nmt("average-checkpoints", str(last), str(twin), "--output", str(tmp_path / "b.pt"),
                              check=False))
    assert "are the same file" in line
    assert not (tmp_path / "b.pt").exists()


def test_max_time_holds_the_final_validation_and_the_report_says_what_was_measured(copy_data, tmp_path):
    save_dir = tmp_path / "run"
    budget = 0.15 * 60
    run_nmt("train", str(copy_data), "--arch", "transformer_tiny", "--save-dir", str(save_dir), "--max-time", "0.15",
            "--max-updates", "0", "--save-interval-updates", "20", "--log-interval", "5", "--valid-bleu",
            "--threads", "1")
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "valid_loss" in r]
    assert len(validations) >= 2
    seconds = load_checkpoint(save_dir / "checkpoint_last.pt")["training"]["progress"]["validation_seconds"]
    assert seconds > 0
    # The run stopped early enough for its final validation: it ends within the budget, give or take the
    # difference between two validations' durations (the last one measured is the reserve), one update and the
    # record's rounding to 0.1 s.
    assert validations[-1]["wall"] <= budget + seconds + 0.3, (validations[-1]["wall"], seconds)
    pytest.importorskip("matplotlib")
    run_nmt("report", str(save_dir))
    report = (save_dir / "report" / "report.md").read_text()
    wall = max(r["wall"] for r in records)
    assert f"| wall time (training and validation) | {wall / 60:.1f} minutes ({wall:,.0f} s) |" in report
    windows = sum(1 for r in records if "loss" in r and r.get("tgt_tokens_per_s"))
    assert f"median of {windows} log windows, every 5 updates" in report


def test_the_time_limit_keeps_room_for_the_last_validation_it_measured(copy_data, tmp_path):
    from nmt.config import replace_fields, transformer_tiny
    from nmt.train.trainer import Trainer

    tiny = transformer_tiny()
    trainer = Trainer(copy_data, tmp_path / "run", tiny.model, replace_fields(tiny.train, {"max_time": 1.0}))
    trainer.started = time.monotonic() - 30  # half the minute spent
    assert trainer._limit_reached(include_time=True) is None
    trainer.progress.validation_seconds = 31.0  # the last validation took longer than what is left
    assert trainer._limit_reached(include_time=True) == "reached --max-time 1 minutes"
    trainer.close()


def test_validation_bleu_is_left_out_rather_than_overrun_the_time_limit(copy_data, tmp_path):
    from nmt.config import replace_fields, transformer_tiny
    from nmt.train.trainer import Trainer

    tiny = transformer_tiny()
    trainer = Trainer(copy_data, tmp_path / "run", tiny.model,
                      replace_fields(tiny.train, {"max_time": 0.001, "valid_bleu": True}))
    messages = []
    trainer.reporter.message = messages.append
    trainer.started = time.monotonic() - 60  # the 0.06 s budget is long spent
    metrics = trainer.validate()
    assert "valid_loss" in metrics and "valid_bleu" not in metrics
    assert any("validation BLEU left out" in m for m in messages)
    trainer.close()


def test_print_config_shows_what_a_preset_sets(trained_checkpoint):
    small = json.loads(run_nmt("train", "--arch", "transformer_small", "--print-config").stdout)
    assert small["defaults"] == "transformer_small"
    assert small["train"]["max_time"] == 20.0 and small["train"]["valid_bleu"] is True
    assert small["model"]["d_model"] == 256
    overridden = json.loads(run_nmt("train", "--arch", "transformer_small", "--max-time", "5", "--print-config").stdout)
    assert overridden["train"]["max_time"] == 5.0
    tuned = json.loads(run_nmt("train", "--init-from", str(trained_checkpoint), "--print-config").stdout)
    assert tuned["model"]["d_model"] == 64 and "transformer_tiny" in tuned["defaults"]
    assert "--print-config" in run_nmt("train", "--help").stdout


def test_a_data_dir_that_is_not_there_or_one_level_too_high_is_named(copy_data, tmp_path):
    line = error_line(run_nmt("train", str(tmp_path / "runs" / "missing" / "data"), "--arch", "transformer_tiny",
                              "--save-dir", str(tmp_path / "a"), check=False))
    assert "no such folder" in line and "nmt prepare" in line
    parent = tmp_path / "runs"
    (parent / "de-en").mkdir(parents=True)
    for item in copy_data.iterdir():
        (parent / "de-en" / item.name).symlink_to(item)
    line = error_line(run_nmt("train", str(parent), "--arch", "transformer_tiny", "--save-dir", str(tmp_path / "b"),
                              check=False))
    assert f"{parent / 'de-en'} holds a prepared dataset" in line


def test_a_failed_download_points_at_mirror(tmp_path):
    from nmt.data.download import RemoteFile, fetch
    from nmt.errors import NmtError

    with pytest.raises(NmtError, match=r"download failed after 1 attempts .*--mirror DIR_OR_URL"):
        fetch(RemoteFile("x.tgz", "http://127.0.0.1:9/x.tgz"), tmp_path, retries=0, backoff=0)


def test_the_docs_agree_that_bf16_speed_depends_on_the_cpu_and_say_how_to_measure_it():
    for doc in ("training.md", "faq.md"):
        text = " ".join((REPO / "docs" / doc).read_text().split())
        assert "depends on the CPU" in text and "benchmarks/flops.py" in text, doc
        assert "not faster" not in text and "twice the fp32 rate and bf16 training is faster" not in text, doc
    assert "__main__" in (REPO / "benchmarks" / "flops.py").read_text()


def test_usage_lines_read_as_a_person_would_write_them():
    translate = run_nmt("translate", "--help").stdout
    assert "nmt translate [OPTIONS] [CHECKPOINT]...\n" in translate
    average = run_nmt("average-checkpoints", "--help").stdout
    assert "nmt average-checkpoints [OPTIONS] PATH...\n" in average
    for text in (translate, average, run_nmt("score", "--help").stdout):
        assert "list[" not in text and "{" not in text.splitlines()[0]


def test_the_attention_plot_has_a_colour_bar_and_labelled_axes(trained_checkpoint):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from nmt.plot import attention_figure
    from nmt.engines.pytorch import Translator

    translation = Translator(trained_checkpoint, record_attention=True).translate(["red dog runs"])[0][0]
    figure = attention_figure(translation, "line 1")
    panels = [ax for ax in figure.axes if ax.get_label() != "<colorbar>"]
    colour_bars = [ax for ax in figure.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == translation.attention.shape[0] and len(colour_bars) == 1
    assert colour_bars[0].get_ylabel() == "attention weight"
    assert all(ax.get_xlabel() == "source pieces" for ax in panels)
    assert panels[0].get_ylabel() == "target pieces"
    plt.close(figure)
