"""Decoding speed on this machine's CPU: `nmt translate` (PyTorch fp32 and int8) against CTranslate2 (fp32 and int8)
on the same model, exported with `nmt export ctranslate2`.

Multi30k test_2016_flickr (1,000 sentences), beam 4, length penalty 0.6 normalizing by |Y|^alpha (`--lenpen-style
length`, the one both decoders implement), batches of --max-tokens source tokens (both sort by length inside), 2
threads. Each contender runs in its own process (a fresh allocator, and its own peak RSS): it loads the model,
translates 50 sentences to warm up, then the whole test set once per repeat (the median is reported), then 50
sentences (test lines 100-149) each alone (latency after loading: the median), at 1 and at 2 threads, each engine
judged at its faster setting. Sentences/s and target tokens/s (output
SentencePiece pieces, end-of-sentence included) of the whole set; BLEU by sacreBLEU against the reference.

    python benchmarks/translate_speed.py --small CHECKPOINT --base CHECKPOINT [--repeats 3]
    python benchmarks/translate_speed.py --train-minutes 20     # trains both models first (on Multi30k en-de)
    python benchmarks/translate_speed.py --archs none --model a=A.pt --model b=B.pt --output results/x.json
    ... --before REV    # also decodes with the nmt of git revision REV: how many outputs stayed the same

CTranslate2 comes from the `ctranslate2` extra (`pip install -e ".[ctranslate2]"`), which export needs anyway.
Figures go to benchmarks/results/translate_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
THREADS = 2
SEARCH = {"beam": 4, "lenpen": 0.6, "lenpen_style": "length"}  # the length penalty both decoders implement
CONTENDERS = [("torch", "fp32"), ("torch", "int8"), ("ctranslate2", "fp32"), ("ctranslate2", "int8")]


def environment(threads: int = THREADS, code: Path = REPO) -> dict:
    return {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


# --- one contender, in its own process -------------------------------------------------------------------------

def worker(engine: str, precision: str, model: Path, source: Path, reference: Path, max_tokens: int,
           repeats: int, threads: int) -> dict:
    import torch

    from nmt.config import SearchConfig

    torch.set_num_threads(threads)
    search = SearchConfig(**SEARCH)
    quantize = "int8" if precision == "int8" else None
    started = time.perf_counter()
    if engine == "torch":
        from nmt.engines.pytorch import Translator
        translator = Translator(model, search, "cpu", max_tokens, quantize=quantize)
    else:
        from nmt.engines.ctranslate2 import CTranslate2Translator
        translator = CTranslate2Translator(model, search, "cpu", max_tokens, quantize, threads)
    load_s = time.perf_counter() - started
    lines = source.read_text(encoding="utf-8").splitlines()
    translator.translate(lines[:50])  # warm-up: first-call allocations, kernel selection
    times, outputs = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        outputs = translator.translate(lines)
        times.append(time.perf_counter() - started)
    latencies = []
    for line in lines[100:150]:
        started = time.perf_counter()
        translator.translate([line])
        latencies.append(time.perf_counter() - started)
    figures = {"latency_ms": round(statistics.median(latencies) * 1e3, 1), "load_s": round(load_s, 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "threads": threads}
    if not repeats:  # latency only
        return {**figures, "hypotheses": []}
    import sacrebleu
    references = reference.read_text(encoding="utf-8").splitlines()
    seconds = statistics.median(times)
    hypotheses = [t[0].text for t in outputs]
    pieces = sum(len(t[0].tokens) + 1 for t in outputs)
    return {**figures, "sentences_per_s": round(len(lines) / seconds, 1), "tgt_tokens_per_s": round(pieces / seconds),
            "seconds": round(seconds, 2), "all_seconds": [round(t, 2) for t in times],
            "bleu": round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 2), "hypotheses": hypotheses}


# --- the run ---------------------------------------------------------------------------------------------------

def sh(command: list[str]) -> None:
    subprocess.run(command, check=True, env=environment())


def prepare(work: Path) -> Path:
    data = work / "data"
    sh([sys.executable, "-m", "nmt", "prepare", "multi30k-en-de", "--mirror", str(MULTI30K), "--out", str(data)])
    return data


def train(data: Path, work: Path, arch: str, minutes: float) -> Path:
    save_dir = work / f"train-{arch}"
    if not (save_dir / "checkpoint_last.pt").is_file():
        command = [sys.executable, "-m", "nmt", "train", str(data), "--arch", arch, "--save-dir", str(save_dir),
                   "--threads", str(THREADS), "--max-time", str(minutes), "--max-updates", "0", "--max-epochs", "0",
                   "--no-valid-bleu"]
        if arch == "transformer_base":  # the small preset's CPU batch; a short warmup for a short run
            command += ["--lr", "0.3", "--warmup", "400", "--max-tokens", "2048", "--update-freq", "1"]
        sh(command)
    return save_dir / "checkpoint_last.pt"


def run_contender(engine: str, precision: str, model: Path, data: Path, max_tokens: int, repeats: int,
                  hypotheses_out: Path, threads: int = THREADS, code: Path = REPO) -> dict:
    command = [sys.executable, __file__, "--worker", engine, precision, str(model), "--data", str(data),
               "--max-tokens", str(max_tokens), "--repeats", str(repeats), "--threads", str(threads)]
    result = subprocess.run(command, check=True, capture_output=True, text=True, env=environment(threads, code))
    figures = json.loads(result.stdout.splitlines()[-1])
    hypotheses_out.write_text("\n".join(figures.pop("hypotheses")) + "\n", encoding="utf-8")
    return figures


def checkout(revision: str, work: Path) -> Path:
    """A worktree of this repository at `revision`, for decoding with the nmt of that revision."""
    tree = work / f"nmt-{revision}"
    if not tree.is_dir():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), revision], check=True)
    return tree


def agreement(a: Path, b: Path) -> float:
    left, right = a.read_text(encoding="utf-8").splitlines(), b.read_text(encoding="utf-8").splitlines()
    return round(sum(x == y for x, y in zip(left, right)) / len(left), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=3, metavar=("ENGINE", "PRECISION", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nmt-translate-speed"))
    parser.add_argument("--data", type=Path, default=None, help="A prepared multi30k-en-de DATA_DIR (default: made).")
    parser.add_argument("--small", type=Path, default=None, help="A trained transformer_small checkpoint.")
    parser.add_argument("--base", type=Path, default=None, help="A trained transformer_base checkpoint.")
    parser.add_argument("--train-minutes", type=float, default=20, help="For a model not given: train this long.")
    parser.add_argument("--archs", nargs="+", default=["transformer_small", "transformer_base"],
                        help="Which of the two models to measure (default both; the issue's figures need both).")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="Another trained checkpoint to time, under NAME (repeatable); with --archs none, only "
                             "these.")
    parser.add_argument("--contenders", nargs="+", default=[f"{e}_{p}" for e, p in CONTENDERS],
                        choices=[f"{e}_{p}" for e, p in CONTENDERS], help="Which engines and precisions to time.")
    parser.add_argument("--max-tokens", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=THREADS, help=argparse.SUPPRESS)
    parser.add_argument("--before", default=None, help="A git revision whose decoder's outputs to compare with.")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "translate_speed.json")
    args = parser.parse_args()
    if args.worker:
        engine, precision, model = args.worker
        figures = worker(engine, precision, Path(model), args.data / "test.en", args.data / "test.de",
                         args.max_tokens, args.repeats, args.threads)
        print(json.dumps(figures, ensure_ascii=False))
        return

    if args.data is None and not MULTI30K.is_dir():
        sys.exit(f"{MULTI30K} is absent: this benchmark translates Multi30k")
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.data or prepare(args.work)
    given = {"transformer_small": args.small, "transformer_base": args.base}
    models = {arch: given[arch] or train(data, args.work, arch, args.train_minutes) for arch in args.archs
              if arch != "none"}
    for named in args.model:
        name, _, path = named.partition("=")
        models[name] = Path(path)
    from decode_breakdown import cpu_model
    results: dict = {"machine": f"{cpu_model()}, {os.cpu_count()} CPUs, "
                                f"{THREADS} threads", "test_set": "multi30k test_2016_flickr (1,000 sentences)",
                     "search": "beam 4, lenpen 0.6, --lenpen-style length", "max_tokens": args.max_tokens,
                     "repeats": args.repeats, "models": {}}
    import ctranslate2
    results["ctranslate2_version"] = ctranslate2.__version__
    for arch, checkpoint in models.items():
        exported = args.work / f"{arch}-ct2"
        sh([sys.executable, "-m", "nmt", "export", "ctranslate2", str(checkpoint), str(exported), "--force"])
        summary: dict = {"checkpoint": str(checkpoint)}
        for engine, precision in [(e, p) for e, p in CONTENDERS if f"{e}_{p}" in args.contenders]:
            model = checkpoint if engine == "torch" else exported
            name = f"{engine}_{precision}"
            summary[name] = run_contender(engine, precision, model, data, args.max_tokens, args.repeats,
                                          args.work / f"{arch}-{name}.hyp")
            print(f"{arch} {name}: {summary[name]}", flush=True)
            one_thread = run_contender(engine, precision, model, data, args.max_tokens, 0,
                                       args.work / f"{arch}-{name}-1thread.hyp", threads=1)
            summary[name]["latency_ms_1_thread"] = one_thread["latency_ms"]
            summary[name]["latency_ms_best"] = min(one_thread["latency_ms"], summary[name]["latency_ms"])
        if all(name in summary for name in ("torch_int8", "ctranslate2_int8")):
            summary["torch_int8_over_ctranslate2_int8"] = round(
                summary["torch_int8"]["sentences_per_s"] / summary["ctranslate2_int8"]["sentences_per_s"], 2)
        if args.before:
            summary[f"before_{args.before}"] = run_contender(
                "torch", "fp32", checkpoint, data, args.max_tokens, 1, args.work / f"{arch}-before.hyp",
                code=checkout(args.before, args.work))
            summary["same_output_as_before"] = agreement(args.work / f"{arch}-torch_fp32.hyp",
                                                         args.work / f"{arch}-before.hyp")
        if all(name in summary for name in ("torch_fp32", "ctranslate2_fp32")):
            summary["torch_fp32_latency_over_ctranslate2_fp32"] = round(
                summary["torch_fp32"]["latency_ms_best"] / summary["ctranslate2_fp32"]["latency_ms_best"], 2)
            summary["torch_fp32_over_ctranslate2_fp32"] = round(
                summary["torch_fp32"]["sentences_per_s"] / summary["ctranslate2_fp32"]["sentences_per_s"], 2)
            summary["same_output_torch_vs_ctranslate2_fp32"] = agreement(
                args.work / f"{arch}-torch_fp32.hyp", args.work / f"{arch}-ctranslate2_fp32.hyp")
        results["models"][arch] = summary
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
