"""Where the time of `nmt translate` goes on this CPU, op by op, measured inside real beam searches.

Like step_breakdown.py for training: every ATen op a beam search dispatches (encoder, decoding steps, search
bookkeeping) is timed with a wall clock around the op itself through a TorchDispatchMode, and the same passes are
also timed without instrumentation, alternating, so that the machine's drift hits both alike.

    python benchmarks/decode_breakdown.py --checkpoint CK [--lines 300] [--beam 4] [--label NAME] [--unmap-freed-memory]

Input: the first --lines sentences of Multi30k's test_2016_flickr (from ../shared/data), or --input FILE. Output:
sentences/s of the plain passes, the matrix products' share and GFLOP/s, the other ops' milliseconds per pass
(largest first), what is left for Python, page faults per pass and peak RSS, with the CPU model (the VMs differ by
day). Figures go to benchmarks/results/decode_breakdown.json under --label, so that runs before and after a change
sit side by side.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from step_breakdown import OpTimer, ops_per_unit, print_ops, record_result  # noqa: E402
from nmt.config import SearchConfig  # noqa: E402
from nmt.engines.pytorch import Translator  # noqa: E402

# A linear layer reaches the dispatcher as `linear` in inference mode, as oneDNN's `_linear_pointwise` with packed
# weights (nmt.model.packed), and as mm/addmm otherwise.
LINEAR = {"linear", "_linear_pointwise"}
MATMULS = LINEAR | {"mm", "addmm", "bmm", "matmul"}
MULTI30K_TEST = REPO.parent / "shared" / "data" / "multi30k" / "test_2016_flickr.en.gz"


class DecodeOpTimer(OpTimer):
    """OpTimer that also counts the FLOPs of linear layers (rows x in x out; a packed weight keeps its shape)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in LINEAR:
            return super().__torch_dispatch__(func, types, args, kwargs)
        started = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[name] += time.perf_counter() - started
        self.calls[name] += 1
        weight = args[1]
        self.matmul_flops += 2 * args[0].numel() // args[0].shape[-1] * weight.shape[0] * weight.shape[1]
        return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def read_lines(path: Path, count: int) -> list[str]:
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for _, line in zip(range(count), handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--input", type=Path, default=MULTI30K_TEST)
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--passes", type=int, default=2, help="Plain and instrumented passes each.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--label", default="current")
    parser.add_argument("--unmap-freed-memory", action="store_true",
                        help="Leave glibc's malloc as it is (nmt translate sets it to keep freed memory on a CPU).")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "decode_breakdown.json")
    args = parser.parse_args()
    if not args.input.is_file():
        sys.exit(f"{args.input} is absent: give --input FILE")
    torch.set_num_threads(args.threads)
    if not args.unmap_freed_memory:
        from nmt.train.host_memory import keep_freed_memory
        keep_freed_memory()
    lines = read_lines(args.input, args.lines)
    search = SearchConfig(beam=args.beam, lenpen=0.6, lenpen_style="length")
    translator = Translator(args.checkpoint, search, "cpu", args.max_tokens)
    translator.translate(lines[:50])  # warm-up
    timer = DecodeOpTimer()
    plain = instrumented = 0.0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    outputs = None
    for position in range(args.passes):
        for measured in ((False, True) if position % 2 else (True, False)):
            started = time.perf_counter()
            if measured:
                with timer:
                    translator.translate(lines)
                instrumented += time.perf_counter() - started
            else:
                outputs = translator.translate(lines)
                plain += time.perf_counter() - started
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    passes = args.passes
    matmul_seconds = sum(timer.seconds[name] for name in MATMULS)
    others = {name: seconds for name, seconds in timer.seconds.items() if name not in MATMULS}
    pieces = sum(len(t[0].tokens) + 1 for t in outputs)
    figures = {
        "cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__, "checkpoint": str(args.checkpoint),
        "lines": len(lines), "beam": args.beam, "output_pieces": pieces,
        "malloc_keeps_freed_memory": not args.unmap_freed_memory,
        "sentences_per_s": round(len(lines) * passes / plain, 1),
        "pass_ms": round(plain / passes * 1000), "instrumented_pass_ms": round(instrumented / passes * 1000),
        "matmul_ms_per_pass": round(matmul_seconds / passes * 1000),
        "matmul_share": round(matmul_seconds / instrumented, 3),
        "matmul_gflops": round(timer.matmul_flops / max(matmul_seconds, 1e-9) / 1e9, 1),
        "other_ops_ms_per_pass": round(sum(others.values()) / passes * 1000),
        "python_ms_per_pass": round((instrumented - matmul_seconds - sum(others.values())) / passes * 1000),
        "page_faults_per_pass": round(faults / (2 * passes)),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "ops_ms_per_pass": ops_per_unit(timer, others, passes, 0.002),
        "outputs": [t[0].text for t in outputs],
    }
    print(f"{args.label}: {figures['sentences_per_s']} sentences/s ({figures['pass_ms']} ms a pass of {len(lines)}); "
          f"matrix products {figures['matmul_share']:.0%} at {figures['matmul_gflops']} GFLOP/s; other ops "
          f"{figures['other_ops_ms_per_pass']} ms, Python {figures['python_ms_per_pass']} ms; "
          f"{figures['page_faults_per_pass']:,} page faults a pass; peak RSS {figures['peak_rss_mb']} MB; "
          f"{figures['cpu']}")
    print_ops(figures["ops_ms_per_pass"], "pass")
    record_result(args.output, args.label, figures, indent=1)


if __name__ == "__main__":
    main()
