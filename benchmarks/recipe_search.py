"""A measured search of the small-data recipe: named settings of `nmt train` (and `nmt prepare`) on Multi30k en->de,
each trained for --minutes on this machine, then scored as the README's job scores (average of the 5 best
checkpoints by valid loss, beam 4, GNMT length penalty 0.6 — the tuned penalty is left out so that settings are
compared on their weights alone), seed by seed.

    python benchmarks/recipe_search.py --minutes 5 --seeds 1 --settings baseline dropout_0.3 ls_0.2   # prune
    python benchmarks/recipe_search.py --minutes 20 --seeds 1 2 3 --settings small_corpus baseline   # verdict
    python benchmarks/recipe_search.py --list

Every (setting, minutes, seed) is recorded in benchmarks/results/recipe_search.json as it finishes, and skipped when
the file already has it, so a search can be stopped and continued across sessions; `--table` prints what is there
(mean and sd over seeds). Work goes to benchmarks/work/recipe-search/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data" / "multi30k"
RESULTS = REPO / "benchmarks" / "results" / "recipe_search.json"
WORK = REPO / "benchmarks" / "work" / "recipe-search"

# name -> (options of nmt train on top of --arch transformer_small unless they name another, options of nmt prepare)
SETTINGS: dict[str, tuple[list[str], list[str]]] = {
    "baseline": ([], []),
    "small_corpus": (["--arch", "small_corpus"], []),  # the preset the search chose
    "dropout_0.2": (["--dropout", "0.2"], []),
    "dropout_0.3": (["--dropout", "0.3"], []),
    "attention_dropout_0.1": (["--attention-dropout", "0.1", "--activation-dropout", "0.1"], []),
    "ls_0.2": (["--label-smoothing", "0.2"], []),
    "lr_0.5": (["--lr", "0.5"], []),
    "lr_0.7": (["--lr", "0.7"], []),
    "lr_0.7_warmup_800": (["--lr", "0.7", "--warmup", "800"], []),
    "tokens_4096": (["--max-tokens", "4096"], []),
    "ffn_1024": (["--d-ff", "1024"], []),
    "heads_8": (["--heads", "8"], []),
    "enc6_dec1": (["--encoder-layers", "6", "--decoder-layers", "1"], []),
    "enc5_dec2": (["--encoder-layers", "5", "--decoder-layers", "2"], []),
    "width_384": (["--d-model", "384", "--d-ff", "1536", "--heads", "6"], []),
    "subword_0.1": (["--subword-alpha", "0.1"], []),
    "subword_0.05": (["--subword-alpha", "0.05"], []),
    "bf16": (["--precision", "bf16"], []),
    "vocab_4000": ([], ["--vocab-size", "4000"]),
    "vocab_16000": ([], ["--vocab-size", "16000"]),
    "separate_vocabs": ([], ["--separate-vocabs"]),
}


def options_of(setting: str) -> tuple[list[str], list[str]]:
    """A setting's options: a name above, or names joined by "+" (bf16+lr_0.5), their options together."""
    train_options: list[str] = []
    prepare_options: list[str] = []
    for name in setting.split("+"):
        if name not in SETTINGS:
            raise SystemExit(f"unknown setting {name!r}; --list shows them")
        train_options += SETTINGS[name][0]
        prepare_options += SETTINGS[name][1]
    return train_options, prepare_options


def nmt(*args: str, capture: bool = False) -> str:
    python = REPO / ".venv" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "nmt", *args], check=True, cwd=REPO, text=True,
                          capture_output=capture, env={**os.environ, "PYTHONPATH": str(REPO)})
    return done.stdout if capture else ""


def data_for(prepare_options: list[str]) -> Path:
    """The prepared data of these prepare options (shared by every setting that uses them)."""
    name = "data" + "".join(part.replace("--", "_") for part in prepare_options)
    data = WORK / name
    nmt("prepare", "multi30k-en-de", "--out", str(data), "--mirror", str(MIRROR), *prepare_options)
    return data


def run(setting: str, minutes: float, seed: int) -> dict:
    train_options, prepare_options = options_of(setting)
    data = data_for(prepare_options)
    run_dir = WORK / f"{setting}-{minutes:g}min-seed{seed}"
    resume = ["--resume"] if (run_dir / "checkpoint_last.pt").exists() else []
    started = time.time()
    arch = [] if "--arch" in train_options else ["--arch", "transformer_small"]
    nmt("train", str(data), *arch, "--save-dir", str(run_dir), "--max-time", str(minutes),
        "--seed", str(seed), "--valid-bleu", *train_options, *resume)
    nmt("average-checkpoints", str(run_dir), "--best", "5", "--output", str(run_dir / "averaged.pt"), "--force")
    hypotheses = run_dir / "test.hyp.de"
    nmt("translate", "--checkpoint", str(run_dir / "averaged.pt"), "--beam", "4", "--lenpen", "0.6",
        "--lenpen-style", "gnmt", "--input", str(data / "test.en"), "--output", str(hypotheses))
    scores = json.loads(nmt("score", "--ref", str(data / "test.de"), "--hyp", str(hypotheses), "--json",
                            capture=True))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "tgt_tokens_per_s" in r]
    valid = [r for r in records if "valid_loss" in r]
    return {"setting": setting, "minutes": minutes, "seed": seed, "train_options": train_options,
            "prepare_options": prepare_options, "updates": train[-1]["update"], "epochs": train[-1]["epoch"],
            "best_valid_loss": min(r["valid_loss"] for r in valid),
            "test_bleu": scores["bleu"]["score"], "test_chrf": scores["chrf"]["score"],
            "bleu_signature": scores["bleu"]["signature"],
            "train_tgt_tokens_per_s_median": statistics.median(r["tgt_tokens_per_s"] for r in train),
            "wall_s": round(time.time() - started, 1),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}


def load() -> list[dict]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else []


def table(results: list[dict]) -> None:
    groups: dict[tuple[str, float], list[dict]] = {}
    for result in results:
        groups.setdefault((result["setting"], result["minutes"]), []).append(result)
    print(f"{'setting':24} {'min':>4} {'seeds':>5} {'updates':>8} {'valid loss':>10} {'BLEU':>6} {'sd':>5} "
          f"{'chrF':>6}")
    for (setting, minutes), runs in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
        bleu = [r["test_bleu"] for r in runs]
        print(f"{setting:24} {minutes:4g} {len(runs):5} {statistics.mean(r['updates'] for r in runs):8.0f} "
              f"{statistics.mean(r['best_valid_loss'] for r in runs):10.3f} {statistics.mean(bleu):6.2f} "
              f"{statistics.stdev(bleu) if len(bleu) > 1 else 0:5.2f} "
              f"{statistics.mean(r['test_chrf'] for r in runs):6.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="+", default=["baseline"],
                        help="names from --list, or several joined by + (bf16+lr_0.5)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--list", action="store_true", help="list the settings and exit")
    parser.add_argument("--table", action="store_true", help="print the recorded results and exit")
    args = parser.parse_args()
    if args.list:
        for name, (train_options, prepare_options) in SETTINGS.items():
            print(f"{name:24} train {' '.join(train_options) or '-'}; prepare {' '.join(prepare_options) or '-'}")
        return
    if not args.table:
        for setting in args.settings:
            options_of(setting)
        for seed in args.seeds:  # seed by seed, the settings alternating: a drift of the machine hits them alike
            for setting in args.settings:
                done = load()
                if any(r["setting"] == setting and r["minutes"] == args.minutes and r["seed"] == seed for r in done):
                    continue
                result = run(setting, args.minutes, seed)
                RESULTS.write_text(json.dumps(load() + [result], indent=2) + "\n", encoding="utf-8")
                print(f"{setting} seed {seed}: BLEU {result['test_bleu']:.2f} after {result['updates']} updates")
    table(load())


if __name__ == "__main__":
    main()
