"""How fast `nmt prepare` cleans, encodes and binarizes, with 1 and 2 workers, and how much memory each step takes.

The corpus is synthetic and WMT-like: each of --pairs pairs joins 1-4 random Multi30k training pairs (source with
source, target with target), so lines are longer and more varied than Multi30k's captions (about 31 English words on
average; WMT14 en-de's are about 23). Steps are timed by `nmt prepare custom` itself (DATA_DIR/prepare.jsonl):

  1. `nmt prepare custom --workers 1` on the whole corpus: index, references, SentencePiece (on --spm-sample
     sentences, in its own process) and binarize/train;
  2. the binarize/train step again with --workers 2 (its outputs removed, so only that step runs; the files must be
     byte-identical to step 1's);
  3. extraction: the corpus packed into a .tgz under the real Europarl member names, streamed out by the extract step.

Peak memory is each process's maximum resident set (getrusage): the main process (every streaming step), the
SentencePiece process and the binarize workers. The extrapolation to WMT14 en-de takes its 4,520,620 training pairs (de-en lines of the three corpora) and
the 1,656 MB of archives to stream, and leaves out the download. Figures go to results/prepare_speed.json.

    python benchmarks/prepare_speed.py [--pairs 2000000] [--spm-sample 2000000] [--work /tmp/nmt-prepare-speed]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MULTI30K = REPO.parent / "shared" / "data" / "multi30k"
WMT14_EN_DE_PAIRS = 1_920_209 + 2_399_123 + 201_288  # Europarl v7, Common Crawl, News Commentary v9 (de-en)
WMT14_EN_DE_ARCHIVE_MB = (657_632_379 + 918_311_367 + 80_418_416) / 1e6


def read_gz(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def make_corpus(folder: Path, pairs: int, seed: int = 1) -> dict:
    """train.en/.de (synthetic, WMT-like) and valid.en/.de (Multi30k val) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "done.json"
    if done.is_file() and json.loads(done.read_text())["pairs"] == pairs:
        return json.loads(done.read_text())
    english, german = read_gz(MULTI30K / "train.en.gz"), read_gz(MULTI30K / "train.de.gz")
    rng = random.Random(seed)
    words = 0
    with open(folder / "train.en", "w", encoding="utf-8") as en_out, \
            open(folder / "train.de", "w", encoding="utf-8") as de_out:
        for _ in range(pairs):
            chosen = [rng.randrange(len(english)) for _ in range(rng.randint(1, 4))]
            line = " ".join(english[i] for i in chosen)
            words += line.count(" ") + 1
            en_out.write(line + "\n")
            de_out.write(" ".join(german[i] for i in chosen) + "\n")
    for lang in ("en", "de"):
        (folder / f"valid.{lang}").write_text("\n".join(read_gz(MULTI30K / f"val.{lang}.gz")) + "\n")
    info = {"pairs": pairs, "english_words_per_line": round(words / pairs, 1),
            "bytes": sum((folder / f"train.{lang}").stat().st_size for lang in ("en", "de"))}
    done.write_text(json.dumps(info))
    return info


def nmt(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nmt", *args], check=True, cwd=REPO,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started


def steps_of(data_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (data_dir / "prepare.jsonl").read_text().splitlines()]


def measure_extraction(corpus: Path, work: Path) -> dict:
    """Pack the corpus as Europarl is packed, then time the extract step's streaming of it."""
    sys.path.insert(0, str(REPO))
    from nmt.data.sources import Source, extract

    archive = work / "training-parallel-europarl-v7.tgz"
    if not archive.is_file():
        with tarfile.open(archive.with_suffix(".part"), "w:gz", compresslevel=6) as tar:
            for lang in ("de", "en"):
                tar.add(corpus / f"train.{lang}", arcname=f"training/europarl-v7.de-en.{lang}")
        archive.with_suffix(".part").rename(archive)
    sources = [Source(archive.name, f"training/europarl-v7.de-en.{lang}") for lang in ("de", "en")]
    out = work / "extracted"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    extract(archive, sources, out)
    seconds = time.perf_counter() - started
    megabytes = archive.stat().st_size / 1e6
    return {"archive_mb": round(megabytes, 1), "seconds": round(seconds, 2), "mb_per_s": round(megabytes / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--spm-sample", type=int, default=2_000_000)
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nmt-prepare-speed"))
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "prepare_speed.json")
    args = parser.parse_args()
    if not MULTI30K.is_dir():
        sys.exit(f"{MULTI30K} is absent: this benchmark builds its corpus from Multi30k")

    corpus = args.work / "corpus"
    info = make_corpus(corpus, args.pairs)
    print(f"corpus: {info}", flush=True)

    data = args.work / "data"
    shutil.rmtree(data, ignore_errors=True)
    common = ["prepare", "custom", "--src", "en", "--tgt", "de", "--train", str(corpus / "train"),
              "--valid", str(corpus / "valid"), "--vocab-size", str(args.vocab_size),
              "--spm-sample", str(args.spm_sample), "--out", str(data)]
    nmt(*common, "--workers", "1")
    one = {step["step"]: step for step in steps_of(data)}
    first_files = {name: (data / name).read_bytes() for name in ("train.en.idx", "train.de.idx")}
    first_bin = {name: (data / name).stat().st_size for name in ("train.en.bin", "train.de.bin")}

    for name in ("train.en.bin", "train.en.idx", "train.de.bin", "train.de.idx"):
        (data / name).unlink()
    (data / "prepare.jsonl").unlink()
    nmt(*common, "--workers", "2")
    two = {step["step"]: step for step in steps_of(data)}
    assert set(two) == {"binarize/train"}, f"only binarization should have run again, ran {sorted(two)}"
    assert all((data / name).read_bytes() == first_files[name] for name in first_files), "workers changed the data"
    assert all((data / name).stat().st_size == size for name, size in first_bin.items())

    manifest = json.loads((data / "manifest.json").read_text())
    extraction = measure_extraction(corpus, args.work)
    pairs = info["pairs"]
    rates = {workers: pairs / steps["binarize/train"]["seconds"] for workers, steps in ((1, one), (2, two))}
    index_rate = pairs / one["index"]["seconds"]
    spm_seconds = one["spm"]["seconds"]
    wmt_seconds = (WMT14_EN_DE_ARCHIVE_MB / extraction["mb_per_s"] + WMT14_EN_DE_PAIRS / index_rate + spm_seconds
                   + WMT14_EN_DE_PAIRS / rates[2])
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "corpus": info,
        "kept_pairs": manifest["cleaning"]["train"],
        "vocab_size": manifest["vocab_size"],
        "steps_workers_1": one,
        "binarize_train_workers_2": two["binarize/train"],
        "pairs_per_s": {"clean_encode_binarize_1_worker": round(rates[1]), "clean_encode_binarize_2_workers":
                        round(rates[2]), "index": round(index_rate)},
        "peak_rss_mb": {
            "main_process_all_streaming_steps": max(step["peak_rss_mb"] for step in one.values()),
            "sentencepiece_training": one["spm"].get("spm_peak_rss_mb"),
            "binarize_worker": two["binarize/train"].get("workers_peak_rss_mb"),
        },
        "spm": {"sampled_sentences": manifest["spm"]["sampled_sentences"], "seconds": spm_seconds},
        "extraction": extraction,
        "wmt14_en_de_extrapolation": {
            "pairs": WMT14_EN_DE_PAIRS, "archives_mb": round(WMT14_EN_DE_ARCHIVE_MB),
            "minutes_without_download": round(wmt_seconds / 60, 1),
            "assumes": "extraction at the measured MB/s over all 3 training archives, index and binarize at the "
                       "measured pairs/s (2 workers), SentencePiece as measured on the same sample size",
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
