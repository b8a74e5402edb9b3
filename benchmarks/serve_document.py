"""One long document among short requests: the p95 latency of 8 clients sending single sentences, without and with
a 2,000-word document going through the same server (LibreTranslate's /translate, format text, split into
sentences), each window the same length, in the same run.

    python benchmarks/serve_document.py --checkpoint CK [--seconds 30] [--clients 8] [--workers N]
                                                                         # results/serve_document.json

Floor (the documents issue): the single-sentence clients' p95 with the document at most 2x their p95 without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MULTI30K_TEST = REPO.parent / "shared" / "data" / "multi30k" / "test_2016_flickr.en.gz"


def read_lines() -> list[str]:
    with gzip.open(MULTI30K_TEST, "rt", encoding="utf-8") as handle:
        return [line.strip() for line in handle]


def document(lines: list[str], words: int = 2000) -> str:
    """Paragraphs of five test sentences, up to `words` words."""
    chosen, count = [], 0
    for line in lines[500:]:
        chosen.append(line)
        count += len(line.split())
        if count >= words:
            break
    return "\n\n".join(" ".join(chosen[i: i + 5]) for i in range(0, len(chosen), 5))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1) if ordered else 0.0


async def window(url: str, lines: list[str], clients: int, seconds: float, text: str | None) -> dict:
    import httpx

    latencies: list[float] = []
    documents: list[float] = []
    failures = 0
    end = time.perf_counter() + seconds

    async def single(session, offset: int) -> None:
        nonlocal failures
        index = offset
        while time.perf_counter() < end:
            started = time.perf_counter()
            answer = await session.post(url + "/translate", json={"q": lines[index % 500], "source": "en",
                                                                  "target": "de"})
            latencies.append(time.perf_counter() - started)
            failures += answer.status_code != 200
            index += clients

    async def long_document(session) -> None:
        nonlocal failures
        while time.perf_counter() < end:
            started = time.perf_counter()
            answer = await session.post(url + "/translate", json={"q": text, "source": "en", "target": "de"})
            documents.append(time.perf_counter() - started)
            failures += answer.status_code != 200

    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(timeout=600, limits=limits) as session:
        tasks = [single(session, i) for i in range(clients)] + ([long_document(session)] if text else [])
        await asyncio.gather(*tasks)
    return {"requests": len(latencies), "failures": failures, "p50_ms": percentile(latencies, 50),
            "p95_ms": percentile(latencies, 95), "documents": len(documents),
            "document_s": round(sum(documents) / len(documents), 2) if documents else None}


@contextlib.contextmanager
def running_server(checkpoint: str | Path, *options: str):
    """`nmt serve CHECKPOINT OPTIONS` on a free port, its output discarded: yields its URL once /health answers, and
    drains it with SIGTERM at the end."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "nmt", "serve", "--checkpoint", str(checkpoint), "--port",
                               str(port), "--timeout", "600", *options],
                              stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, help="the server's --workers (default: its own choice)")
    parser.add_argument("--label", default="run")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "serve_document.json")
    args = parser.parse_args()
    import httpx

    lines = read_lines()
    text = document(lines)
    workers = ["--workers", str(args.workers)] if args.workers else []
    with running_server(args.checkpoint, *workers) as url:
        httpx.post(url + "/translate", json={"q": lines[0], "source": "en", "target": "de"}, timeout=60)
        alone = asyncio.run(window(url, lines, args.clients, args.seconds, None))
        print("single sentences alone:", alone)
        shared = asyncio.run(window(url, lines, args.clients, args.seconds, text))
        print("with the document:", shared)
    result = {"label": args.label, "workers": args.workers or "default", "clients": args.clients,
              "seconds": args.seconds,
              "document_words": len(text.split()), "alone": alone, "with_document": shared,
              "p95_ratio": round(shared["p95_ms"] / alone["p95_ms"], 2)}
    print(json.dumps(result, indent=2))
    results = json.loads(args.output.read_text()) if args.output.exists() else []
    results.append(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
