"""The README's two commands are the ones CI and the example actually run."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci_command in readme


def test_readme_main_job_is_the_example_script():
    assert "bash examples/multi30k/run.sh" in (REPO / "README.md").read_text()
    assert (REPO / "examples" / "multi30k" / "run.sh").is_file()
