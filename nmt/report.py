"""`nmt report SAVE_DIR`: one Markdown page about a training run, with PNG plots of its curves.

It reads what the run left: metrics.jsonl (training and validation records over updates), config.json (model and
training options, the data directory), the data directory's manifest.json, and a final score if one was saved
beside the checkpoints as `nmt score --json > SAVE_DIR/score.json`. Nothing is recomputed; a run still going can be
reported on, and a later report replaces the earlier one. matplotlib is an optional dependency (nmt[plot]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nmt.atomic import atomic_write, write_text
from nmt.errors import NmtError
from nmt.metrics_log import read_metrics

# (file name, title, y label, [(metrics key, legend label)])
PLOTS = [
    ("loss.png", "Loss (label-smoothed cross-entropy, nats per target token)", "loss",
     [("loss", "training"), ("valid_loss", "validation")]),
    ("lr.png", "Learning rate", "learning rate", [("lr", "learning rate")]),
    ("throughput.png", "Training throughput", "target tokens / s", [("tgt_tokens_per_s", "target tokens / s")]),
    ("bleu.png", "Validation BLEU", "BLEU", [("valid_bleu", "validation BLEU")]),
]


@dataclass
class Run:
    save_dir: Path
    records: list[dict]
    config: dict
    manifest: dict | None
    score: dict | None
    notes: list[str] = field(default_factory=list)  # what could not be read, said in the report

    def series(self, key: str, pair: str | None = None) -> tuple[list[int], list[float]]:
        """(updates, values) of `key`, or of one pair's `key` in a multilingual run's records."""
        records = self.records if pair is None else [{"update": r.get("update"), **r["pairs"].get(pair, {})}
                                                     for r in self.records if isinstance(r.get("pairs"), dict)]
        points = [(r["update"], r[key]) for r in records if r.get(key) is not None and r.get("update") is not None]
        return [u for u, _ in points], [v for _, v in points]

    @property
    def pairs(self) -> list[str]:
        """The pairs a multilingual run validated on its own, in their order."""
        names: dict[str, None] = {}
        for record in self.records:
            if isinstance(record.get("pairs"), dict):
                names.update(dict.fromkeys(record["pairs"]))
        return list(names)


def _read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NmtError(f"{path}: cannot read the {what} ({type(error).__name__}: {error})") from None
    if not isinstance(value, dict):
        raise NmtError(f"{path}: the {what} is a JSON {type(value).__name__}, not an object (damaged?)")
    return value


def load_run(save_dir: Path) -> Run:
    metrics_path = save_dir / "metrics.jsonl"
    if not save_dir.is_dir():
        raise NmtError(f"{save_dir}: no such directory")
    if not metrics_path.is_file():
        raise NmtError(f"{save_dir}: no metrics.jsonl (not a save dir of nmt train?)")
    log = read_metrics(metrics_path)
    notes = [f"metrics.jsonl line {number} is not a record (a run killed mid-write, or a damaged file); skipped"
             for number in log.skipped[:10]]
    if len(log.skipped) > 10:
        notes.append(f"... and {len(log.skipped) - 10} more lines of metrics.jsonl skipped")
    config = _read_json(save_dir / "config.json", "run's config") if (save_dir / "config.json").is_file() else {}
    manifest = None
    data_dir = config.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        notes.append("config.json's data_dir is not a path; the data manifest is left out")
        data_dir = None
    if data_dir and (Path(data_dir) / "manifest.json").is_file():
        manifest = _read_json(Path(data_dir) / "manifest.json", "data manifest")
    elif data_dir:
        notes.append(f"the data directory {data_dir} (or its manifest.json) is not there any more")
    score_path = save_dir / "score.json"
    score = _read_json(score_path, "score (nmt score --json)") if score_path.is_file() else None
    return Run(save_dir, log.records, config, manifest, score, notes)


def plot_run(run: Run, out_dir: Path) -> list[tuple[str, str]]:
    """Draw each curve the run has data for; returns [(file name, title)] of the PNGs written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, title, ylabel, curves in PLOTS:
        series = [(label, *run.series(key)) for key, label in curves]
        if name in ("loss.png", "bleu.png"):  # a multilingual run: each pair's own curve beside the mean
            key = "valid_loss" if name == "loss.png" else "valid_bleu"
            series += [(f"{pair}", *run.series(key, pair)) for pair in run.pairs]
        series = [(label, xs, ys) for label, xs, ys in series if xs]
        if not series:
            continue
        figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=100)
        for label, xs, ys in series:
            marker = "o" if len(xs) < 30 else None
            axes.plot(xs, ys, label=label, marker=marker, markersize=3, linewidth=1.4)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("update")
        axes.set_ylabel(ylabel)
        axes.grid(True, alpha=0.3)
        if len(series) > 1:
            axes.legend()
        figure.tight_layout()
        with atomic_write(out_dir / name, "wb") as handle:
            figure.savefig(handle, format="png")
        plt.close(figure)
        written.append((name, title))
    return written


def _table(rows: list[tuple[str, object]]) -> list[str]:
    return ["| field | value |", "|---|---|"] + [f"| {key} | {value} |" for key, value in rows]


def render(run: Run, plots: list[tuple[str, str]]) -> str:
    train = [r for r in run.records if "loss" in r]
    valid = [r for r in run.records if "valid_loss" in r]
    lines = [f"# Training report: {run.save_dir}", ""]
    summary = []
    if train:
        last = train[-1]
        # The last record of any kind: the final validation ends a run, after the last training window.
        wall = max(r.get("wall", 0) for r in run.records)
        summary += [("updates", max(r["update"] for r in run.records)), ("epoch", last.get("epoch", "")),
                    ("last training loss", f"{last['loss']:.4f}"),
                    ("wall time (training and validation)", f"{wall / 60:.1f} minutes ({wall:,.0f} s)")]
        speeds = sorted(r["tgt_tokens_per_s"] for r in train if r.get("tgt_tokens_per_s"))
        if speeds:
            interval = (run.config.get("train") or {}).get("log_interval") if isinstance(run.config, dict) else None
            every = f", every {interval} updates" if isinstance(interval, int) else ""
            label = ("target tokens/s (the one log window)" if len(speeds) == 1
                     else f"target tokens/s (median of {len(speeds)} log windows{every})")
            summary.append((label, f"{speeds[len(speeds) // 2]:,.0f}"))
    if valid:
        best = min(valid, key=lambda r: r["valid_loss"])
        summary.append(("best validation loss", f"{best['valid_loss']:.4f} (update {best['update']})"))
        bleu = [r for r in valid if "valid_bleu" in r]
        if bleu:
            top = max(bleu, key=lambda r: r["valid_bleu"])
            summary.append(("best validation BLEU", f"{top['valid_bleu']:.2f} (update {top['update']})"))
    lines += ["## Summary", ""] + _table(summary or [("records", "none yet")]) + [""]
    if run.pairs and valid:
        best = min(valid, key=lambda r: r["valid_loss"])
        lines += ["## Pairs", "", f"Each pair validated on its own rows; the figures above are their mean. At the "
                  f"best validation (update {best['update']}) and the last:", "",
                  "| pair | valid loss | valid BLEU | last valid loss | last valid BLEU |", "|---|---|---|---|---|"]
        for pair in run.pairs:
            at_best, last = best.get("pairs", {}).get(pair, {}), valid[-1].get("pairs", {}).get(pair, {})
            cells = [f"{figures[key]:.{digits}f}" if _is_number(figures.get(key)) else "-"
                     for figures in (at_best, last) for key, digits in (("valid_loss", 4), ("valid_bleu", 2))]
            lines.append(f"| {pair} | " + " | ".join(cells) + " |")
        lines.append("")
    if run.score:
        lines += ["## Final score", "", "From `score.json` (`nmt score --json`):", "",
                  "| metric | score | sacreBLEU signature |", "|---|---|---|"]
        systems = run.score.get("systems", {"": run.score})
        for system, metrics in (systems.items() if isinstance(systems, dict) else []):
            for metric, figures in (metrics.items() if isinstance(metrics, dict) else []):
                if isinstance(figures, dict) and _is_number(figures.get("score")):
                    label = f"{system}: {metric}" if system else metric
                    signature = str(figures.get("signature", "")).replace("|", "\\|")  # a pipe ends a table cell
                    lines.append(f"| {label} | {figures['score']:.2f} | `{signature}` |")
        lines.append("")
    else:
        lines += ["## Final score", "", "None saved: `nmt score --ref REF --hyp HYP --json > "
                  f"{run.save_dir}/score.json` adds it to the next report.", ""]
    if plots:
        lines += ["## Curves", ""]
        for name, title in plots:
            lines += [f"![{title}]({name})", ""]
    if run.config:
        lines += ["## Configuration", "", "```json", json.dumps(run.config, indent=2), "```", ""]
    if run.manifest:
        splits = run.manifest.get("splits", {})
        rows = [("languages", f"{run.manifest.get('src')} -> {run.manifest.get('tgt')}"),
                ("vocabulary", run.manifest.get("vocab_size"))]
        for split, info in (splits.items() if isinstance(splits, dict) else []):
            info = info if isinstance(info, dict) else {}
            rows.append((f"{split} pairs", f"{_count(info.get('sentences'))} ({_count(_tokens(info, 'src'))} / "
                                           f"{_count(_tokens(info, 'tgt'))} tokens)"))
        lines += ["## Data", "", f"`{run.config.get('data_dir')}/manifest.json`:", ""] + _table(rows)
        lines += ["", "<details><summary>the whole manifest</summary>", "", "```json",
                  json.dumps(run.manifest, indent=2), "```", "", "</details>", ""]
    if run.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in run.notes] + [""]
    return "\n".join(lines)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value) -> str:
    return f"{value:,}" if _is_number(value) else "?"


def _tokens(info: dict, side: str):
    entry = info.get(side)
    return entry.get("tokens") if isinstance(entry, dict) else None


def write_report(save_dir: Path, out_dir: Path | None = None) -> Path:
    """Write OUT_DIR/report.md and its PNGs (OUT_DIR: SAVE_DIR/report); returns the Markdown file's path."""
    from nmt.plot import check_plotting

    check_plotting("nmt report")
    run = load_run(save_dir)
    out_dir = out_dir or save_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_run(run, out_dir)
    path = out_dir / "report.md"
    write_text(path, render(run, plots))
    return path
