"""A short GPU check of `nmt train`: transformer_big, bf16, about 25k tokens per batch, a few hundred updates on
synthetic data; prints target tokens/s, MFU against the GPU's measured bf16 matmul peak, and peak memory; then
decodes 500 valid sentences with the trained model (beam 4, bf16) and prints sentences/s.

Run through benchmarks/gpu_check.sh (about 7 minutes on one H200 with the defaults). On a CPU,
`--device cpu --arch transformer_tiny --updates 5 --max-tokens 1000 --pairs 3000` checks the script itself.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import torch  # noqa: E402

from flops import matmul_peak_gflops, training_flops_per_target_token  # noqa: E402
from nmt.config import preset, replace_fields  # noqa: E402
from nmt.data.prepare import PrepareOptions, prepare_corpus  # noqa: E402
from nmt.train.trainer import Trainer  # noqa: E402


def synthetic_corpus(folder: Path, pairs: int, seed: int = 1) -> None:
    """Random sentences over a 50,000-word made-up lexicon; the target is a fixed word-for-word mapping, reordered
    in pairs, so that there is something to learn and SentencePiece finds a large vocabulary."""
    rng = random.Random(seed)
    lexicon = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10))) for _ in range(50_000)]
    mapping = {word: word[::-1] + "x" for word in lexicon}
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", pairs), ("valid", 500)):
        with open(folder / f"{split}.src", "w") as src, open(folder / f"{split}.tgt", "w") as tgt:
            for _ in range(count):
                # Half the words Zipf-distributed (frequent words), half uniform over the lexicon.
                words = [lexicon[min(int(rng.paretovariate(1.0)), len(lexicon)) - 1] if rng.random() < 0.5
                         else rng.choice(lexicon) for _ in range(rng.randint(5, 45))]
                src.write(" ".join(words) + "\n")
                swapped = [mapping[w] for pair in zip(words[1::2], words[0::2]) for w in pair]
                tgt.write(" ".join(swapped + ([mapping[words[-1]]] if len(words) % 2 else [])) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("/tmp/gpu-check"))
    parser.add_argument("--arch", default="transformer_big")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--max-tokens", type=int, default=25_000)
    parser.add_argument("--pairs", type=int, default=300_000)
    parser.add_argument("--vocab-size", type=int, default=32_000)
    parser.add_argument("--device", default=None)
    parser.add_argument("--decode-sentences", type=int, default=500)
    parser.add_argument("--decode-precision", default="bf16")
    parser.add_argument("--decode-max-tokens", type=int, default=16_000)
    parser.add_argument("--decode-min-len", type=int, default=1,
                        help="Outputs at least this long (a model trained a few updates would end at once).")
    parser.add_argument("--profile", action="store_true",
                        help="After the timed decoding, one more pass under torch.profiler: its op tables go to "
                             "OUT/decode_profile.txt, and steps, syncs per step and ms per step to gpu_check.json.")
    args = parser.parse_args()

    started = time.monotonic()
    corpus, data = args.out / "corpus", args.out / "data"
    synthetic_corpus(corpus, args.pairs)
    splits = {split: (corpus / f"{split}.src", corpus / f"{split}.tgt") for split in ("train", "valid")}
    prepared = prepare_corpus(data, "src", "tgt", splits, PrepareOptions(
        vocab_size=args.vocab_size, spm_max_sentences=400_000, workers=8), {"recipe": "gpu-check"})
    print(f"data ready in {time.monotonic() - started:.0f} s: {prepared.manifest['vocab_size']} pieces", flush=True)

    chosen = preset(args.arch)
    train = replace_fields(chosen.train, {
        "max_tokens": args.max_tokens, "max_updates": args.updates, "precision": args.precision, "warmup": 100,
        "save_interval_updates": 0, "max_epochs": 0, "valid_bleu": False, "log_interval": 20, "keep_last": 1})
    save_dir = args.out / "run"
    if (save_dir / "checkpoint_last.pt").exists():
        for path in save_dir.iterdir():
            path.unlink()
    trainer = Trainer(data, save_dir, chosen.model, train, device=args.device)
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.run()
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tgt_tokens_per_s"] for r in records if "tgt_tokens_per_s" in r]
    rate = sorted(rates[1:] or rates)[len(rates[1:] or rates) // 2]  # median after the warm-up window
    split = prepared.manifest["splits"]["train"]
    src_len, tgt_len = (split["src"]["tokens"] / split["sentences"], split["tgt"]["tokens"] / split["sentences"])
    config = trainer.model.config
    flops = training_flops_per_target_token(config.encoder_layers, config.d_model, config.d_ff, config.vocab_size,
                                            src_len, tgt_len, src_len / tgt_len)
    peak = matmul_peak_gflops(args.precision, str(device), size=8192 if device.type == "cuda" else 1024)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "arch": args.arch, "precision": args.precision, "max_tokens": args.max_tokens,
        "updates": args.updates, "tgt_tokens_per_s": round(rate), "training_tflops_per_s": round(rate * flops / 1e12, 1),
        "matmul_peak_tflops": round(peak / 1e3, 1), "mfu": round(rate * flops / (peak * 1e9), 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 1) if device.type == "cuda"
        else None,
        "wall_s": round(time.monotonic() - started),
    }
    result["decoding"] = decoding_speed(save_dir / "checkpoint_last.pt", corpus / "valid.src", args)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def decoding_speed(checkpoint: Path, source: Path, args) -> dict:
    """`nmt translate`'s beam search on the trained model: sentences/s at beam 4 under --decode-precision, after a
    warm-up (the model is barely trained, so outputs run long: a speed figure, not a quality one)."""
    from nmt.config import SearchConfig
    from nmt.engines.pytorch import Translator

    lines = source.read_text().splitlines()[: args.decode_sentences]
    translator = Translator(checkpoint, SearchConfig(beam=4, max_len_a=1.0, max_len_b=10,
                                                                   min_len=args.decode_min_len), args.device,
                            max_tokens=args.decode_max_tokens, precision=args.decode_precision)
    translator.translate(lines[:32])  # warm-up: kernel selection, allocator
    if translator.device.type == "cuda":
        torch.cuda.synchronize(translator.device)
        torch.cuda.reset_peak_memory_stats(translator.device)
    started = time.perf_counter()
    outputs = translator.translate(lines)
    if translator.device.type == "cuda":
        torch.cuda.synchronize(translator.device)
    seconds = time.perf_counter() - started
    diagnosis = decoding_diagnosis(translator, lines, args.out) if args.profile else {}
    constrained = constrained_speed(translator, lines, source.with_suffix(".tgt"), seconds)
    return {**diagnosis, **constrained, "sentences": len(lines), "beam": 4, "precision": args.decode_precision,
            "max_tokens": args.decode_max_tokens, "sentences_per_s": round(len(lines) / seconds, 1),
            "target_pieces_per_s": round(sum(len(t[0].tokens) + 1 for t in outputs) / seconds),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(translator.device) / 2 ** 30, 1)
            if translator.device.type == "cuda" else None}


def constrained_speed(translator, lines: list[str], references: Path, unconstrained_s: float) -> dict:
    """The same lines with one constraint each, a word of the line's reference (the second, or the first): the
    constrained search's sentences/s against the unconstrained run's, and the share of constraints used."""
    words = [line.split() for line in references.read_text().splitlines()[: len(lines)]]
    constraints = [[w[1] if len(w) > 1 else w[0]] if w else [] for w in words]
    if translator.device.type == "cuda":
        torch.cuda.synchronize(translator.device)
    started = time.perf_counter()
    outputs = translator.translate(lines, constraints=constraints)
    if translator.device.type == "cuda":
        torch.cuda.synchronize(translator.device)
    seconds = time.perf_counter() - started
    from nmt.terminology import term_pattern

    used = sum(all(term_pattern([p]).search(t[0].text) for p in c) for t, c in zip(outputs, constraints) if c)
    return {"constrained_sentences_per_s": round(len(lines) / seconds, 1),
            "constrained_speed_ratio": round(unconstrained_s / seconds, 3),
            "constraints_used": f"{used} of {sum(1 for c in constraints if c)}"}


def decoding_diagnosis(translator, lines: list[str], out: Path) -> dict:
    """Where a decoding pass's time goes: decoding steps (calls of decode_step over all batches), host-device
    synchronisations per step (torch.cuda's sync debug mode, counted as warnings), and torch.profiler's op tables
    (by self CPU time and by device time) written to OUT/decode_profile.txt."""
    import warnings

    from torch.profiler import ProfilerActivity, profile

    import nmt.engines.pytorch

    nmt.engines.pytorch.CUDNN_ATTENTION = True  # the A/B: attention through cuDNN as well, as torch chooses by default
    started = time.perf_counter()
    translator.translate(lines)
    if translator.device.type == "cuda":
        torch.cuda.synchronize(translator.device)
    with_cudnn = time.perf_counter() - started
    nmt.engines.pytorch.CUDNN_ATTENTION = False
    model = translator.model
    steps = 0
    decode_step = model.decode_step

    def counted(*step_args, **step_kwargs):
        nonlocal steps
        steps += 1
        return decode_step(*step_args, **step_kwargs)

    model.decode_step = counted
    cuda = translator.device.type == "cuda"
    syncs = 0
    if cuda:
        torch.cuda.set_sync_debug_mode("warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        translator.translate(lines)
        if cuda:
            torch.cuda.synchronize(translator.device)
        seconds = time.perf_counter() - started
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    if cuda:
        torch.cuda.set_sync_debug_mode(0)
    pass_steps, steps = steps, 0
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        translator.translate(lines[:100])
        if cuda:
            torch.cuda.synchronize(translator.device)
    table = profiler.key_averages()
    text = table.table(sort_by="self_cpu_time_total", row_limit=30)
    if cuda:
        text += "\n" + table.table(sort_by="self_cuda_time_total", row_limit=30)
    out.mkdir(parents=True, exist_ok=True)
    (out / "decode_profile.txt").write_text(text)
    print(text[:6000])
    model.decode_step = decode_step
    return {"steps": pass_steps, "ms_per_step": round(1000 * seconds / max(pass_steps, 1), 2),
            "syncs_per_step": round(syncs / max(pass_steps, 1), 2), "untimed_pass_s": round(seconds, 2),
            "sentences_per_s_with_cudnn_attention": round(len(lines) / with_cudnn, 1)}


if __name__ == "__main__":
    main()
