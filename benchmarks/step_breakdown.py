"""Where the time of a training step goes on this CPU, op by op, measured inside real steps.

torch.profiler inflates short elementwise ops several times over on a CPU (its own bookkeeping lands in their self
time), which made dropout, ReLU and copies look like a quarter of the step. Here every ATen op that a real
transformer training step dispatches (forward, backward, clipping, Adam) is timed with a wall clock around the op
itself, through a TorchDispatchMode, and the step is also timed without any instrumentation. The report gives:

    - the matrix products (mm/addmm: projections, feed-forward, output layer) as a share of the step and their
      GFLOP/s against the machine's matmul peak (benchmarks/flops.py);
    - every other op's milliseconds per step, largest first;
    - the ceiling: target tokens/s if everything but the large matrix products took no time.

    python benchmarks/step_breakdown.py [--arch transformer_base] [--batches 8] [--unmap-freed-memory]

Like `nmt train` on a CPU, it first sets malloc to keep freed memory (nmt.train.host_memory); with
--unmap-freed-memory it leaves glibc's default, to show what the page faults of fresh tensors cost.

Figures go to benchmarks/results/step_breakdown.json, one entry per malloc setting. transformer_base on 2 cores
takes ~2 minutes.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from flops import matmul_peak_gflops  # noqa: E402
from step_ablation import multi30k_training_data  # noqa: E402
from nmt.config import preset  # noqa: E402
from nmt.data.batching import make_batches  # noqa: E402
from nmt.data.dataset import ParallelDataset  # noqa: E402
from nmt.model.transformer import build_model  # noqa: E402
from nmt.train.host_memory import keep_freed_memory  # noqa: E402
from nmt.train.loss import label_smoothed_nll_loss  # noqa: E402

MATMULS = {"mm", "addmm"}


class OpTimer(TorchDispatchMode):
    """Wall-clock seconds and calls per ATen op, and the FLOPs of the matrix products."""

    def __init__(self):
        super().__init__()
        self.seconds = collections.Counter()
        self.calls = collections.Counter()
        self.matmul_flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        started = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        self.seconds[name] += time.perf_counter() - started
        self.calls[name] += 1
        if name in MATMULS:
            a, b = (args[0], args[1]) if name == "mm" else (args[1], args[2])
            self.matmul_flops += 2 * a.shape[0] * a.shape[1] * b.shape[1]
        return out


def ops_per_unit(timer: OpTimer, names: dict, units: int, min_seconds: float) -> dict:
    """{op: {"ms", "calls"}} per step (or pass), largest first, leaving out ops under `min_seconds` a unit."""
    return {name: {"ms": round(seconds / units * 1000, 1), "calls": timer.calls[name] // units}
            for name, seconds in sorted(names.items(), key=lambda item: -item[1]) if seconds / units >= min_seconds}


def print_ops(ops: dict, unit: str, rows: int = 15) -> None:
    for name, op in list(ops.items())[:rows]:
        print(f"  {name:28} {op['ms']:8.1f} ms/{unit}  {op['calls']:6d} calls")


def record_result(path: Path, key: str, results: dict, indent: int = 2) -> None:
    """Add `results` under `key` to the JSON file at `path`, keeping the other keys (runs that sit side by side)."""
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    recorded[key] = results
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(recorded, indent=indent, ensure_ascii=False) + "\n")


def breakdown(data: ParallelDataset, arch: str, vocab_size: int, batches: int) -> dict:
    torch.manual_seed(1)
    config = preset(arch).model
    config.vocab_size = vocab_size
    model = build_model(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-9, fused=True)

    def step(batch) -> None:  # the trainer's fp32 step on one process: forward, loss, backward, clip, Adam
        output_mask = batch.target.ne(config.pad_id)
        logits = model(batch.src_tokens, batch.prev_tokens, output_mask)
        loss, _ = label_smoothed_nll_loss(logits, batch.target[output_mask], 0.1, config.pad_id)
        (loss / batch.tgt_count).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    plan = make_batches(data.src_lengths, data.tgt_lengths, 2048, seed=1)
    middle = len(plan.batches) // 2  # typical lengths, not the shortest or longest sentences
    chosen = [data.collate(indices) for indices in plan.batches[middle:middle + batches + 1]]
    step(chosen[0])  # warm-up
    tokens = sum(batch.tgt_count for batch in chosen[1:])
    # Alternate plain and instrumented steps on the same batches, so that the machine's drift hits both alike.
    plain = instrumented = 0.0
    timer = OpTimer()
    for position, batch in enumerate(chosen[1:]):
        for measured in ((False, True) if position % 2 else (True, False)):
            started = time.perf_counter()
            if measured:
                with timer:
                    step(batch)
                instrumented += time.perf_counter() - started
            else:
                step(batch)
                plain += time.perf_counter() - started
    matmul_seconds = sum(timer.seconds[name] for name in MATMULS)
    others = {name: seconds for name, seconds in timer.seconds.items() if name not in MATMULS}
    return {
        "target_tokens_per_step": round(tokens / batches),
        "step_ms": round(plain / batches * 1000),
        "instrumented_step_ms": round(instrumented / batches * 1000),
        "target_tokens_per_s": round(tokens / plain, 1),
        "matmul_ms_per_step": round(matmul_seconds / batches * 1000),
        "matmul_share_of_step": round(matmul_seconds / instrumented, 3),
        "matmul_gflops": round(timer.matmul_flops / matmul_seconds / 1e9, 1),
        "other_ops_ms_per_step": round(sum(others.values()) / batches * 1000),
        "python_and_autograd_ms_per_step": round((instrumented - matmul_seconds - sum(others.values()))
                                                 / batches * 1000),
        "ceiling_target_tokens_per_s": round(tokens / matmul_seconds, 1),
        "ops_ms_per_step": ops_per_unit(timer, others, batches, 0.0005),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="transformer_base")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nmt-train-throughput"),
                        help="Where Multi30k is prepared (shared with train_throughput.py).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--unmap-freed-memory", action="store_true",
                        help="Leave glibc's malloc as it is (nmt train sets it to keep freed memory).")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "step_breakdown.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kept = False if args.unmap_freed_memory else keep_freed_memory()
    data, vocab_size = multi30k_training_data(args.work)
    peak = matmul_peak_gflops("fp32")
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    figures = breakdown(data, args.arch, vocab_size, args.batches)
    # Over warm-up, plain and instrumented steps together: 2 x batches + 1 steps.
    figures["page_faults_per_step"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
                                            / (2 * args.batches + 1))
    figures["matmul_share_of_peak"] = round(figures["matmul_gflops"] / peak, 3)
    results = {"arch": args.arch, "threads": args.threads, "batches": args.batches, "max_tokens": 2048,
               "precision": "fp32", "malloc_keeps_freed_memory": kept, "torch": torch.__version__, "matmul_peak_gflops": round(peak, 1), **figures}
    throughput = REPO / "benchmarks" / "results" / "train_throughput.json"
    if throughput.is_file():  # what the ceiling would mean against OpenNMT-py's measured rate
        runs = json.loads(throughput.read_text()).get("architectures", {}).get(args.arch, {})
        if "onmt_fp32" in runs and "nmt_fp32" in runs:
            # Scaled from the whole runs of train_throughput.py (other batches than these): nmt's rate there times
            # how much faster a step of matrix products alone would be.
            onmt, ours = runs["onmt_fp32"]["tgt_tokens_per_s"], runs["nmt_fp32"]["tgt_tokens_per_s"]
            speedup = figures["ceiling_target_tokens_per_s"] / figures["target_tokens_per_s"]
            results["nmt_fp32_over_onmt"] = round(ours / onmt, 2)
            results["ceiling_over_onmt"] = round(ours * speedup / onmt, 2)
    print(f"{args.arch}: step {figures['step_ms']} ms ({figures['target_tokens_per_s']} target tokens/s); "
          f"matrix products {figures['matmul_share_of_step']:.0%} of it at {figures['matmul_gflops']} GFLOP/s "
          f"({figures['matmul_share_of_peak']:.0%} of the {peak:.0f} GFLOP/s peak); other ops "
          f"{figures['other_ops_ms_per_step']} ms, Python/autograd {figures['python_and_autograd_ms_per_step']} ms; "
          f"ceiling {figures['ceiling_target_tokens_per_s']} target tokens/s; "
          f"{figures['page_faults_per_step']:,} page faults a step")
    print_ops(figures["ops_ms_per_step"], "step")
    # One entry per malloc setting, so that the two runs sit side by side in the file.
    record_result(args.output, "unmap_freed_memory" if args.unmap_freed_memory else "keep_freed_memory", results)


if __name__ == "__main__":
    main()
