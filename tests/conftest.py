"""Shared fixtures: a synthetic copy-task corpus, its prepared DATA_DIR, and a tiny model trained on it."""

from __future__ import annotations

import http.server
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

# Set before torch loads its OpenMP runtime, which reads it once. The README's test command runs a test process per
# core and some tests train or decode with two threads: OpenMP's threads, by default, spin while they wait for work, so
# that two processes' threads on two cores each burn the cores the other needs (a fixture's training: 10 s alone,
# 80 s beside another). Passive threads sleep instead. Subprocesses (servers, example scripts) inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
requires_multi30k = pytest.mark.skipif(
    not SHARED_MULTI30K.is_dir(),
    reason=f"{SHARED_MULTI30K} is absent (a user's clone without ../shared); CI has it")

# Rich wraps at the terminal's width; the commands run here print as on a 200-column terminal.
os.environ["COLUMNS"] = "200"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # The README's test command runs a test process per core (pytest-xdist): one thread each, so that they do not
    # fight over the cores. Tests that decode with more threads say so.
    torch.set_num_threads(1)

# The test files that take longest, longest first (by their seconds in one run of the README's test command on 2
# cores: 324 s for the first down to 20 s for the last; every other file takes less).
# The README's test command hands whole files to its test processes (--dist loadfile); handed out longest first, they
# end together rather than one process running the end-to-end examples alone at the end.
LONGEST_FILES = ["test_making_data_examples.py", "test_docs.py", "test_import_marian.py", "test_serve.py",
                 "test_huggingface.py", "test_option_walk.py", "test_reliability.py", "test_multilingual.py",
                 "test_request_walk.py", "test_serve_faults.py", "test_train_faults.py", "test_cli.py"]


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist's own order: files with the most tests first
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's tests keep their order


WORDS = ["red", "blue", "green", "dog", "cat", "runs", "jumps", "a", "the", "big", "small", "man", "woman", "bike",
         "street", "water", "ball", "plays", "with", "near"]


def write_copy_corpus(folder: Path, seed: int = 0, sizes=(("train", 3000), ("valid", 100), ("test", 100))) -> Path:
    """PREFIX.src/.tgt files where each target line repeats its source line: a task a tiny model learns fast."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in sizes:
        lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7))) for _ in range(count)]
        (folder / f"{split}.src").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (folder / f"{split}.tgt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def run_nmt(*args: str, input: str | bytes | None = None, cwd: Path | None = None, check: bool = True,
            timeout: int = 300, fresh_process: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, through its entry point (`nmt.cli.main`), capturing its exit code and its
    output. In this process by default: the command line's own code is all the same, without an interpreter and
    torch start per call (about two seconds each, hundreds of calls). `fresh_process=True` runs `python -m nmt`
    instead, for what only a process of its own shows (its environment, signals, its imports from nothing)."""
    data = input.encode("utf-8") if isinstance(input, str) else input
    if fresh_process:
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
        result = subprocess.run([sys.executable, "-m", "nmt", *args], input=data, capture_output=True, cwd=cwd,
                                env=env, timeout=timeout)
        result.stdout, result.stderr = result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    else:
        result = _run_in_this_process(list(args), data or b"", cwd)
    if check and result.returncode != 0:
        raise AssertionError(f"nmt {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def _run_in_this_process(args: list[str], data: bytes, cwd: Path | None) -> subprocess.CompletedProcess:
    """`nmt ARGS` through `nmt.cli.main` here, with stdin, stdout and stderr of its own, and the process-wide state a
    command may change (signal handlers, torch's thread count, the working folder, argv) put back after."""
    import contextlib
    import io
    import signal

    import torch

    from nmt import cli

    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    threads, folder, argv, real_stdin = torch.get_num_threads(), os.getcwd(), sys.argv, sys.stdin
    stdout_bytes, stderr_bytes = io.BytesIO(), io.BytesIO()
    stdout = io.TextIOWrapper(stdout_bytes, encoding="utf-8", newline="", write_through=True)
    stderr = io.TextIOWrapper(stderr_bytes, encoding="utf-8", newline="", write_through=True)
    code = 0
    try:
        sys.argv = ["nmt", *args]
        sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            cli.console.file = stderr
            try:
                cli.main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            stdout.flush()
            stderr.flush()
    finally:
        cli.console.file = None
        sys.argv, sys.stdin = argv, real_stdin
        os.chdir(folder)
        torch.set_num_threads(threads)
        for number, handler in handlers.items():
            signal.signal(number, handler)
    return subprocess.CompletedProcess(["nmt", *args], code, stdout_bytes.getvalue().decode("utf-8"),
                                       stderr_bytes.getvalue().decode("utf-8"))


@pytest.fixture(scope="session")
def copy_corpus(tmp_path_factory) -> Path:
    return write_copy_corpus(tmp_path_factory.mktemp("copy-corpus"))


@pytest.fixture(scope="session")
def copy_data(copy_corpus, tmp_path_factory) -> Path:
    from nmt.data.prepare import PrepareOptions, find_side, prepare_corpus

    out = tmp_path_factory.mktemp("copy-data")
    splits = {split: (find_side(str(copy_corpus / split), "src"), find_side(str(copy_corpus / split), "tgt"))
              for split in ("train", "valid", "test")}
    prepare_corpus(out, "src", "tgt", splits, PrepareOptions(vocab_size=400), {"recipe": "test"})
    return out


@pytest.fixture(scope="session")
def trained_checkpoint(copy_data, tmp_path_factory) -> Path:
    """A transformer_tiny that has learned the copy task (a few hundred updates, seconds)."""
    from nmt.config import transformer_tiny, replace_fields
    from nmt.train.trainer import Trainer

    tiny = transformer_tiny()
    train = replace_fields(tiny.train, {"max_updates": 300, "save_interval_updates": 100, "valid_bleu": False})
    save_dir = tmp_path_factory.mktemp("copy-run")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # trained once per test process; its tests then run with the count it had
    try:
        Trainer(copy_data, save_dir, tiny.model, train).run()
    finally:
        torch.set_num_threads(threads)
    return save_dir / "checkpoint_last.pt"


class FileServer(http.server.SimpleHTTPRequestHandler):
    """Serves a folder on 127.0.0.1 with HTTP Range support, as statmt.org and GitHub do. The first full request of
    each path in `drop_once` is cut a third of the way in (the connection drops); `requests` records
    (path, Range header) of every request."""

    drop_once: set = set()
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.directory) / self.path.lstrip("/")
        type(self).requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.path in type(self).drop_once and not self.headers.get("Range"):
            type(self).drop_once.discard(self.path)
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


class _Served:
    def __init__(self, url: str, root: Path):
        self.url, self.root = url, root


@pytest.fixture
def file_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    FileServer.requests, FileServer.drop_once = [], set()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: FileServer(*a, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield _Served(f"http://127.0.0.1:{httpd.server_address[1]}", root)
    httpd.shutdown()
    httpd.server_close()
