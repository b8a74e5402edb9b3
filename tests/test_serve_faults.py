"""What happens to `nmt serve` when its processes die: as the OOM killer and `kill -9` do it, on a real server."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from pathlib import Path

import pytest

from test_serve import KEY, ServerProcess

httpx = pytest.importorskip("httpx")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def worker_pids(pid: int) -> list[int]:
    """The model worker processes of server PID (spawned children that are not multiprocessing's resource
    tracker)."""
    workers = []
    for child in children(pid):
        command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        if b"multiprocessing" in command and b"resource_tracker" not in command:
            workers.append(child)
    return workers


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"


def translate(server) -> httpx.Response:
    return httpx.post(server.url + "/v1/translate", json={"text": "red dog"},
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads process trees from Linux's /proc")
def test_a_worker_killed_is_replaced_and_counted(trained_checkpoint):
    server = ServerProcess(trained_checkpoint, env={"NMT_API_KEY": KEY}, threads=2)
    try:
        workers = worker_pids(server.process.pid)
        assert len(workers) == 2, workers
        os.kill(workers[0], signal.SIGKILL)
        first = concurrent.futures.ThreadPoolExecutor(1).submit(translate, server)  # finds the worker dead
        health = []
        while not first.done():  # the new processes load their model meanwhile: nothing can decode
            health.append(httpx.get(server.url + "/health", timeout=10).json()["status"])
            time.sleep(0.05)
        answers = [first.result()] + [translate(server) for _ in range(5)]
        assert all(a.status_code in (200, 503) for a in answers), [(a.status_code, a.text) for a in answers]
        assert answers[-1].status_code == 200, answers[-1].text
        assert all(a.headers.get("retry-after") for a in answers if a.status_code == 503)
        assert server.metric("nmt_worker_restarts_total") == 1
        assert "restarting workers" in health and httpx.get(server.url + "/health", timeout=10).json()["status"] == "ok"
        deadline = time.monotonic() + 20  # the broken pool's other process is ended in the background
        while len(worker_pids(server.process.pid)) != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(worker_pids(server.process.pid)) == 2
    finally:
        assert server.stop() == 0, server.log


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads process trees from Linux's /proc")
def test_workers_die_with_a_server_killed_outright(trained_checkpoint):
    server = ServerProcess(trained_checkpoint, env={"NMT_API_KEY": KEY}, threads=2)
    workers = worker_pids(server.process.pid)
    assert workers and translate(server).status_code == 200
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + 10
    while any(map(alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, workers)), "worker processes outlived the server"


def test_a_port_in_use_is_named_before_the_model_loads(trained_checkpoint):
    import socket

    from conftest import run_nmt
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_nmt("serve", "--checkpoint", str(trained_checkpoint), "--port", str(port), check=False)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot listen on 127.0.0.1:") and "--port" in lines[0]


def test_sigterm_while_a_body_is_half_sent_answers_503_and_exits_at_once(trained_checkpoint):
    """A client that sent half its body when the server is told to stop gets a 503 (send it again) within a second,
    and the server exits 0 without waiting out its grace period or logging a traceback."""
    import socket
    server = ServerProcess(trained_checkpoint, env={"NMT_API_KEY": KEY})
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 1000\r\n\r\n{\"text\": \"red")
        time.sleep(0.5)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        answer = client.recv(65536).decode("latin-1")
        assert time.monotonic() - started < 5, answer
    assert answer.startswith("HTTP/1.1 503"), answer
    assert server.stop() == 0 and time.monotonic() - started < 10
    assert "Traceback" not in server.log, server.log


def test_a_request_that_times_out_stops_its_decoding_in_the_worker_processes(trained_checkpoint):
    """Two long sentences (--min-len 750 at beam 32: about 10 s each) occupy both worker processes and time out
    after 2 s; their decoding stops there, so a short request sent next is served as fast as it was alone, not after
    the seconds they would still have taken (it would be a 504)."""
    server = ServerProcess(trained_checkpoint, "--timeout", "2", "--max-beam", "32", "--min-len", "750", threads=2)
    try:
        assert len(worker_pids(server.process.pid)) == 2

        def short() -> tuple[httpx.Response, float]:
            start = time.monotonic()
            answer = httpx.post(server.url + "/v1/translate", json={"text": "green ball"}, timeout=60)
            return answer, time.monotonic() - start

        alone, alone_seconds = short()
        assert alone.status_code == 200, alone.text
        long_text = " ".join(["red dog runs near the big water"] * 110)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            blockers = [pool.submit(httpx.post, server.url + "/v1/translate", json={"text": long_text, "beam": 32},
                                    timeout=60) for _ in range(2)]
            assert [b.result().status_code for b in blockers] == [504, 504]
        after, after_seconds = short()
        assert after.status_code == 200, (after.text, server.log)
        assert after.json() == alone.json()
        assert after_seconds < alone_seconds + 1.5, (alone_seconds, after_seconds)
        assert server.metric("nmt_dropped_sentences_total", reason="deadline") == 2
    finally:
        assert server.stop() == 0, server.log
