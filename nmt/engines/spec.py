"""Which engine a command asks for, and with which search: `EngineSpec` (picklable, so that each of `nmt serve`'s
worker processes loads its own copy), `load_engine`, the search settings resolved from the options and what the
checkpoint stores (`resolve_search`), and the options an engine cannot honour (`check_engine_options`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nmt.config import SearchConfig, default_checkpoint
from nmt.engines.base import Engine
from nmt.errors import NmtError

ENGINES = ("torch", "ctranslate2")


@dataclass
class EngineSpec:
    """Everything needed to load a translator, picklable: a server's worker processes each load one from it."""

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
    """The translator of either engine; both meet nmt.engines.base.Engine."""
    if spec.engine == "ctranslate2":
        from nmt.engines.ctranslate2 import CTranslate2Translator
        if len(spec.checkpoints) != 1:
            raise NmtError("--engine ctranslate2 takes one exported model folder")
        return CTranslate2Translator(spec.checkpoints[0], spec.search, spec.device, spec.max_tokens, spec.quantize,
                                     spec.threads, spec.precision, spec.target_language)
    if spec.engine == "torch":
        from nmt.engines.pytorch import Translator
        return Translator(spec.checkpoints, spec.search, spec.device, spec.max_tokens, quantize=spec.quantize,
                          record_attention=spec.record_attention, ensemble_combine=spec.ensemble_combine,
                          precision=spec.precision, target_language=spec.target_language)
    raise NmtError(f"--engine must be {' or '.join(ENGINES)}, got {spec.engine!r}")


def stored_search(path: Path | None, engine: str) -> tuple[dict, str]:
    """The search settings a checkpoint stores (or a CTranslate2 export carries, as the |Y|^alpha style), and who
    chose them: `nmt tune`, or the generation settings of an imported model. ({}, "") where there are none; a missing
    or unreadable file is left for the real load to report. `path` None: the default checkpoint."""
    try:
        path = path if path is not None else default_checkpoint()
    except NmtError:
        return {}, ""
    if not Path(path).exists():  # left for the real load to report (and torch unloaded in a dry run)
        return {}, ""
    from nmt.checkpoint import search_defaults  # torch

    try:
        if engine == "ctranslate2":
            payload = json.loads((Path(path) / "nmt.json").read_text(encoding="utf-8"))
            settings = search_defaults(payload, style="length") if isinstance(payload, dict) else {}
        else:
            from nmt.checkpoint import peek_checkpoint

            payload = peek_checkpoint(path)
            settings = search_defaults(payload)
    except (NmtError, OSError, ValueError):
        return {}, ""
    imported = isinstance(payload.get("search"), dict) and "imported_from" in payload.get("search", {})
    return settings, "the imported model's generation settings" if imported else "the search settings `nmt tune` stored"


@dataclass
class ResolvedSearch:
    """The search a command runs, and where its beam and length penalty came from."""

    search: SearchConfig
    stored_by: str = ""  # who chose the stored settings used for the options not given ("": none were used)
    stored_style: str | None = None  # the penalty style as chosen (given or stored), before the engine's own
    style_replaced: bool = False  # a style given (or stored) that CTranslate2 cannot run, replaced by `length`
    taken: tuple[str, ...] = ()  # which of beam, lenpen, lenpen_style came from the stored settings


def resolve_search(checkpoints: list[Path], engine: str, beam: int | None = None, lenpen: float | None = None,
                   lenpen_style: str | None = None, **fields) -> ResolvedSearch:
    """Each of beam, lenpen and lenpen_style as given, else as the one checkpoint stores (`nmt tune`, an import),
    else beam 4 and a GNMT penalty of 0.6; CTranslate2 runs the |Y|^alpha style whatever was chosen. `fields`: the
    SearchConfig's other fields (max_len_a, nbest, sampling, ...). Validated."""
    stored, stored_by = {}, ""
    if not fields.get("sampling") and None in (beam, lenpen, lenpen_style) and len(checkpoints) <= 1:
        stored, stored_by = stored_search(checkpoints[0] if checkpoints else None, engine)
    taken = tuple(name for name, given in (("beam", beam), ("lenpen", lenpen), ("lenpen_style", lenpen_style))
                  if given is None and name in stored)
    beam = beam if beam is not None else stored.get("beam", 4)
    lenpen = lenpen if lenpen is not None else stored.get("lenpen", 0.6)
    lenpen_style = lenpen_style or stored.get("lenpen_style")
    search = SearchConfig(beam=beam, lenpen=lenpen, lenpen_style=lenpen_style or "gnmt", **fields)
    search.validate()
    resolved = ResolvedSearch(search, stored_by if taken else "", lenpen_style, taken=taken)
    if engine == "ctranslate2" and not search.sampling and search.lenpen_style != "length":
        resolved.style_replaced = lenpen_style is not None
        search.lenpen_style = "length"
    return resolved


def check_engine_options(engine: str, **used) -> None:
    """Refuse, before any model loads, what `engine` cannot do: `used` maps each option's flag (`prefix_file`
    for --prefix-file) to whether the command was given it."""
    if engine not in ENGINES:
        raise NmtError(f"--engine must be {' or '.join(ENGINES)}, got {engine!r}")
    if engine == "ctranslate2":
        unsupported = ["--" + name.replace("_", "-") for name, given in used.items() if given]
        if unsupported:
            constrained = {"--constraints", "--glossary"} & set(unsupported)
            raise NmtError(f"{', '.join(unsupported)}: not with --engine ctranslate2"
                           + (" (CTranslate2 has no constrained search)" if constrained else ""))
