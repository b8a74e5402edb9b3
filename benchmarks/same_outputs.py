"""Do two versions of `nmt` give the same bytes? The check a refactoring must pass before it lands.

Both versions run as `python -m nmt` under the same interpreter, each with its own source tree first on PYTHONPATH
(an old commit as a `git worktree`, and this checkout). Everything runs on Multi30k en-de (../shared/data/multi30k
as the mirror):

- `nmt prepare` with each version: manifest (without its timestamps) and every binary file compared;
- `nmt train` of a transformer_tiny for a few hundred updates with each version: the logged losses compared, then
  the old version's checkpoints used for everything below (and a CTranslate2 export of its average);
- `nmt translate` with the default search, `--nbest 3 --json`, `--print-alignment`, sampling, constraints with a
  glossary, forced prefixes, a beam/penalty/no-repeat variant, an ensemble of two checkpoints, `--engine
  ctranslate2`; `nmt score --json`, `nmt logprob --json --word-scores`: standard output compared byte for byte;
- `nmt serve` with each version: the same requests to both APIs, the answers compared.

    git worktree add /tmp/nmt-old REV
    python benchmarks/same_outputs.py --old /tmp/nmt-old [--new .] [--work benchmarks/work/same_outputs]

Exits 1 and names the first differences where any output differs; prints a line per check and writes them all to
benchmarks/results/same_outputs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIRROR = REPO.parent / "shared" / "data" / "multi30k"
LINES = 120  # test sentences decoded by each variant


def nmt(tree: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    # `python -m` puts the working folder first on sys.path, before PYTHONPATH: run in the tree itself.
    environment = dict(os.environ, PYTHONPATH=str(tree), NMT_DRY_RUN="0")
    return subprocess.run([sys.executable, "-m", "nmt", *args], input=stdin, capture_output=True, env=environment,
                          cwd=tree, timeout=1800)


CHECKED: list[dict] = []  # every comparison, for results/same_outputs.json


def compare(name: str, old: bytes, new: bytes, failures: list[str]) -> None:
    CHECKED.append({"check": name, "same": old == new, "bytes_old": len(old), "bytes_new": len(new)})
    if old == new:
        print(f"same   {name} ({len(old):,} bytes)")
        return
    old_lines, new_lines = old.decode(errors="replace").splitlines(), new.decode(errors="replace").splitlines()
    first = next((i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b), min(len(old_lines),
                                                                                           len(new_lines)))
    shown = lambda lines: lines[first] if first < len(lines) else "<end>"  # noqa: E731
    print(f"DIFFER {name}: line {first + 1}\n  old: {shown(old_lines)[:300]}\n  new: {shown(new_lines)[:300]}")
    failures.append(name)


def prepared(tree: Path, out: Path) -> dict[str, bytes]:
    if not (out / "manifest.json").exists():
        result = nmt(tree, "prepare", "multi30k-en-de", "--out", str(out), "--mirror", str(MIRROR))
        if result.returncode:
            sys.exit(f"prepare failed with {tree}: {result.stderr.decode()[-2000:]}")
    files = {path.name: path.read_bytes() for path in sorted(out.iterdir()) if path.is_file()
             and path.suffix in (".bin", ".idx", ".model", ".en", ".de")}
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("created", None)
    manifest.get("spm", {}).pop("sha256", None)  # of spm.model, which records its own folder (compared below)
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    # The output folder's own name is recorded (the manifest, SentencePiece's training options): the same length
    # for both versions (data-old, data-new), so it is masked without shifting a byte.
    return {name: content.replace(str(out).encode(), b"X" * len(str(out))) for name, content in files.items()}


def trained(tree: Path, data: Path, save_dir: Path) -> bytes:
    if not (save_dir / "checkpoint_last.pt").exists():
        result = nmt(tree, "train", str(data), "--arch", "transformer_tiny", "--save-dir", str(save_dir),
                     "--max-updates", "300", "--save-interval-updates", "100", "--max-tokens", "2048",
                     "--seed", "3", "--threads", "2", "--no-valid-bleu")
        if result.returncode:
            sys.exit(f"train failed with {tree}: {result.stderr.decode()[-2000:]}")
    kept = ("update", "epoch", "loss", "nll_loss", "lr", "valid_loss")
    records = [json.loads(line) for line in (save_dir / "metrics.jsonl").read_text().splitlines()]
    return "\n".join(json.dumps({k: r[k] for k in kept if k in r}) for r in records).encode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, body: dict | bytes, content_type: str = "application/json") -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return f"{answer.status} ".encode() + answer.read()
    except urllib.error.HTTPError as error:
        return f"{error.code} ".encode() + error.read()


SERVER_REQUESTS = [
    ("/v1/translate", {"text": "A man rides a bike."}),
    ("/v1/translate", {"text": ["Two dogs play in the snow.", "", "A woman is reading a book."], "nbest": 3}),
    ("/v1/translate", {"text": "A little girl climbing into a wooden playhouse.", "attention": True, "beam": 2}),
    ("/v1/translate", {"text": "A dog runs.", "prefix": "Ein Hund", "lenpen": 1.0}),
    ("/v1/translate", {"text": "A man in a red shirt.", "constraints": ["Mann"]}),
    ("/v1/translate", {"text": "x", "beam": 99}),
    ("/v1/translate", {"txt": "x"}),
    ("/translate", {"q": "A man rides a bike.", "source": "en", "target": "de"}),
    ("/translate", {"q": ["A cat sleeps.", "Children play football."], "source": "auto", "target": "de",
                    "alternatives": 2}),
    ("/translate", {"q": "A cat.", "source": "fr", "target": "de"}),
    ("/detect", {"q": "A cat."}),
]


def served(tree: Path, checkpoint: Path, log: Path) -> bytes:
    port = free_port()
    environment = dict(os.environ, PYTHONPATH=str(tree))
    with open(log, "wb") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "nmt", "serve", "--checkpoint", str(checkpoint), "--port",
                                   str(port), "--workers", "1", "--threads", "2"], env=environment,
                                  stdout=log_file, stderr=subprocess.STDOUT, cwd=tree)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    urllib.request.urlopen(base + "/health", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.2)
            answers = [path.encode() + b" " + post(base + path, body) for path, body in SERVER_REQUESTS]
            with urllib.request.urlopen(base + "/languages", timeout=10) as languages:
                answers.append(b"/languages " + languages.read())
            return b"\n".join(answers) + b"\n"
        finally:
            server.terminate()
            server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", type=Path, required=True, help="The source tree of the reference version.")
    parser.add_argument("--new", type=Path, default=REPO, help="The source tree to check (default: this one).")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "same_outputs")
    args = parser.parse_args()
    if not MIRROR.is_dir():
        sys.exit(f"{MIRROR} is absent: this check decodes Multi30k")
    old, new, work = args.old.resolve(), args.new.resolve(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []

    old_data, new_data = prepared(old, work / "data-old"), prepared(new, work / "data-new")
    for name in sorted(set(old_data) | set(new_data)):
        compare(f"prepare: {name}", old_data.get(name, b"<missing>"), new_data.get(name, b"<missing>"), failures)
    data = work / "data-old"
    compare("train: metrics.jsonl losses", trained(old, data, work / "run-old"), trained(new, data, work / "run-new"),
            failures)
    run = work / "run-old"
    averaged, ct2 = run / "averaged.pt", work / "ct2"
    if not averaged.exists():
        nmt(old, "average-checkpoints", str(run), "--last", "2", "--output", str(averaged)).check_returncode()
    if not ct2.exists():
        nmt(old, "export", "ctranslate2", str(averaged), str(ct2)).check_returncode()

    source = b"\n".join((data / "test.en").read_bytes().splitlines()[:LINES]) + b"\n"
    reference = b"\n".join((data / "test.de").read_bytes().splitlines()[:LINES]) + b"\n"
    (work / "source.en").write_bytes(source)
    (work / "reference.de").write_bytes(reference)
    (work / "glossary.tsv").write_text("man\tMann\ndog\tHund\n", encoding="utf-8")
    (work / "constraints.tsv").write_text("".join("Frau\n" if i % 3 == 0 else "\n" for i in range(LINES)),
                                          encoding="utf-8")
    (work / "prefixes.de").write_text("".join("Ein\n" if i % 2 else "\n" for i in range(LINES)), encoding="utf-8")
    ck = ["--checkpoint", str(averaged)]
    variants = {
        "translate (default)": ck,
        "translate --nbest 3 --json": ck + ["--nbest", "3", "--json"],
        "translate --print-alignment": ck + ["--print-alignment"],
        "translate --sampling --topk 10 --seed 7": ck + ["--sampling", "--topk", "10", "--seed", "7", "--nbest", "2"],
        "translate --constraints --glossary": ck + ["--constraints", str(work / "constraints.tsv"), "--glossary",
                                                    str(work / "glossary.tsv")],
        "translate --prefix-file": ck + ["--prefix-file", str(work / "prefixes.de")],
        "translate --beam 6 --lenpen 1.2 --no-repeat-ngram-size 2": ck + ["--beam", "6", "--lenpen", "1.2",
                                                                          "--no-repeat-ngram-size", "2"],
        "translate ensemble of two": ["--checkpoint", str(run / "checkpoint_100.pt"), str(run / "checkpoint_300.pt")],
        "translate --engine ctranslate2": ["--engine", "ctranslate2", "--checkpoint", str(ct2)],
    }
    hypotheses = b""
    outputs = work / "outputs"
    outputs.mkdir(exist_ok=True)

    def both(name: str, *args: str, stdin: bytes | None = None) -> bytes:
        """Run `nmt ARGS` with each version; compare standard output and error, and keep them for a look."""
        results = [nmt(tree, *args, stdin=stdin) for tree in (old, new)]
        for label, result in zip(("old", "new"), results):
            (outputs / f"{name.replace(' ', '_').replace('/', '_')}.{label}").write_bytes(result.stdout + result.stderr)
        if results[0].returncode:
            print(f"note   {name}: exit {results[0].returncode} with the old version")
        compare(name, results[0].stdout + results[0].stderr, results[1].stdout + results[1].stderr, failures)
        return results[0].stdout

    for name, options in variants.items():
        output = both(name, "translate", "--threads", "2", *options, stdin=source)
        hypotheses = hypotheses or output
    (work / "hyp.de").write_bytes(hypotheses)
    both("score --json", "score", "--ref", str(work / "reference.de"), "--hyp", str(work / "hyp.de"), "--json")
    both("score --paper --paired-bs", "score", "--ref", str(work / "reference.de"), "--hyp", str(work / "hyp.de"),
         "--hyp", str(work / "reference.de"), "--paper", "--paired-bs", "--paired-bs-n", "50")
    both("logprob --json --word-scores", "logprob", *ck, "--source", str(work / "source.en"), "--target",
         str(work / "reference.de"), "--json", "--word-scores", "--threads", "2")
    both("logprob (TSV on stdin)", "logprob", *ck, "--threads", "2",
         stdin=b"A dog runs.\tEin Hund rennt.\nA man.\tEin Mann.\n")
    answers = [served(tree, averaged, work / f"serve-{label}.log") for label, tree in (("old", old), ("new", new))]
    compare("serve: answers to both APIs", *answers, failures)
    print(f"{len(failures)} differences" + (": " + ", ".join(failures) if failures else ""))

    def revision(tree: Path) -> str:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                              text=True).stdout.strip()

    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    (REPO / "benchmarks" / "results" / "same_outputs.json").write_text(json.dumps(
        {"old": revision(old), "new": revision(new), "differences": len(failures), "checks": CHECKED}, indent=1) + "\n")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
