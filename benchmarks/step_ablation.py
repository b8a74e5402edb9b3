"""What each part of a training step costs on this CPU, measured by paired A/B inside one process.

On a shared VM two runs of the same command differ by up to 10%, more than most single changes are worth. Here one
model trains on the same batches with a part of the step switched between two variants, alternating the order on
every batch, so that a drift of the machine hits both variants alike; the figure is the share of the step's time the
variant saves (negative: the variant is slower). Variants:

    fused-attention     the fused scaled_dot_product_attention kernel at every length, instead of the explicit
                        softmax(QK^T)V the default uses for short keys (nmt.model.attention.EXPLICIT_MAX_KEYS)
    no-dropout          dropout switched off (what dropout costs)
    cheap-loss          the label-smoothed loss replaced by a gather of target logits (what the loss costs)
    no-optimizer        clipping and Adam skipped (what they cost)

    python benchmarks/step_ablation.py [--arch transformer_base] [--batches 8] [--variants ...]

Figures go to benchmarks/results/step_ablation.json. transformer_base on 2 cores takes ~1 minute per variant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import nmt.model.attention as attention  # noqa: E402
import nmt.model.dropout as dropout  # noqa: E402
from nmt.config import preset  # noqa: E402
from nmt.data.batching import make_batches  # noqa: E402
from nmt.data.dataset import ParallelDataset  # noqa: E402
from nmt.model.transformer import build_model  # noqa: E402
from nmt.train.loss import label_smoothed_nll_loss  # noqa: E402
from nmt.vocab import Vocab  # noqa: E402

MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
DEFAULT_DROPOUT = dropout.Dropout.forward
DEFAULT_EXPLICIT_MAX_KEYS = attention.EXPLICIT_MAX_KEYS
VARIANTS = ("fused-attention", "no-dropout", "cheap-loss", "no-optimizer")


class Switch:
    """Which variant the next step runs: `on` False is the default step, True the variant."""

    def __init__(self, variant: str):
        self.variant, self.on = variant, False

        def dropout_forward(module, x):
            return x if self.on and variant == "no-dropout" else DEFAULT_DROPOUT(module, x)

        dropout.Dropout.forward = dropout_forward

    def set(self, on: bool) -> None:
        self.on = on
        if self.variant == "fused-attention":
            attention.EXPLICIT_MAX_KEYS = 0 if on else DEFAULT_EXPLICIT_MAX_KEYS


def measure(data: ParallelDataset, arch: str, vocab_size: int, variant: str, batches: int) -> dict:
    torch.manual_seed(1)
    config = preset(arch).model
    config.vocab_size = vocab_size
    model = build_model(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, betas=(0.9, 0.98), eps=1e-9, fused=True)
    switch = Switch(variant)

    def step(batch) -> None:
        output_mask = batch.target.ne(config.pad_id)
        logits = model(batch.src_tokens, batch.prev_tokens, output_mask)
        if switch.on and variant == "cheap-loss":
            loss = logits.gather(1, batch.target[output_mask][:, None]).sum()
        else:
            loss, _ = label_smoothed_nll_loss(logits, batch.target[output_mask], 0.1, config.pad_id)
        (loss / batch.tgt_count).backward()
        if not (switch.on and variant == "no-optimizer"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    plan = make_batches(data.src_lengths, data.tgt_lengths, 2048, seed=1)
    chosen = [data.collate(indices) for indices in plan.batches[:batches + 1]]
    step(chosen[0])  # warm-up
    seconds = {False: 0.0, True: 0.0}
    for position, batch in enumerate(chosen[1:]):
        for on in ((True, False) if position % 2 else (False, True)):
            switch.set(on)
            start = time.perf_counter()
            step(batch)
            seconds[on] += time.perf_counter() - start
    switch.set(False)
    saved = 1.0 - seconds[True] / seconds[False]
    return {"default_ms_per_step": round(seconds[False] / batches * 1000), "variant_ms_per_step":
            round(seconds[True] / batches * 1000), "share_of_step_saved_by_variant": round(saved, 4)}


def multi30k_training_data(work: Path) -> tuple[ParallelDataset, int]:
    """Multi30k en-de's training split, prepared under `work` the first time, and its vocabulary size."""
    data_dir = work / "data"
    if not (data_dir / "manifest.json").is_file():
        if not MULTI30K.is_dir():
            sys.exit(f"{MULTI30K} is absent: this benchmark trains on Multi30k")
        subprocess.run([sys.executable, "-m", "nmt", "prepare", "multi30k-en-de", "--mirror", str(MULTI30K),
                        "--out", str(data_dir)], check=True, cwd=REPO)
    return ParallelDataset(data_dir, "train"), len(Vocab.from_file(data_dir / "spm.model"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="transformer_base")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nmt-train-throughput"),
                        help="Where Multi30k is prepared (shared with train_throughput.py).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "step_ablation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data, vocab_size = multi30k_training_data(args.work)
    results = {"arch": args.arch, "threads": args.threads, "batches": args.batches, "max_tokens": 2048,
               "torch": torch.__version__, "variants": {}}
    for variant in args.variants:
        figures = measure(data, args.arch, vocab_size, variant, args.batches)
        results["variants"][variant] = figures
        print(f"{variant}: {figures}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
