"""Training throughput on this machine's CPU cores: nmt (fp32, bf16) against OpenNMT-py 3.5.1, same model, same data.

Both toolkits train the same configuration (layers, widths, heads, feed-forward, shared 8k SentencePiece vocabulary
with tied embeddings, batches of --max-tokens padded tokens, Adam with the inverse-square-root schedule, label
smoothing 0.1, dropout 0.1 on sublayer outputs and embeddings, none on attention weights, as the paper) on the same Multi30k en-de training pairs: OpenNMT-py reads the pieces of nmt's prepared
DATA_DIR, decoded from its binarized arrays, so tokenization and cleaning are identical. OpenNMT-py is installed by
this script into its own virtual environment (--onmt-venv), with the torch build this project uses (torch 2.13.0:
the same kernels, so the comparison measures the toolkits; OpenNMT-py 3.5.1 declares torch<2.3, which pip is told to
ignore, and its code runs unchanged on 2.13).

Throughput: target tokens per second, non-padding, end-of-sentence included (OpenNMT-py's "tok/s" target figure counts
the same tokens), as the median over logging windows of a run after its first window (warm-up), and the median of
--runs runs that alternate between the contenders. Peak memory: the training process's maximum resident set
(wait4). MFU: the model's training FLOPs per second (6 x multiply-adds of the matrix products per token, attention
scores included, from the configuration and the data's mean lengths) over this machine's fp32 / bf16 matmul peak,
measured here with large square matmuls.

BLEU after equal wall time (--bleu-minutes): each toolkit trains transformer_small for the same minutes, then its
last checkpoint translates test_2016_flickr (beam 4, length penalty 0.6, GNMT style) and sacreBLEU scores it.
--bleu-only redoes just that comparison; a training run of the same minutes already in WORK is reused.

    python benchmarks/train_throughput.py [--runs 3] [--seconds 75] [--base-seconds 100] [--bleu-minutes 10]

Figures go to benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from flops import matmul_peak_gflops, training_flops_per_target_token  # noqa: E402

MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
ONMT_VERSION = "3.5.1"
THREADS = 2

# (layers, d_model, heads, d_ff) of the presets compared; training settings of the small preset for both.
ARCHS = {"transformer_small": (3, 256, 4, 1024), "transformer_base": (6, 512, 8, 2048)}


def sh(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, **kwargs)


def environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}


# --- data ------------------------------------------------------------------------------------------------------

def prepare(work: Path) -> Path:
    data = work / "data"
    sh([sys.executable, "-m", "nmt", "prepare", "multi30k-en-de", "--mirror", str(MULTI30K), "--out", str(data)],
       env=environment())
    return data


def export_pieces(data: Path, out: Path) -> None:
    """nmt's binarized splits as SentencePiece pieces, one sentence a line, and the shared vocabulary."""
    sys.path.insert(0, str(REPO))
    from nmt.data.dataset import ParallelDataset
    from nmt.vocab import Vocab

    if (out / "vocab.txt").is_file():
        return
    out.mkdir(parents=True, exist_ok=True)
    vocab = Vocab.from_file(data / "spm.model")
    pieces = [vocab.target.piece(i) for i in range(len(vocab))]
    for split in ("train", "valid", "test"):
        dataset = ParallelDataset(data, split)
        for side, arrays in (("en", dataset.src), ("de", dataset.tgt)):
            with open(out / f"{split}.{side}", "w", encoding="utf-8") as handle:
                for index in range(len(arrays)):
                    handle.write(" ".join(pieces[i] for i in arrays[index][:-1].tolist()) + "\n")
    with open(out / "vocab.txt", "w", encoding="utf-8") as handle:
        for piece in pieces[4:]:  # OpenNMT-py adds its own <unk>, <blank>, <s>, </s>
            handle.write(f"{piece}\t1\n")


def onmt_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if python.is_file() and subprocess.run([str(python), "-c", "import onmt"], capture_output=True).returncode == 0:
        return venv
    sh([sys.executable, "-m", "venv", str(venv)])
    pip = [str(python), "-m", "pip", "install", "-q"]
    sh(pip + ["torch==2.13.0"])
    sh(pip + ["--no-deps", f"OpenNMT-py=={ONMT_VERSION}"])
    sh(pip + ["configargparse", "pyonmttok>=1.37,<2", "pyyaml", "sacrebleu", "six", "rapidfuzz", "pyahocorasick",
              "fasttext-wheel", "spacy", "ctranslate2>=4,<5", "tensorboard", "flask", "waitress", "sentencepiece"])
    return venv


# --- one training run ------------------------------------------------------------------------------------------

def timed_process(command: list[str], seconds: float | None, log: Path) -> tuple[float, float]:
    """Run `command`, stopping it (SIGTERM, then SIGKILL after 15 s) after `seconds` if given; returns (wall seconds,
    peak RSS in MB of the process, from wait4)."""
    started = time.monotonic()
    stop_sent = None
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment())
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            now = time.monotonic()
            if seconds is not None and stop_sent is None and now - started >= seconds:
                process.send_signal(signal.SIGTERM)
                stop_sent = now
            if stop_sent is not None and now - stop_sent > 15:  # it ignored the request (OpenNMT-py may)
                process.kill()
            time.sleep(0.2)
    return time.monotonic() - started, usage.ru_maxrss / 1024


def nmt_train(data: Path, save_dir: Path, arch: str, precision: str, minutes: float, log: Path,
              log_interval: int, save_interval: int = 0) -> dict:
    command = [sys.executable, "-m", "nmt", "train", str(data), "--arch", arch, "--save-dir", str(save_dir),
               "--threads", str(THREADS), "--precision", precision, "--max-time", f"{minutes:.4f}",
               "--max-updates", "0", "--max-epochs", "0", "--log-interval", str(log_interval),
               "--save-interval-updates", str(save_interval), "--no-valid-bleu", "--keep-last", "3"]
    if arch != "transformer_small":  # the small preset's training settings for both architectures
        command += ["--lr", "0.35", "--warmup", "400", "--max-tokens", "2048", "--update-freq", "1",
                    "--clip-norm", "1.0"]
    wall, peak = timed_process(command, None, log)
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tgt_tokens_per_s"] for r in records if "tgt_tokens_per_s" in r]
    return {"tgt_tokens_per_s": statistics.median(rates[1:] or rates), "windows": len(rates),
            "updates": max(r["update"] for r in records), "peak_rss_mb": round(peak), "wall_s": round(wall, 1)}


ONMT_REPORT = re.compile(r"Step (\d+)/.*?(\d+)/\s*(\d+) tok/s")


def onmt_config(pieces: Path, run: Path, arch: str, steps: int, report_every: int, save_every: int) -> Path:
    layers, d_model, heads, d_ff = ARCHS[arch]
    config = {
        "src_vocab": str(pieces / "vocab.txt"), "share_vocab": True, "src_words_min_frequency": 0,
        "data": {"corpus_1": {"path_src": str(pieces / "train.en"), "path_tgt": str(pieces / "train.de")},
                 "valid": {"path_src": str(pieces / "valid.en"), "path_tgt": str(pieces / "valid.de")}},
        "save_model": str(run / "model"), "save_checkpoint_steps": save_every, "keep_checkpoint": 3,
        "train_steps": steps, "valid_steps": 10 ** 7, "report_every": report_every, "seed": 1,
        "encoder_type": "transformer", "decoder_type": "transformer", "enc_layers": layers, "dec_layers": layers,
        "heads": heads, "hidden_size": d_model, "word_vec_size": d_model, "transformer_ff": d_ff,
        "dropout": [0.1], "attention_dropout": [0.0], "position_encoding": True, "share_embeddings": True,
        "share_decoder_embeddings": True, "batch_type": "tokens", "batch_size": 2048, "valid_batch_size": 2048,
        "accum_count": [1], "optim": "adam", "adam_beta1": 0.9, "adam_beta2": 0.98, "decay_method": "noam",
        "learning_rate": 0.35, "warmup_steps": 400, "label_smoothing": 0.1, "max_grad_norm": 1.0,
        "param_init": 0.0, "param_init_glorot": True, "normalization": "tokens", "num_workers": 0,
        "model_dtype": "fp32",
    }
    run.mkdir(parents=True, exist_ok=True)
    path = run / "config.yaml"
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML
    return path


def onmt_train(venv: Path, pieces: Path, run: Path, arch: str, seconds: float, log: Path, report_every: int,
               save_every: int = 10 ** 7) -> dict:
    config = onmt_config(pieces, run, arch, 10 ** 7, report_every, save_every)
    wall, peak = timed_process([str(venv / "bin" / "onmt_train"), "-config", str(config)], seconds, log)
    steps, rates = [], []
    for match in ONMT_REPORT.finditer(log.read_text(errors="replace")):
        steps.append(int(match.group(1)))
        rates.append(int(match.group(3)))
    if not rates:
        raise SystemExit(f"no OpenNMT-py progress lines in {log}:\n{log.read_text()[-2000:]}")
    return {"tgt_tokens_per_s": statistics.median(rates[1:] or rates), "windows": len(rates), "updates": max(steps),
            "peak_rss_mb": round(peak), "wall_s": round(wall, 1)}


# --- FLOPs and the machine's peak ------------------------------------------------------------------------------

def matmul_peak() -> dict:
    import torch
    torch.set_num_threads(THREADS)
    return {name: round(matmul_peak_gflops(name), 1) for name in ("fp32", "bf16")}


def flops_per_target_token(arch: str, vocab: int, src_len: float, tgt_len: float, src_per_tgt: float) -> float:
    layers, d_model, _, d_ff = ARCHS[arch]
    return training_flops_per_target_token(layers, d_model, d_ff, vocab, src_len, tgt_len, src_per_tgt)


# --- BLEU after equal wall time --------------------------------------------------------------------------------

def finished_run(log: Path, minutes: float) -> bool:
    """A BLEU training run of `minutes` already in WORK (kept, with its log, so that translation can be redone)."""
    marker = log.with_suffix(".minutes")
    return log.is_file() and marker.is_file() and float(marker.read_text()) == minutes


def bleu_nmt(data: Path, work: Path, minutes: float) -> dict:
    save_dir = work / "bleu-nmt"
    log = work / "bleu-nmt.log"
    if finished_run(log, minutes):
        records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
        rates = [r["tgt_tokens_per_s"] for r in records if "tgt_tokens_per_s" in r]
        result = {"tgt_tokens_per_s": statistics.median(rates[1:] or rates),
                  "updates": max(r["update"] for r in records), "reused": True}
    else:
        result = nmt_train(data, save_dir, "transformer_small", "fp32", minutes, log, 10, 150)
        log.with_suffix(".minutes").write_text(str(minutes))
    hyp = work / "bleu-nmt.hyp"
    sh([sys.executable, "-m", "nmt", "translate", "--checkpoint", str(save_dir / "checkpoint_last.pt"),
        "--input", str(data / "test.en"), "--output", str(hyp), "--threads", str(THREADS)], env=environment())
    return {**result, "bleu": score(hyp, data / "test.de")}


def bleu_onmt(venv: Path, pieces: Path, data: Path, work: Path, minutes: float) -> dict:
    run = work / "bleu-onmt"
    log = work / "bleu-onmt.log"
    if finished_run(log, minutes):
        rates = [int(m.group(3)) for m in ONMT_REPORT.finditer(log.read_text(errors="replace"))]
        result = {"tgt_tokens_per_s": statistics.median(rates[1:] or rates), "reused": True}
    else:
        result = onmt_train(venv, pieces, run, "transformer_small", minutes * 60, log, 10, save_every=50)
        log.with_suffix(".minutes").write_text(str(minutes))
    checkpoints = sorted(run.glob("model_step_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))
    raw = work / "bleu-onmt.pieces"
    sh([str(venv / "bin" / "onmt_translate"), "-model", str(checkpoints[-1]), "-src", str(pieces / "test.en"),
        "-output", str(raw), "-beam_size", "4", "-length_penalty", "wu", "-alpha", "0.6", "-batch_type", "tokens",
        "-batch_size", "6000", "-max_length", "250"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
       # OpenNMT-py 3.5.1 pickles its options (argparse.Namespace) into checkpoints, which torch >= 2.6 refuses to
       # unpickle by default; these are checkpoints this script just wrote.
       env={**environment(), "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    sys.path.insert(0, str(REPO))
    from nmt.vocab import Vocab
    vocab = Vocab.from_file(data / "spm.model")
    hyp = work / "bleu-onmt.hyp"
    hyp.write_text("".join(vocab.target.processor.decode_pieces(line.split()) + "\n"
                           for line in raw.read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    return {**result, "checkpoint_step": int(checkpoints[-1].stem.split("_")[-1]), "bleu": score(hyp, data / "test.de")}


def score(hyp: Path, ref: Path) -> float:
    import sacrebleu
    hyps = hyp.read_text(encoding="utf-8").splitlines()
    refs = ref.read_text(encoding="utf-8").splitlines()
    return round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2)


# --- main ------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nmt-train-throughput"))
    parser.add_argument("--onmt-venv", type=Path, default=None, help="Default: WORK/onmt-venv.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=75, help="Training seconds of each transformer_small run.")
    parser.add_argument("--base-seconds", type=float, default=100, help="Of each transformer_base run.")
    parser.add_argument("--bleu-minutes", type=float, default=10)
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--bleu-only", action="store_true",
                        help="Only the BLEU comparison (training runs of the same minutes found in WORK are reused).")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "train_throughput.json")
    args = parser.parse_args()
    if not MULTI30K.is_dir():
        sys.exit(f"{MULTI30K} is absent: this benchmark trains on Multi30k")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = prepare(work)
    pieces = work / "pieces"
    export_pieces(data, pieces)
    venv = onmt_venv(args.onmt_venv or work / "onmt-venv")
    manifest = json.loads((data / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    src_len = train["src"]["tokens"] / train["sentences"]
    tgt_len = train["tgt"]["tokens"] / train["sentences"]
    peak = matmul_peak()
    print(f"matmul peak on {THREADS} threads: {peak} GFLOP/s", flush=True)

    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
                                f"{THREADS} threads", "matmul_peak_gflops": peak, "onmt_version": ONMT_VERSION,
                     "runs": args.runs, "architectures": {}}
    if args.output.is_file():  # figures of architectures (and of the BLEU comparison) not rerun this time are kept
        previous = json.loads(args.output.read_text())
        results["architectures"] = previous.get("architectures", {})
        if "bleu_equal_time" in previous:
            results["bleu_equal_time"] = previous["bleu_equal_time"]
        for summary in results["architectures"].values():  # their MFU against this run's peak measurement
            for name, figures in summary.items():
                if isinstance(figures, dict) and "mfu" in figures:
                    precision = "bf16" if name.endswith("bf16") else "fp32"
                    figures["mfu"] = round(figures["tgt_tokens_per_s"] * summary["training_gflop_per_target_token"]
                                           / peak[precision], 3)
    for arch, seconds, log_interval in (("transformer_small", args.seconds, 10),
                                        ("transformer_base", args.base_seconds, 2)):
        if arch not in args.archs or args.bleu_only:
            continue
        runs: dict[str, list[dict]] = {"nmt_fp32": [], "nmt_bf16": [], "onmt_fp32": []}
        for repeat in range(args.runs):  # alternate the contenders: drifts of the machine hit all alike
            for name in runs:
                tag = f"{arch}-{name}-{repeat}"
                if name.startswith("nmt"):
                    outcome = nmt_train(data, work / tag, arch, name.split("_")[1], seconds / 60,
                                        work / f"{tag}.log", log_interval)
                    subprocess.run(["rm", "-rf", str(work / tag)])
                else:
                    outcome = onmt_train(venv, pieces, work / tag, arch, seconds + 25, work / f"{tag}.log",
                                         log_interval)
                    subprocess.run(["rm", "-rf", str(work / tag)])
                print(f"{tag}: {outcome}", flush=True)
                runs[name].append(outcome)
        flops = flops_per_target_token(arch, manifest["vocab_size"], src_len, tgt_len, src_len / tgt_len)
        summary = {}
        for name, outcomes in runs.items():
            rate = statistics.median(o["tgt_tokens_per_s"] for o in outcomes)
            precision = "bf16" if name.endswith("bf16") else "fp32"
            summary[name] = {"tgt_tokens_per_s": round(rate), "peak_rss_mb": max(o["peak_rss_mb"] for o in outcomes),
                             "mfu": round(rate * flops / (peak[precision] * 1e9), 3), "runs": outcomes}
        summary["nmt_fp32_over_onmt"] = round(summary["nmt_fp32"]["tgt_tokens_per_s"]
                                              / summary["onmt_fp32"]["tgt_tokens_per_s"], 2)
        summary["training_gflop_per_target_token"] = round(flops / 1e9, 4)
        results["architectures"][arch] = summary
        print(json.dumps({arch: {k: (v if not isinstance(v, dict) else {x: y for x, y in v.items() if x != "runs"})
                                 for k, v in summary.items()}}, indent=1), flush=True)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")

    if args.bleu_minutes > 0:
        results["bleu_equal_time"] = {"minutes": args.bleu_minutes, "nmt": bleu_nmt(data, work, args.bleu_minutes),
                                      "onmt": bleu_onmt(venv, pieces, data, work, args.bleu_minutes)}
        print(json.dumps(results["bleu_equal_time"], indent=1), flush=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
