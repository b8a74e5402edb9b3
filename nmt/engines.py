"""Loading a translator of either engine from what a command was given: for `nmt translate`, `nmt serve`, and each
of `nmt serve`'s worker processes, which load their own copies from the same spec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nmt.config import SearchConfig
from nmt.errors import NmtError
from nmt.translate import Engine


@dataclass
class EngineSpec:
    engine: str  # torch or ctranslate2
    checkpoints: list[Path]  # several: an ensemble (torch); ctranslate2: one exported folder
    search: SearchConfig
    device: str | None = None
    max_tokens: int = 6000
    quantize: str = "none"
    threads: int | None = None
    precision: str = "fp32"
    target_language: str | None = None
    record_attention: bool = False
    ensemble_combine: str = "logprob"


def load_engine(spec: EngineSpec) -> Engine:
    """The Translator of either engine; both meet nmt.translate.Engine."""
    if spec.engine == "ctranslate2":
        from nmt.export.ctranslate2 import CTranslate2Translator
        if len(spec.checkpoints) != 1:
            raise NmtError("--engine ctranslate2 takes one exported model folder")
        return CTranslate2Translator(spec.checkpoints[0], spec.search, spec.device, spec.max_tokens, spec.quantize,
                                     spec.threads, spec.precision, spec.target_language)
    if spec.engine == "torch":
        from nmt.translate import Translator
        return Translator(spec.checkpoints, spec.search, spec.device, spec.max_tokens, quantize=spec.quantize,
                          record_attention=spec.record_attention, ensemble_combine=spec.ensemble_combine,
                          precision=spec.precision, target_language=spec.target_language)
    raise NmtError(f"--engine must be torch or ctranslate2, got {spec.engine!r}")
