"""Every option of every command, given hostile values, on top of a small valid call of that command.

The walk reads the options from the Typer app itself, so a new option is walked without anyone adding a case. Each
value gets the same verdict: the command succeeds, or it ends in one `error:` line and exit 1 or 2 within a time
bound, with no traceback and no file left behind in its folder. Values are chosen by the option's type: numbers
negative, zero, not a number, infinite, past 64 bits, empty or words; text empty, blank or odd; paths empty, a folder
where a file belongs, a file where a folder belongs, missing folders.

Commands whose real run is seconds (translate, logprob, score, report, average-checkpoints, tune, the exports and the
import) run for real; `prepare`, `train` and `serve` run as dry runs (NMT_DRY_RUN=1), which check every option the
way the real run would and stop before learning a vocabulary, training or listening: a value these accept is then
given to the real command by the tests of each (`test_option_walk_real_runs`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from conftest import run_nmt

HOSTILE = {
    int: ["-1", "0", "1000000000", "99999999999999999999", "-99999999999999999999", "nan", "1.5", "", "x"],
    float: ["-1", "0", "nan", "inf", "-inf", "1e400", "1e308", "", "x"],
    str: ["", " ", "x", "[bold]x[/]", "\x7f"],
    Path: ["", ".", "missing/folder/x", "a-folder", "a-file"],
}
# A number no option takes: refused as the command line is parsed (exit 2, a usage error), before the command runs.
NEVER_A_NUMBER = {"99999999999999999999", "-99999999999999999999", "nan", "inf", "-inf", "1e400", "", "x"}
SECONDS_PER_RUN = 60


@dataclass
class Case:
    command: str
    option: str
    value: str
    kind: type


def walk_commands(group=None, path=()):
    """(command words, click command) for every command of the app, subcommands included."""
    from nmt.cli import app
    group = group or typer.main.get_command(app)
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from walk_commands(command, (*path, name))
        else:
            yield (*path, name), command


def option_kind(option) -> type:
    """The element type an option takes: int, float, str or Path (Optional and list removed)."""
    annotation = option.type_descriptor.annotation
    while typing.get_origin(annotation) in (typing.Union, list, getattr(__import__("types"), "UnionType", None)):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return Path
    return annotation


def walked_options():
    for words, command in walk_commands():
        for option in command.params:
            if type(option).__name__.endswith("Option") and not option.is_flag and option.name != "help":
                yield " ".join(words), option.opts[0], option_kind(option)


def cases() -> list[Case]:
    return [Case(command, option, value, kind) for command, option, kind in walked_options()
            for value in HOSTILE[kind]]


def _timeout(signum, frame):
    raise TimeoutError(f"no answer in {SECONDS_PER_RUN} s")


def listing(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size if p.is_file() else None) for p in folder.rglob("*")}


def check_verdict(case: Case, result, before: dict, after: dict) -> str | None:
    """None where the run is acceptable, else what is wrong."""
    stderr = result.stderr
    if "Traceback" in stderr:
        return "traceback"
    if result.returncode == 0:
        if case.kind in (int, float) and case.value in NEVER_A_NUMBER:
            return "accepted"
        return None
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if result.returncode not in (1, 2):
        return f"exit {result.returncode}"
    if not lines or not lines[-1].startswith("error:"):
        return f"no error line: {stderr[-300:]!r}"
    if sum(line.startswith("error:") for line in lines) != 1 or any(
            not (line.startswith(("error:", "note:", "warning:"))) for line in lines):
        return f"more than one line: {stderr[-300:]!r}"
    if case.kind in (int, float) and case.value in NEVER_A_NUMBER and result.returncode != 2:
        return f"not refused when parsed (exit {result.returncode}): {stderr[-200:]!r}"
    if before != after:
        return f"left behind {sorted(set(after) - set(before))}, changed {[k for k in before if after.get(k) != before[k]]}"
    return None


@pytest.fixture(scope="module")
def base_calls(trained_checkpoint, copy_data, copy_corpus, tmp_path_factory):
    """A small valid call of each command, and what each needs copied into its folder first."""
    assets = tmp_path_factory.mktemp("walk-assets")
    small = assets / "corpus"
    small.mkdir()
    for split, count in (("train", 300), ("valid", 20), ("test", 20)):
        for side in ("src", "tgt"):
            lines = (copy_corpus / f"{split}.{side}").read_text().splitlines()[:count]
            (small / f"{split}.{side}").write_text("\n".join(lines) + "\n")
    (assets / "ref.txt").write_text("red dog\nblue cat\n")
    (assets / "hyp.txt").write_text("red dog\nblue ball\n")
    run_dir = trained_checkpoint.parent
    hf = assets / "hf"
    run_nmt("export", "huggingface", str(trained_checkpoint), str(hf))
    ck = str(trained_checkpoint)
    return {
        "prepare": (["custom", "--src", "src", "--tgt", "tgt", "--train", f"{small}/train", "--valid",
                     f"{small}/valid", "--test", f"{small}/test", "--vocab-size", "300", "--out", "data"], "", True),
        "train": ([str(copy_data), "--arch", "transformer_tiny", "--max-updates", "1", "--save-dir", "run"], "", True),
        "average-checkpoints": ([ck, ck, "--output", "avg.pt"], "", False),
        "translate": (["--checkpoint", ck, "--threads", "1"], "red dog\n", False),
        "serve": (["--checkpoint", ck, "--threads", "1"], "", True),
        "tune": (["model.pt", str(copy_data), "--beam", "1", "--lenpen", "1.0", "--threads", "1"], "", False),
        "logprob": (["--checkpoint", ck, "--threads", "1"], "red dog\tred dog\n", False),
        "score": (["--ref", str(assets / "ref.txt"), "--hyp", str(assets / "hyp.txt")], "", False),
        "report": ([str(run_dir), "--out", "report"], "", False),
        "export ctranslate2": ([ck, "ct2"], "", False),
        "export huggingface": ([ck, "hf"], "", False),
        "import huggingface": ([str(hf), "--output", "imported.pt"], "", False),
        "_copy": {"tune": {"model.pt": trained_checkpoint}},
    }


def with_value(args: list[str], option: str, value: str) -> list[str]:
    """ARGS with OPTION set to VALUE (an earlier value of it removed)."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == option:
            skip = True
            continue
        out.append(arg)
    return [*out, option, value]


def run_case(case: Case, base: dict, folder: Path):
    args, stdin, dry = base[case.command]
    (folder / "a-folder").mkdir()
    (folder / "a-file").write_text("not what was asked for\n")
    for name, source in base["_copy"].get(case.command, {}).items():
        shutil.copy(source, folder / name)
    before = listing(folder)
    os.environ["NMT_DRY_RUN"] = "1" if dry else "0"
    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(SECONDS_PER_RUN)
    try:
        result = run_nmt(*case.command.split(), *with_value(args, case.option, case.value), input=stdin, cwd=folder,
                         check=False)
    except Exception as error:  # in a process of its own, a traceback
        result = subprocess.CompletedProcess(case.command, 1, "", f"Traceback: {type(error).__name__}: {error}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        os.environ.pop("NMT_DRY_RUN", None)
    return result, before, listing(folder)


def test_every_option_takes_hostile_values_in_one_line(base_calls, tmp_path):
    failures, tried = [], 0
    commands, options = set(), set()
    for case in cases():
        folder = tmp_path / f"case{tried}"
        folder.mkdir()
        tried += 1
        commands.add(case.command)
        options.add((case.command, case.option))
        result, before, after = run_case(case, base_calls, folder)
        verdict = check_verdict(case, result, before, after)
        if verdict:
            failures.append(f"nmt {case.command} {case.option} {case.value!r}: {verdict}")
        shutil.rmtree(folder, ignore_errors=True)
    print(f"option walk: {len(commands)} commands, {len(options)} options, {tried} values, {len(failures)} failures")
    assert not failures, "\n".join(failures)
