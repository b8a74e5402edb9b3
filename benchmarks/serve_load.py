"""`nmt serve` under load: sentences/s and latency percentiles at 1, 4, 16 and 64 concurrent clients, beside what the
same model does in bulk (`nmt translate`'s batch throughput) and alone (one sentence at a time), in the same run.

    python benchmarks/serve_load.py --checkpoint CK [--lines 400] [--clients 1 4 16 64] [--threads 2]
                                    [--label NAME]                       # results/serve_load.json

Each client sends single test_2016_flickr sentences to /v1/translate one after another (a new one as soon as its
answer comes); all clients run as asyncio tasks in this process, so that the clients take as little CPU from the
server as they can. The bulk and single-sentence figures come from a Translator in a process of its own (the model
loaded, one warm-up), with the server stopped meanwhile. Beam 4, length penalty 0.6 everywhere.

Floors (the serving issue): at 16 clients at least 60% of the bulk sentences/s; the median latency with one client at
most 1.5x the model's own single-sentence latency.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
MULTI30K_TEST = REPO.parent / "shared" / "data" / "multi30k" / "test_2016_flickr.en.gz"
SINGLE_SENTENCES = 50


def read_lines(count: int) -> list[str]:
    with gzip.open(MULTI30K_TEST, "rt", encoding="utf-8") as handle:
        return [line.strip() for _, line in zip(range(count), handle)]


def model_worker(checkpoint: str, lines: list[str], threads: int) -> dict:
    """In its own process: bulk sentences/s over `lines`, and the median latency of single sentences."""
    import torch

    sys.path.insert(0, str(REPO))
    from nmt.config import SearchConfig
    from nmt.engines.pytorch import Translator

    torch.set_num_threads(threads)
    translator = Translator(Path(checkpoint), SearchConfig(beam=4, lenpen=0.6), device="cpu")
    translator.translate(lines[:50])  # warm-up
    started = time.perf_counter()
    translator.translate(lines)
    bulk = len(lines) / (time.perf_counter() - started)
    for line in lines[:10]:
        translator.translate([line])
    single = []
    for line in lines[100:100 + SINGLE_SENTENCES]:
        started = time.perf_counter()
        translator.translate([line])
        single.append(time.perf_counter() - started)
    return {"bulk_sentences_per_s": round(bulk, 1), "single_sentence_ms": round(statistics.median(single) * 1000, 1)}


async def load(url: str, lines: list[str], clients: int) -> dict:
    import httpx

    pending = list(reversed(lines))
    latencies: list[float] = []
    failures = 0

    async def client(session) -> None:
        nonlocal failures
        while pending:
            line = pending.pop()
            started = time.perf_counter()
            answer = await session.post(url + "/v1/translate", json={"text": line})
            latencies.append(time.perf_counter() - started)
            failures += answer.status_code != 200
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as session:
        await session.post(url + "/v1/translate", json={"text": lines[0]})  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        seconds = time.perf_counter() - started
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1)
    return {"clients": clients, "requests": len(latencies), "failures": failures,
            "sentences_per_s": round(len(latencies) / seconds, 1), "p50_ms": percentile(50),
            "p95_ms": percentile(95), "p99_ms": percentile(99)}


def batch_sizes(url: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
              if line.startswith("nmt_batch_sentences_") and " " in line}
    return values.get("nmt_batch_sentences_sum", 0.0), values.get("nmt_batch_sentences_count", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--lines", type=int, default=400)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--server-threads", type=int, help="the server's --threads (default: --threads)")
    parser.add_argument("--workers", type=int, default=1, help="the server's --workers")
    parser.add_argument("--worker-threads", action="store_true", help="the server's --worker-threads")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--label", default="run")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "serve_load.json")
    parser.add_argument("--model-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lines = read_lines(args.lines)
    if args.model_worker:
        print(json.dumps(model_worker(args.checkpoint, lines, args.threads)))
        return

    from decode_breakdown import cpu_model
    from step_breakdown import record_result

    worker = subprocess.run([sys.executable, __file__, "--checkpoint", args.checkpoint, "--lines", str(args.lines),
                             "--threads", str(args.threads), "--model-worker"], capture_output=True, text=True,
                            check=True)
    model = json.loads(worker.stdout.strip().splitlines()[-1])
    print(f"the model alone: {model['bulk_sentences_per_s']} sentences/s in bulk, {model['single_sentence_ms']} ms "
          "a single sentence")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "nmt", "serve", "--checkpoint", args.checkpoint, "--port",
                               str(port), "--threads", str(args.server_threads or args.threads), "--beam", "4",
                               "--lenpen", "0.6", "--lenpen-style", "gnmt", "--batch-wait-ms", str(args.batch_wait_ms),
                               "--max-queue", "4096", "--workers", str(args.workers)]
                              + (["--worker-threads"] if args.worker_threads else []),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("nmt serve did not start")
                time.sleep(0.3)
        runs = []
        for clients in args.clients:
            before = batch_sizes(url)
            result = asyncio.run(load(url, lines, clients))
            after = batch_sizes(url)
            result["mean_batch_sentences"] = round((after[0] - before[0]) / max(after[1] - before[1], 1), 2)
            result["share_of_bulk"] = round(result["sentences_per_s"] / model["bulk_sentences_per_s"], 2)
            runs.append(result)
            print(f"{clients:3} clients: {result['sentences_per_s']:6} sentences/s ({result['share_of_bulk']:.0%} of "
                  f"bulk), p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, "
                  f"mean batch {result['mean_batch_sentences']} sentences, {result['failures']} failures")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    one = next((r for r in runs if r["clients"] == 1), None)
    sixteen = next((r for r in runs if r["clients"] == 16), None)
    figures = {"cpu": cpu_model(), "threads": args.threads, "server_threads": args.server_threads or args.threads,
               "workers": args.workers, "worker_processes": not args.worker_threads, "checkpoint": args.checkpoint, "lines": args.lines,
               "batch_wait_ms": args.batch_wait_ms, "model": model, "runs": runs,
               "date": time.strftime("%Y-%m-%d")}
    if sixteen:
        figures["floor_16_clients_share_of_bulk"] = {"measured": sixteen["share_of_bulk"], "floor": 0.6}
    if one:
        figures["floor_1_client_p50_over_single"] = {
            "measured": round(one["p50_ms"] / model["single_sentence_ms"], 2), "floor": 1.5}
    for name in ("floor_16_clients_share_of_bulk", "floor_1_client_p50_over_single"):
        if name in figures:
            print(f"{name}: {figures[name]['measured']} (floor {figures[name]['floor']})")
    record_result(args.output, args.label, figures, indent=1)


if __name__ == "__main__":
    main()
