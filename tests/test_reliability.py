"""Bad inputs and faults a hostile user tries, each through the command a user runs (docs/reliability.md).

Data loss first (outputs onto devices and FIFOs, `export --force` onto a run, crash recovery through `nmt train`),
then hangs and silent wrong output, then inputs that used to end in a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_nmt

TINY = ["--arch", "transformer_tiny", "--threads", "1", "--max-tokens", "512", "--no-valid-bleu"]


def one_line_error(result, *needles):
    """A non-zero exit whose stderr ends in one `error:` line holding each needle, and no traceback."""
    assert result.returncode not in (0, None), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:"), result.stderr
    for needle in needles:
        assert needle in last, (needle, last)


def leftovers(folder: Path) -> list[str]:
    """Temporaries a write could leave: hidden .tmp files and .partial / .old folders."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".") and
                  p.name.endswith((".tmp", ".partial", ".old")))


def rewrite_checkpoint(source: Path, dest: Path, change) -> Path:
    payload = torch.load(source, map_location="cpu", weights_only=True)
    change(payload)
    torch.save(payload, dest)
    return dest


@pytest.fixture(scope="module")
def run_dir(copy_data, tmp_path_factory) -> Path:
    """A finished `nmt train` save dir: checkpoint_10.pt, checkpoint_20.pt, _last, _best, metrics.jsonl."""
    save_dir = tmp_path_factory.mktemp("reliability") / "run"
    run_nmt("train", str(copy_data), "--save-dir", str(save_dir), *TINY, "--max-updates", "20",
            "--save-interval-updates", "10")
    return save_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


# --- data loss and broken recovery ---------------------------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_output_onto_a_device_stays_that_device(trained_checkpoint, tmp_path):
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # what /dev/null is
    run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--output", str(device), input="a cat\n")
    assert stat.S_ISCHR(device.stat().st_mode)
    assert leftovers(tmp_path) == []


def test_output_onto_a_fifo_reaches_its_reader(trained_checkpoint, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--output", str(fifo), input="a cat\nthe dog\n")
    reader.join(timeout=60)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0].count("\n") == 2
    assert leftovers(tmp_path) == []


def test_output_through_a_symlink_keeps_the_link(trained_checkpoint, tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--output", str(link), input="a cat\n")
    assert link.is_symlink() and target.read_text() != "old\n"


def test_export_force_never_replaces_a_run_or_a_folder_that_is_not_an_export(run_dir, tmp_path):
    pytest.importorskip("ctranslate2")
    run = copy_run(run_dir, tmp_path)
    before = sorted(p.name for p in run.iterdir())
    one_line_error(run_nmt("export", "ctranslate2", str(run / "checkpoint_10.pt"), str(run), "--force",
                           check=False), "holds the checkpoint")
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    one_line_error(run_nmt("export", "ctranslate2", str(run / "checkpoint_10.pt"), str(other), "--force",
                           check=False), "not an export")
    assert sorted(p.name for p in run.iterdir()) == before and (other / "keep.txt").read_text() == "mine"
    # An earlier export is what --force replaces.
    export = tmp_path / "ct2"
    run_nmt("export", "ctranslate2", str(run / "checkpoint_10.pt"), str(export))
    assert json.loads((export / "nmt.json").read_text())["format"] == "nmt-export"
    run_nmt("export", "ctranslate2", str(run / "checkpoint_20.pt"), str(export), "--force")
    assert json.loads((export / "nmt.json").read_text())["source_checkpoint"].endswith("checkpoint_20.pt")
    assert leftovers(tmp_path) == []


def test_export_onto_a_file_or_into_dot_is_refused_before_any_work(run_dir, tmp_path):
    pytest.importorskip("ctranslate2")
    a_file = tmp_path / "model"
    a_file.write_text("x")
    one_line_error(run_nmt("export", "ctranslate2", str(run_dir / "checkpoint_10.pt"), str(a_file), "--force",
                           check=False), "not a folder")
    one_line_error(run_nmt("export", "ctranslate2", str(run_dir / "checkpoint_10.pt"), ".", "--force",
                           cwd=tmp_path, check=False), "not an export")
    assert a_file.read_text() == "x" and leftovers(tmp_path) == []


def test_resume_through_the_cli_falls_back_past_a_truncated_checkpoint(run_dir, copy_data, tmp_path):
    run = copy_run(run_dir, tmp_path)
    last = run / "checkpoint_last.pt"
    data = (run / "checkpoint_20.pt").read_bytes()
    last.unlink()  # a hard link to checkpoint_20.pt: cut a copy, not the file it shares
    last.write_bytes(data[:1000])
    (run / "checkpoint_20.pt").unlink()
    result = run_nmt("train", str(copy_data), "--save-dir", str(run), *TINY, "--max-updates", "30",
                     "--save-interval-updates", "10", "--resume")
    assert "resuming from checkpoint_10.pt instead" in result.stderr
    assert "Traceback" not in result.stderr
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["update"] == 30


# --- hangs and silent wrong output ---------------------------------------------------------------------------------

def test_a_checkpoint_with_nan_weights_is_refused_by_translate_and_average(run_dir, tmp_path):
    def poison(payload):
        name = next(iter(payload["model"]))
        payload["model"][name] = torch.full_like(payload["model"][name], float("nan"))

    nan = rewrite_checkpoint(run_dir / "checkpoint_10.pt", tmp_path / "nan.pt", poison)
    one_line_error(run_nmt("translate", "--checkpoint", str(nan), "--beam", "1", input="a cat\n", check=False,
                           timeout=120), "NaN")
    one_line_error(run_nmt("average-checkpoints", str(run_dir / "checkpoint_10.pt"), str(nan), "--output",
                           str(tmp_path / "avg.pt"), check=False), "NaN")
    assert not (tmp_path / "avg.pt").exists()


@pytest.mark.parametrize("beam", [1, 4])
def test_decoding_a_model_gone_nan_ends_within_the_length_limit(trained_checkpoint, beam):
    """What load refuses can still happen at run time (an fp16 overflow): search must end, not spin."""
    from nmt.checkpoint import load_model
    from nmt.config import SearchConfig
    from nmt.search.beam import beam_search
    from nmt.search.sampling import sample

    model, vocab, _ = load_model(trained_checkpoint)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    source = torch.tensor([vocab.encode_source(["a cat"])[0] + [3]])
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("decoding did not end"))
    signal.alarm(60)
    try:
        config = SearchConfig(beam=beam, max_len_b=7)
        for hypotheses in (beam_search(model, source, config),
                           sample(model, source, SearchConfig(sampling=True, nbest=beam, max_len_b=7),
                                  torch.Generator().manual_seed(1))):
            assert len(hypotheses) == 1 and hypotheses[0]
            assert all(len(h.tokens) <= source.shape[1] + 7 for h in hypotheses[0])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


TRANSLATE_FLOATS = ["--lenpen", "--max-len-a", "--topp", "--temperature"]
TRAIN_FLOATS = ["--dropout", "--attention-dropout", "--activation-dropout", "--lr", "--max-time", "--clip-norm",
                "--label-smoothing", "--adam-beta1", "--adam-beta2", "--adam-eps", "--weight-decay"]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_every_float_option_refuses_nan_and_infinity(trained_checkpoint, copy_data, tmp_path, value):
    for option in TRANSLATE_FLOATS:
        one_line_error(run_in_process("translate", "--checkpoint", str(trained_checkpoint), option, value,
                                      stdin="a cat\n"), option)
    for option in TRAIN_FLOATS:
        one_line_error(run_in_process("train", str(copy_data), "--save-dir", str(tmp_path / "run"), *TINY, option,
                                      value), option)
    one_line_error(run_in_process("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", "x", "--valid",
                                  "y", "--out", str(tmp_path / "data"), "--max-ratio", value), "--max-ratio")
    assert not (tmp_path / "run").exists() and not (tmp_path / "data").exists()


def test_an_empty_valid_split_is_refused_by_prepare_and_by_train(copy_corpus, copy_data, tmp_path):
    (tmp_path / "valid.src").write_text("")
    (tmp_path / "valid.tgt").write_text("")
    one_line_error(run_nmt("prepare", "custom", "--src", "src", "--tgt", "tgt", "--train", str(copy_corpus / "train"),
                           "--valid", str(tmp_path / "valid"), "--vocab-size", "400", "--out", str(tmp_path / "data"),
                           check=False), "valid split is empty")
    assert not (tmp_path / "data" / "manifest.json").exists()
    # A data dir whose valid split is empty all the same (made by hand, or by an older nmt): train says so at once.
    data = Path(shutil.copytree(copy_data, tmp_path / "copy"))
    manifest = json.loads((data / "manifest.json").read_text())
    for side in ("src", "tgt"):
        entry = manifest["splits"]["valid"][side]
        (data / entry["bin"]).write_bytes(b"")
        (data / entry["idx"]).write_bytes(bytes(8))  # one offset: zero sentences
    result = run_nmt("train", str(data), "--save-dir", str(tmp_path / "run"), *TINY, "--max-updates", "5",
                     check=False)
    one_line_error(result, "valid split is empty")


def test_a_failing_validation_saves_the_training_first(copy_data, tmp_path):
    from nmt.config import replace_fields, transformer_tiny
    from nmt.errors import NmtError
    from nmt.train.trainer import Trainer

    class BrokenValidation(Trainer):
        def validate(self):
            raise RuntimeError("the valid split went away")

    tiny = transformer_tiny()
    config = replace_fields(tiny.train, {"max_updates": 20, "save_interval_updates": 10, "valid_bleu": False,
                                         "max_tokens": 512})
    with pytest.raises(NmtError, match="validation at update 10 failed.*saved as checkpoint_10.pt"):
        BrokenValidation(copy_data, tmp_path / "run", tiny.model, config).run()
    assert torch.load(tmp_path / "run" / "checkpoint_last.pt", weights_only=True)["update"] == 10


def test_a_full_disk_under_translate_output_leaves_no_temporary(trained_checkpoint, tmp_path):
    from test_disk_full import run_limited

    (tmp_path / "in.txt").write_text("a cat\n" * 50)
    out = tmp_path / "out.txt"
    result = run_limited(["translate", "--checkpoint", str(trained_checkpoint), "--input", str(tmp_path / "in.txt"),
                          "--output", str(out)], 0)
    one_line_error(result, "out.txt", "File too large")
    assert ".out.txt.tmp" not in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


# --- tracebacks that are now one line -------------------------------------------------------------------------------

@pytest.mark.parametrize("options, needle", [
    (["--heads", "0"], "'--heads': must be between 1 and 1024, got 0"),
    (["--adam-beta1", "2"], "--adam-beta1"),
    (["--adam-eps", "-1"], "--adam-eps"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--max-positions", "0", "--learned-positions"], "--max-positions"),
])
def test_training_options_out_of_range(copy_data, tmp_path, options, needle):
    one_line_error(run_in_process("train", str(copy_data), "--save-dir", str(tmp_path / "run"), *TINY, *options),
                   needle)


def test_learned_positions_shorter_than_a_training_pair_are_refused(copy_data, tmp_path):
    one_line_error(run_nmt("train", str(copy_data), "--save-dir", str(tmp_path / "run"), *TINY, "--learned-positions",
                           "--max-positions", "4", "--max-updates", "5", check=False), "--max-positions 4")


@pytest.fixture(scope="module")
def learned_positions_checkpoint(copy_data, tmp_path_factory) -> Path:
    save_dir = tmp_path_factory.mktemp("learned") / "run"
    run_nmt("train", str(copy_data), "--save-dir", str(save_dir), *TINY, "--learned-positions", "--max-positions",
            "24", "--max-updates", "10")
    return save_dir / "checkpoint_last.pt"


def test_a_source_longer_than_learned_positions_is_cut_in_both_engines(learned_positions_checkpoint, tmp_path):
    long_line = " ".join(["red dog"] * 40)
    prefixes = tmp_path / "prefixes"
    prefixes.write_text(f"{long_line}\n\n")  # a forced prefix longer than the table, too
    result = run_nmt("translate", "--checkpoint", str(learned_positions_checkpoint), "--prefix-file", str(prefixes),
                     input=f"{long_line}\na cat\n")
    assert result.stdout.count("\n") == 2 and "line 1: longer than the model takes (24 pieces)" in result.stderr
    pytest.importorskip("ctranslate2")
    run_nmt("export", "ctranslate2", str(learned_positions_checkpoint), str(tmp_path / "ct2"))
    result = run_nmt("translate", "--engine", "ctranslate2", "--checkpoint", str(tmp_path / "ct2"), "--lenpen-style",
                     "length", input=f"{long_line}\na cat\n")
    assert result.stdout.count("\n") == 2 and "line 1: longer than the model takes (24 pieces)" in result.stderr


@pytest.mark.parametrize("damage, needle", [
    (lambda p: p.__setitem__("model_config", "transformer_base"), "model_config is a str"),
    (lambda p: p["model_config"].__setitem__("heads", 0), "heads must be between 1 and 1024, got 0"),
    (lambda p: p["model_config"].__setitem__("d_model", "64"), "d_model"),
    (lambda p: p.__setitem__("model", list(p["model"].values())), "not a table of named tensors"),
    (lambda p: p.__setitem__("vocab", "spm"), "vocab"),
], ids=["config-string", "heads-0", "d-model-string", "model-list", "vocab-string"])
def test_a_damaged_checkpoint_is_named_in_one_line(trained_checkpoint, tmp_path, damage, needle):
    damaged = rewrite_checkpoint(trained_checkpoint, tmp_path / "damaged.pt", damage)
    one_line_error(run_nmt("translate", "--checkpoint", str(damaged), input="a cat\n", check=False), "damaged.pt",
                   needle)


def _first_train_bin(data: Path) -> Path:
    return data / json.loads((data / "manifest.json").read_text())["splits"]["train"]["src"]["bin"]


@pytest.mark.parametrize("damage, needle", [
    (lambda data: _first_train_bin(data).write_bytes(b"\xff\xff" + _first_train_bin(data).read_bytes()[2:]),
     "token id 65535"),
    (lambda data: _edit_manifest(data, token_dtype="float64"), "token_dtype"),
    (lambda data: _edit_manifest(data, splits=None), "splits"),
    (lambda data: _edit_manifest(data, splits={"train": "x", "valid": []}), "split 'train'"),
    (lambda data: (data / "spm.model").write_bytes((REPO / "README.md").read_bytes()), "SHA-256"),
], ids=["id-past-vocabulary", "token-dtype", "no-splits", "splits-not-tables", "swapped-spm-model"])
def test_a_damaged_data_dir_is_named_in_one_line(copy_data, tmp_path, damage, needle):
    data = Path(shutil.copytree(copy_data, tmp_path / "data"))
    damage(data)
    one_line_error(run_nmt("train", str(data), "--save-dir", str(tmp_path / "run"), *TINY, "--max-updates", "5",
                           check=False), needle)


def test_a_swapped_spm_model_of_the_right_kind_is_caught_too(copy_data, tmp_path):
    """Another real SentencePiece model (another corpus's) in place of the data's: only the digest tells."""
    from conftest import write_copy_corpus
    from nmt.vocab import train_sentencepiece

    corpus = write_copy_corpus(tmp_path / "other", seed=7, sizes=(("train", 300),))
    text = tmp_path / "text"
    text.write_text((corpus / "train.src").read_text())
    other = train_sentencepiece(text, tmp_path / "other-spm", 300, 1000)
    data = Path(shutil.copytree(copy_data, tmp_path / "data"))
    shutil.copyfile(other, data / "spm.model")
    one_line_error(run_nmt("train", str(data), "--save-dir", str(tmp_path / "run"), *TINY, "--max-updates", "5",
                           check=False), "SHA-256")


def _edit_manifest(data: Path, **changes) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key)
        else:
            manifest[key] = value
    (data / "manifest.json").write_text(json.dumps(manifest))


BAD_METRICS_LINES = [b"42\n", b'{"loss": 1.0}\n', b'{"update": 3, "valid_loss": \xff\xfe}\n',
                     b'{"update": "ten", "valid_loss": 1.0}\n', b'{"update": 10, "valid_loss": "low"}\n',
                     b"[1, 2]\n", b'{"update": 5, "loss": 1.0']


def test_damaged_metrics_lines_are_skipped_by_every_reader(run_dir, copy_data, tmp_path):
    run = copy_run(run_dir, tmp_path)
    with open(run / "metrics.jsonl", "ab") as handle:
        handle.write(b"".join(BAD_METRICS_LINES[:-1]))
        handle.write(BAD_METRICS_LINES[-1])  # cut mid-write: no newline
    result = run_nmt("average-checkpoints", str(run), "--best", "2", "--output", str(tmp_path / "avg.pt"))
    assert "checkpoint_10.pt" in result.stderr and "checkpoint_20.pt" in result.stderr
    pytest.importorskip("matplotlib")
    run_nmt("report", str(run))
    assert "is not a record" in (run / "report" / "report.md").read_text()
    run_nmt("train", str(copy_data), "--save-dir", str(run), *TINY, "--max-updates", "25", "--save-interval-updates",
            "10", "--resume")
    for line in (run / "metrics.jsonl").read_text().splitlines():
        assert isinstance(json.loads(line)["update"], int)  # the resume kept the records, dropped the rest


@pytest.mark.parametrize("name", ["config.json", "score.json"])
def test_a_report_of_a_config_or_score_that_is_a_list(run_dir, tmp_path, name):
    pytest.importorskip("matplotlib")
    run = copy_run(run_dir, tmp_path)
    (run / name).write_text("[1, 2, 3]")
    one_line_error(run_nmt("report", str(run), check=False), name, "not an object")


def test_output_paths_are_checked_before_the_work(trained_checkpoint, run_dir, tmp_path):
    translate = ("translate", "--checkpoint", str(trained_checkpoint))
    started = time.monotonic()
    one_line_error(run_nmt(*translate, "--output", ".", cwd=tmp_path, input="a cat\n", check=False), "is a folder")
    one_line_error(run_nmt(*translate, "--output", str(tmp_path), input="a cat\n", check=False),
                   f"--output {tmp_path}: is a folder")
    (tmp_path / "file").write_text("")
    one_line_error(run_nmt(*translate, "--output", str(tmp_path / "file" / "x.txt"), input="a cat\n",
                           check=False), "file is a file, not a folder")
    one_line_error(run_nmt("average-checkpoints", str(run_dir), "--last", "2", "--output", ".", cwd=tmp_path,
                           check=False), "is a folder")
    one_line_error(run_nmt("average-checkpoints", str(run_dir), "--last", "2", "--output",
                           str(tmp_path / "file" / "x.pt"), check=False), "file is a file, not a folder")
    assert time.monotonic() - started < 60
    assert leftovers(tmp_path) == []


def test_checkpoints_of_another_vocabulary_say_so_when_averaged(run_dir, tmp_path):
    def other_vocab(payload):
        payload["model_config"]["vocab_size"] += 8
        for name in ("embed_tokens.weight",):
            weight = payload["model"][name]
            payload["model"][name] = torch.cat([weight, weight[:8]])
        payload["vocab"] = torch.cat([payload["vocab"], torch.zeros(1, dtype=torch.uint8)])

    other = rewrite_checkpoint(run_dir / "checkpoint_10.pt", tmp_path / "other.pt", other_vocab)
    one_line_error(run_nmt("average-checkpoints", str(run_dir / "checkpoint_20.pt"), str(other), "--output",
                           str(tmp_path / "avg.pt"), check=False), "a different vocabulary")


def test_score_of_empty_files_and_a_closed_stdin(trained_checkpoint, tmp_path):
    empty = tmp_path / "e"
    empty.write_text("")
    one_line_error(run_nmt("score", "--ref", str(empty), "--hyp", str(empty), check=False), "nothing to score")
    one_line_error(run_closed_stdin("score", "--ref", str(empty)), "standard input is closed")
    one_line_error(run_closed_stdin("translate", "--checkpoint", str(trained_checkpoint)),
                   "standard input is closed")


def test_sigterm_twice_while_reading_a_fifo_ends_in_one_line(trained_checkpoint, tmp_path):
    """`timeout` sends SIGTERM to the command and again to its process group: one line, exit 130, no traceback,
    and the output's temporary gone."""
    fifo = tmp_path / "in"
    os.mkfifo(fifo)
    result = subprocess.run(["timeout", "--preserve-status", "8", sys.executable, "-m", "nmt", "translate",
                             "--checkpoint", str(trained_checkpoint), "--input", str(fifo), "--output",
                             str(tmp_path / "out.txt")], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and "interrupted:" in result.stderr
    assert leftovers(tmp_path) == [] and not (tmp_path / "out.txt").exists()


# --- helpers that run the command a user runs ------------------------------------------------------------------------

def run_closed_stdin(*args: str) -> subprocess.CompletedProcess:
    """`nmt ARGS <&-`: standard input closed, as a daemon or a careless script runs it."""
    return subprocess.run([sys.executable, "-m", "nmt", *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=120, preexec_fn=lambda: os.close(0),
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def run_in_process(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """`nmt ARGS` through the same entry point (`nmt.cli.main`) in this process: for option checks that end before
    any model loads, dozens of cases without dozens of interpreter starts. Signal handlers are restored after."""
    import contextlib
    import io

    from nmt import cli

    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    stdout, stderr = io.StringIO(), io.StringIO()
    argv, real_stdin = sys.argv, sys.stdin
    sys.argv = ["nmt", *args]
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    code = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            cli.console.file = stderr
            try:
                cli.main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        cli.console.file = None
        sys.argv, sys.stdin = argv, real_stdin
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


# --- what each number allows alone, and what they allow together ------------------------------------------------------

def test_a_model_no_machine_holds_is_refused_before_it_is_built(copy_data, tmp_path):
    """Every shape option in range, their product 6.7 trillion parameters: refused with the estimate in a second or
    two (building it would allocate for minutes, then fail or swap the machine to a halt), no save dir left."""
    started = time.monotonic()
    result = run_nmt("train", str(copy_data), "--arch", "transformer_tiny", "--encoder-layers", "128", "--d-model",
                     "65536", "--d-ff", "262144", "--heads", "1", "--save-dir", str(tmp_path / "run"), check=False)
    one_line_error(result, "parameters", "GiB", "choose fewer layers or smaller widths")
    assert time.monotonic() - started < 30
    assert not (tmp_path / "run").exists()


def test_a_constraint_too_long_for_any_beam_is_named_before_decoding(trained_checkpoint, tmp_path):
    (tmp_path / "c.tsv").write_text("\n" + "\t".join(["red"] * 3000) + "\n")
    started = time.monotonic()
    result = run_nmt("translate", "--checkpoint", str(trained_checkpoint), "--constraints", str(tmp_path / "c.tsv"),
                     input="blue cat\nred dog\n", check=False)
    one_line_error(result, "c.tsv:2", "constraints of 3000 pieces", "at most 128")
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("options", [["translate", "--glossary", "FOLDER"], ["translate", "--constraints", "FOLDER"],
                                     ["score", "--ref", "FILE", "--terms", "FOLDER", "--source", "FILE"],
                                     ["logprob", "--source", "FOLDER", "--target", "FILE"],
                                     ["prepare", "custom", "--src", "a", "--tgt", "b", "--train", "x", "--valid", "y",
                                      "--vocab", "FOLDER"]])
def test_a_folder_where_a_file_belongs_is_named_as_one(trained_checkpoint, tmp_path, options):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("red dog\n")
    args = [{"FOLDER": str(tmp_path / "folder"), "FILE": str(tmp_path / "file.txt")}.get(a, a) for a in options]
    if args[0] in ("translate", "logprob"):
        args += ["--checkpoint", str(trained_checkpoint)]
    result = run_nmt(*args, input="red dog\n", check=False)
    one_line_error(result, f"{tmp_path / 'folder'}: Is a directory")


def test_process_substitution_works_for_every_file_a_translation_reads(trained_checkpoint, tmp_path):
    """bash's `<(...)` hands a pipe (/dev/fd/63): read once, it is as good as a file."""
    script = (f"printf 'red dog\\nblue cat\\n' | {sys.executable} -m nmt translate --checkpoint {trained_checkpoint} "
              "--glossary <(printf 'red\\tred\\n') --constraints <(printf 'dog\\n\\n') --prefix-file <(printf 'red\\n\\n')")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 and "dog" in result.stdout.splitlines()[0]


def test_the_export_commands_of_the_docs_run_word_for_word(trained_checkpoint, tmp_path):
    """docs/export.md's commands that export checkpoints/averaged.pt, from a folder holding only that file: the
    exports/ folder they write into is made as `mkdir -p` would make it."""
    import re
    import shlex
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(trained_checkpoint, tmp_path / "checkpoints" / "averaged.pt")
    text = (REPO / "docs" / "export.md").read_text()
    commands = re.findall(r"^nmt export \S+ checkpoints/averaged\.pt .*$", text, re.M)
    assert len(commands) == 2, commands
    for command in commands:
        run_nmt(*shlex.split(command)[1:], cwd=tmp_path)
    assert (tmp_path / "exports" / "ct2" / "model.bin").is_file()
    assert (tmp_path / "exports" / "hf" / "config.json").is_file()
    run_nmt("translate", "--checkpoint", "checkpoints/averaged.pt", "--output", "out/de/test.hyp", input="red dog\n",
            cwd=tmp_path)
    assert (tmp_path / "out" / "de" / "test.hyp").read_text().count("\n") == 1


SWALLOWING_IMPORT = '''
import os, signal, time
try:  # a module whose import handles every exception its way, as some do: an interruption here is swallowed
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.3)
except BaseException:
    pass
'''


@pytest.mark.parametrize("swallowed_anyway", [False, True])
def test_an_interruption_during_an_import_still_stops_the_command_before_it_writes(tmp_path, swallowed_anyway):
    """SIGTERM while a command imports its libraries (torch: a second or more): the interruption is raised once the
    import is done, not inside it where the import's own handling could swallow it; and where something swallows it
    anyway, no output file is put in place after it."""
    (tmp_path / "swallowing.py").write_text(SWALLOWING_IMPORT)
    script = f'''
import importlib, signal, sys, time
from nmt import atomic
signal.signal(signal.SIGTERM, importlib.import_module("nmt.cli.app")._interrupt)
try:
    {"try:" if swallowed_anyway else "if True:"}
        import swallowing
        time.sleep(0.5)  # the command goes on to its work
    {"except BaseException: pass" if swallowed_anyway else ""}
    atomic.write_text({str(tmp_path / "out.txt")!r}, "written")
    print("finished")
except KeyboardInterrupt:
    print("interrupted")
'''
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": f"{REPO}:{tmp_path}"})
    assert result.stdout.strip() == "interrupted", result.stdout + result.stderr
    assert not (tmp_path / "out.txt").exists()


def test_a_stopped_translation_with_resume_goes_on_where_it_stopped(trained_checkpoint, tmp_path):
    """--resume: SIGTERM after some windows keeps them (OUT.partial and its record); the same command then finishes
    the rest, and the output equals an uninterrupted run's. Other settings are refused, not mixed in."""
    import random
    rng = random.Random(3)
    words = "red blue green dog cat runs a the big ball".split()
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 7))) for _ in range(6000)]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    command = ["translate", "--checkpoint", str(trained_checkpoint), "--input", "in.txt", "--buffer-size", "100",
               "--threads", "1"]
    run_nmt(*command, "--output", "whole.txt", cwd=tmp_path)
    resumable = [*command, "--output", "out.txt", "--resume"]
    process = subprocess.Popen([sys.executable, "-m", "nmt", *resumable], cwd=tmp_path, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    record = tmp_path / "out.txt.partial.json"
    deadline = time.monotonic() + 60
    while not record.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130, stderr
    done = json.loads(record.read_text())["lines"]
    assert 0 < done < 6000 and f"the first {done:,} lines" in stderr and not (tmp_path / "out.txt").exists()
    other = run_nmt(*resumable, "--beam", "2", cwd=tmp_path, check=False)
    one_line_error(other, "out.txt.partial was written from another input or with other settings")
    run_nmt(*resumable, cwd=tmp_path)
    assert (tmp_path / "out.txt").read_bytes() == (tmp_path / "whole.txt").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt", "whole.txt"]


def test_a_folder_given_for_a_checkpoint_is_named_by_what_it_holds(trained_checkpoint, tmp_path):
    """export and tune, given a run's folder or a CTranslate2 export, say what to give instead (tune has no
    --engine to suggest)."""
    run = trained_checkpoint.parent
    one_line_error(run_nmt("export", "ctranslate2", str(run), str(tmp_path / "ct2"), check=False),
                   "is a folder, not a checkpoint file", "checkpoint_last.pt")
    one_line_error(run_nmt("export", "huggingface", str(run), str(tmp_path / "hf"), check=False),
                   "is a folder, not a checkpoint file")
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "model.bin").write_bytes(b"")
    result = run_nmt("tune", str(tmp_path / "exported"), str(tmp_path), check=False)
    one_line_error(result, "is a CTranslate2 model folder", "give the checkpoint it was exported from")
    assert "--engine" not in result.stderr
