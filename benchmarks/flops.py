"""Training FLOPs of the Transformer per target token, and a machine's matmul peak: the two halves of MFU."""

from __future__ import annotations

import time


def training_flops_per_target_token(layers: int, d_model: int, d_ff: int, vocab: int, src_len: float,
                                    tgt_len: float, src_per_tgt: float) -> float:
    """3 x forward (backward = 2 x forward), forward = 2 x multiply-adds of the matrix products: projections,
    feed-forward, attention scores and their weighted sums, the output projection. Elementwise work is not counted."""
    d = d_model
    per_src = layers * (4 * d * d + 2 * d * d_ff + 2 * src_len * d)  # encoder layer, per source token
    per_src += layers * 2 * d * d  # cross-attention keys and values, computed once per source token
    per_tgt = layers * (4 * d * d + 2 * d * d + 2 * d * d_ff + tgt_len * d + 2 * src_len * d)  # decoder layer
    per_tgt += d * vocab  # output projection
    return 3 * 2 * (per_tgt + src_per_tgt * per_src)


def matmul_peak_gflops(dtype_name: str, device: str = "cpu", size: int = 2048, repeats: int = 5) -> float:
    """The best rate of square matrix products of `size`: what this device's GEMM reaches on easy shapes."""
    import torch
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(5):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, 5 * 2 * size ** 3 / (time.perf_counter() - started))
    return best / 1e9


def cpu_bf16_support() -> dict:
    """The CPU's model name and the bf16 instructions it reports (Linux /proc/cpuinfo)."""
    model, flags = "unknown", set()
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": model, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags}


if __name__ == "__main__":
    # Is bf16 faster than fp32 on this CPU? It depends on the CPU: with AVX512-BF16 or AMX, bf16 matrix products can
    # run at twice the fp32 rate or more; without them, bf16 is emulated and slower.
    import json

    import torch
    support = cpu_bf16_support()
    peaks = {name: round(matmul_peak_gflops(name), 1) for name in ("fp32", "bf16")}
    print(json.dumps({**support, "threads": torch.get_num_threads(), "matmul_gflops": peaks,
                      "bf16_over_fp32": round(peaks["bf16"] / peaks["fp32"], 2)}))
