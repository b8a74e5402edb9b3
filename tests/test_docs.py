"""The docs and examples run as written: the command reference is generated from the app, every `nmt` command in
README.md and docs/ parses and validates (a dry run), the CPU example scripts run end to end on tiny settings, and
the GPU-cluster scripts pass a dry run of every command they contain."""

import os
import re
import shlex
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SHARED_MULTI30K, requires_multi30k, write_copy_corpus
from nmt.cli import app
from nmt.cli.command_reference import command_reference

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))


def test_the_command_reference_is_in_sync_with_the_app():
    committed = (REPO / "docs" / "commands.md").read_text(encoding="utf-8")
    assert committed == command_reference(), "run: python -m nmt.cli.command_reference > docs/commands.md"


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for each `nmt ...` invocation in a fenced code block of README.md and docs/*.md."""
    found = []
    for path in DOCS:
        if path.name == "commands.md":
            continue
        blocks = re.findall(r"```[a-z]*\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()  # a trailing comment
                for segment in re.split(r"\s*\|\s*", line):
                    if not segment.startswith(("nmt ", "torchrun ", "python -m nmt ")):
                        continue  # not a command: a diagram, an `echo` feeding one
                    words = shlex.split(segment, comments=True)
                    if "nmt" in words:
                        found.append((path.name, strip_redirections(words[words.index("nmt") + 1:])))
    return found


def strip_redirections(args: list[str]) -> list[str]:
    """The words of a shell command without its `< FILE`, `> FILE`, `2> FILE` (the shell's, not nmt's)."""
    cleaned, skip = [], False
    for word in args:
        if skip:
            skip = False
        elif word in ("<", ">", "2>", ">>"):
            skip = True
        elif not word.startswith(("<", ">", "2>")):
            cleaned.append(word)
    return cleaned


def test_every_documented_command_passes_a_dry_run():
    commands = documented_commands()
    assert len(commands) >= 15  # the docs do show commands
    runner = CliRunner()
    problems = []
    for source, args in commands:
        if args in (["--help"], ["--version"]) or "--list" in args:
            continue
        result = runner.invoke(app, args, env={"NMT_DRY_RUN": "1"})
        output = result.output + (result.stderr if result.stderr_bytes is not None else "")
        if result.exit_code != 0 or "dry run" not in output:
            problems.append(f"{source}: nmt {' '.join(args)} -> {result.exit_code}: {output.strip()[-300:]}")
    assert problems == []


def shim_bin(tmp_path: Path) -> Path:
    """A bin folder whose `nmt` runs this checkout with this interpreter, and stand-ins for Slurm's commands."""
    folder = tmp_path / "bin"
    folder.mkdir()
    scripts = {
        "nmt": f'#!/bin/sh\nexec "{sys.executable}" -m nmt "$@"\n',
        "srun": '#!/bin/sh\nexec "$@"\n',  # one task, here
        "scontrol": '#!/bin/sh\necho localhost\n',  # `scontrol show hostnames`: the head node
    }
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(stat.S_IRWXU)
    return folder


def run_script(script: Path, tmp_path: Path, **env) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{shim_bin(tmp_path)}:{Path(sys.executable).parent}:{os.environ['PATH']}",
                   "PYTHONPATH": str(REPO), **env}
    return subprocess.run(["bash", str(script)], cwd=tmp_path, env=environment, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.parametrize("script", ["wmt14-en-de/base.sh", "wmt14-en-de/big.sh", "wmt14-en-de/slurm-big.sbatch"])
def test_gpu_cluster_scripts_pass_a_dry_run_of_every_command(script, tmp_path):
    run = tmp_path / "runs" / "wmt14"  # not made beforehand: the script must make what it writes into
    result = run_script(REPO / "examples" / script, tmp_path, NMT_DRY_RUN="1", RUN=str(run), GPUS="2",
                        SLURM_JOB_NODELIST="localhost", SLURM_NNODES="1", SLURM_JOB_ID="1")
    assert result.returncode == 0, result.stderr[-2000:]
    text = (REPO / "examples" / script).read_text()
    if "train.sh" in text:  # base.sh, big.sh: the shared script with MODEL set
        text = (REPO / "examples" / "wmt14-en-de" / "train.sh").read_text()
        assert f"architecture: transformer_{Path(script).stem}" in result.stderr
    expected = len(re.findall(r"^(?:nmt |\S*torchrun .*-m nmt |srun torchrun )", text, flags=re.M))
    checked = re.findall(r"dry run: nmt (\S+)", result.stderr)
    # torchrun starts a dry run in each process; the first one alone says so: one line per command.
    assert len(checked) == expected, result.stderr[-2000:]
    assert "error" not in result.stderr.lower()


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory) -> Path:
    """The repository's files as a fresh clone has them (tracked and not ignored), without .venv."""
    clone = tmp_path_factory.mktemp("fresh-clone")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            (clone / name).write_bytes(source.read_bytes())
    return clone


def run_as_a_new_user(command: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    """`bash -c COMMAND` in a fresh shell: no `nmt` on PATH (folders holding one are left out), no virtual
    environment, no PYTHONPATH; the example must install what it needs itself."""
    path = [folder for folder in os.environ["PATH"].split(os.pathsep) if not (Path(folder) / "nmt").exists()]
    environment = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONPATH")}
    environment.update(PATH=os.pathsep.join(path), **env)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=1200)


def test_the_custom_corpus_example_runs_from_a_fresh_clone_as_its_header_says(fresh_clone):
    write_copy_corpus(fresh_clone / "corpus", sizes=(("train", 1500), ("dev", 60), ("test", 60)))
    header = (REPO / "examples" / "custom-corpus" / "run.sh").read_text()
    assert "CORPUS=corpus SRC=en TGT=de bash examples/custom-corpus/run.sh" in header
    result = run_as_a_new_user("CORPUS=corpus SRC=src TGT=tgt bash examples/custom-corpus/run.sh", fresh_clone,
                               ARCH="transformer_tiny", MINUTES="0.15", VOCAB="400")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BLEU = " in result.stdout
    work = fresh_clone / "runs" / "custom-src-tgt"
    assert (work / "test.hyp.tgt").read_text().count("\n") == 60
    assert (work / "checkpoints" / "report" / "loss.png").is_file()
    assert (fresh_clone / ".venv" / "bin" / "nmt").is_file()  # installed into the clone, as the script says


@requires_multi30k
def test_the_multi30k_example_runs_from_a_fresh_clone_as_its_header_says(fresh_clone):
    # ../shared beside the clone, as beside a checkout: the script finds the mirror itself.
    (fresh_clone.parent / "shared").mkdir(exist_ok=True)
    mirror = fresh_clone.parent / "shared" / "data"
    if not mirror.exists():
        mirror.symlink_to(SHARED_MULTI30K.parent, target_is_directory=True)
    result = run_as_a_new_user("bash examples/multi30k/run.sh", fresh_clone, ARCH="transformer_tiny",
                               MINUTES="0.25", WORK="runs/tiny", TUNE_LENPEN="0.6")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BLEU = " in result.stdout
    assert (fresh_clone / "runs" / "tiny" / "test.hyp.de").read_text(encoding="utf-8").count("\n") == 1000
    assert (fresh_clone / "runs" / "tiny" / "checkpoints" / "report" / "report.md").is_file()


def test_a_dry_run_refuses_what_a_real_run_would_refuse():
    runner = CliRunner()
    for args in (["train", "data/x", "--heads", "3"], ["prepare", "wmt14-en-de", "--vocab-size", "10"],
                 ["average-checkpoints", "runs/x", "--last", "0", "--output", "x.pt"],
                 ["translate", "--beam", "0"], ["score", "--ref", "r", "--metrics", "meteor"]):
        result = runner.invoke(app, args, env={"NMT_DRY_RUN": "1"})
        assert result.exit_code != 0 and "options are valid" not in result.output, args


MARKDOWN = DOCS + [REPO / "benchmarks" / "README.md"]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces as
    hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_relative_link_in_the_docs_resolves_to_a_file_and_heading():
    problems = []
    for path in MARKDOWN:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not ours to check offline
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                problems.append(f"{path.relative_to(REPO)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), flags=re.M)
                if anchor not in {github_anchor(h) for h in headings}:
                    problems.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert problems == []


def test_the_docs_describe_the_project_not_the_history_of_the_work():
    history = re.compile(r"the stop before|this stop|at the stop|an earlier stop|last stop|landed|this session|"
                         r"previous session|as it is now|was measured before", re.I)
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}" for path in MARKDOWN
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
             if history.search(line)]
    assert found == []
