"""Rich progress for the library's long work: the hooks and reporters `nmt prepare` and `nmt train` hand down.

The library reports through plain callables and a reporter protocol (nmt.train.reporter); only this module knows
about Rich. Each display refreshes on its own clock and stops cleanly when the work raises.
"""

from __future__ import annotations

from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nmt.cli.app import console


class ProgressBars:
    """A Rich progress bar per download, extraction (bytes) and binarization (pairs): a hook for nmt.data."""

    def __enter__(self):
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[amount]}"),
                                 TimeRemainingColumn(), console=console, transient=False)
        self.tasks = {}
        self.progress.start()
        return self.hook

    def hook(self, name: str, done: int, total: int | None, unit: str = "B") -> None:
        if unit == "B":
            amount = f"{done / 1e6:,.1f}" + (f"/{total / 1e6:,.1f}" if total else "") + " MB"
        else:
            amount = f"{done:,}" + (f"/{total:,}" if total else "") + f" {unit}"
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, amount=amount)
        self.progress.update(self.tasks[name], completed=done, total=total, amount=amount)

    def __exit__(self, *exc):
        self.progress.stop()


class RichTrainReporter:
    """Rich progress for the trainer: refreshes on its own clock, shows what the trainer logged last."""

    progress: Progress | None = None  # from start() to stop(); messages before (resume fallbacks) print plainly

    def start(self, first_update, total_updates, info):
        console.print(f"[cyan]train[/] {info['parameters']:,} parameters on {info['device']} in {info['precision']}, "
                      f"{info['train_sentences']:,} training pairs" + "".join(
                          f", {c.rows[1] - c.rows[0]:,} of them synthetic ({escape(c.name)}, weight {c.weight:g})"
                          for c in info.get("synthetic", []))
                      + (f", resuming at update {first_update}" if first_update else ""), soft_wrap=True)
        self.progress = Progress(TextColumn("update {task.completed}"), BarColumn(), TimeElapsedColumn(),
                                 TextColumn("{task.fields[status]}"), console=console)
        self.task = self.progress.add_task("train", total=total_updates, completed=first_update, status="")
        self.progress.start()

    def advance(self, update):
        self.progress.update(self.task, completed=update)

    def record(self, record):
        if "valid_loss" in record:
            bleu = f", BLEU {record['valid_bleu']:.2f}" if "valid_bleu" in record else ""
            pairs = "".join(f"; {name} {figures['valid_loss']:.3f}"
                            + (f" / {figures['valid_bleu']:.2f}" if "valid_bleu" in figures else "")
                            for name, figures in record.get("pairs", {}).items())
            mean = " (mean of the pairs)" if pairs else ""
            self.progress.console.print(f"update {record['update']}: valid loss {record['valid_loss']:.3f}{bleu}"
                                        f"{mean}{pairs}", highlight=False, soft_wrap=True)
        else:
            self.progress.update(self.task, status=f"loss {record['loss']:.3f}  lr {record['lr']:.2e}  "
                                                   f"{record['tgt_tokens_per_s']:,.0f} tgt tok/s")

    def message(self, text):
        (self.progress.console if self.progress is not None else console).print(
            f"[yellow]{text}[/]", highlight=False, soft_wrap=True)

    def stop(self):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def counted_progress(label: str) -> Progress:
    """A transient bar that counts finished items (`nmt tune`'s trials)."""
    return Progress(TextColumn(label), BarColumn(), TextColumn("{task.completed}/{task.total}"), console=console,
                    transient=True)
