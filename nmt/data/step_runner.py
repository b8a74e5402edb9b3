"""The step runner of `nmt prepare`: each step runs once for its parameters, recorded by a stamp
(nmt.data.stamps), skipped on a rerun with the same ones, and logged with its time and memory in prepare.jsonl."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from nmt.data.binarize import peak_rss_mb
from nmt.data.sources import Progress
from nmt.data.stamps import Stamps

Log = Callable[[str], None]


class StepRunner:
    """The steps of one DATA_DIR: `out_dir` gets the results, `work` (out_dir/work) what is only needed until
    they are made; `steps` says what each step did this time."""

    def __init__(self, out_dir: Path, log: Log, progress: Progress | None):
        self.out_dir = out_dir
        self.work = out_dir / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.stamps = Stamps(self.work / "stamps", out_dir)
        self.log, self.progress = log, progress
        self.steps: dict[str, dict] = {}

    def step(self, name: str, params: dict, work: Callable[[], tuple[list[Path], dict]], quiet: bool = False) -> dict:
        """`work()` -> (files made, a JSON-able result), run unless the stamp of `name` has these `params`; the
        result either way."""
        result = self.stamps.done(name, params)
        if result is not None:
            self.steps[name] = {"status": "skipped"}
            if not quiet:
                self.log(f"{name}: done already, skipped")
            return result
        (self.out_dir / "manifest.json").unlink(missing_ok=True)  # incomplete until the new one is written
        self.log(f"{name}")
        started = time.perf_counter()
        outputs, result = work()
        self.stamps.record(name, params, outputs, result)
        record = {"status": "ran", "seconds": round(time.perf_counter() - started, 3), "peak_rss_mb": peak_rss_mb(),
                  **{key: value for key, value in result.items() if key.endswith("peak_rss_mb")}}
        self.steps[name] = record
        with open(self.out_dir / "prepare.jsonl", "a", encoding="utf-8") as handle:  # a log of what ran, and cost
            handle.write(json.dumps({"step": name, **record}) + "\n")
        return result
