"""`nmt serve`: a model over HTTP (the /v1 API, LibreTranslate's API, a page, health and metrics)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from nmt.cli.app import command, dry_run, print_search_notes, set_threads
from nmt.cli.options import (Beam, DecodingPrecision, Device, Engine, Glossary, Lenpen, LenpenStyle,
                             MaxLenA, MaxLenB, MinLen, NoRepeatNgramSize, Quantize, SourceTokensPerBatch,
                             ServedCheckpoints, TargetLanguage, Threads, config_number)
from nmt.config import default_checkpoint
from nmt.errors import NmtError
from nmt.serve.config import ServeConfig


@command("serve")
def serve_command(
    checkpoint: ServedCheckpoints = None,
    model_dir: Annotated[Optional[Path], typer.Option(
        help="Serve every model in this folder (checkpoints, or with --engine ctranslate2 export folders), in name "
             "order, after those of --checkpoint.")] = None,
    engine: Engine = "torch",
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface (set a key).")]
    = "127.0.0.1",
    port: Annotated[int, config_number(ServeConfig, "port", "Port to listen on.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        envvar="NMT_API_KEY", show_envvar=True,
        help="Require this key on /v1, /metrics and /translate (`Authorization: Bearer KEY`, `X-API-Key`, or "
             "LibreTranslate's api_key). Prefer the environment variable: a command line is visible to other "
             "users.")] = None,
    beam: Beam = None, lenpen: Lenpen = None, lenpen_style: LenpenStyle = None,
    max_len_a: MaxLenA = 1.0, max_len_b: MaxLenB = 50, min_len: MinLen = 1,
    no_repeat_ngram_size: NoRepeatNgramSize = 0,
    max_beam: Annotated[int, config_number(ServeConfig, "max_beam", "The largest beam a request may ask for.")] = 8,
    max_nbest: Annotated[int, config_number(ServeConfig, "max_nbest",
                                            "The most alternatives (n-best) a request may ask for.")] = 8,
    max_sentences: Annotated[int, config_number(
        ServeConfig, "max_sentences", "Texts per request (LibreTranslate: q entries); the sentences they hold count "
                                      "against --max-queue.")] = 64,
    max_characters: Annotated[int, config_number(
        ServeConfig, "max_characters", "Characters per sentence of a text, and per prefix or constraint (400 "
                                       "beyond).")] = 5000,
    max_request_bytes: Annotated[int, config_number(
        ServeConfig, "max_request_bytes", "Request body size, as received (413 beyond).")] = 1_000_000,
    batch_wait_ms: Annotated[float, config_number(
        ServeConfig, "batch_wait_ms", "How long the model worker waits for more sentences to join a batch.")] = 5.0,
    max_tokens: SourceTokensPerBatch = 6000,
    max_queue: Annotated[int, config_number(
        ServeConfig, "max_queue", "Sentences waiting at most; beyond it a request gets 503 (a request of more "
                                  "sentences than this, 400).")] = 1024,
    workers: Annotated[Optional[int], config_number(
        ServeConfig, "workers", "Batches decoded side by side; --threads is split among them. Default: 2 on a "
                                "CPU with 2 or more threads, else 1.")] = None,
    worker_processes: Annotated[bool, typer.Option(
        "--worker-processes/--worker-threads",
        help="Several workers as processes, each with its own copy of the model (faster: no shared interpreter "
             "lock), or as threads over one copy (less memory).")] = True,
    timeout: Annotated[float, config_number(ServeConfig, "timeout_s",
                                            "Seconds a request may wait for its answer (504 after).")] = 30.0,
    cors_origin: Annotated[Optional[list[str]], typer.Option(
        help="Origins whose pages may call the API (repeat for several; none: no cross-origin calls).")] = None,
    log_requests: Annotated[bool, typer.Option(
        "--log-requests", help="Log query strings and request text (off: method, path, status and time only).")]
    = False,
    quantize: Quantize = "none", precision: DecodingPrecision = "fp32", device: Device = None,
    threads: Threads = None, glossary: Glossary = None, target_language: TargetLanguage = None,
) -> None:
    """Serve models over HTTP: a page to try them at /, the JSON API at /v1/translate, LibreTranslate's API at
    /translate and /languages, /health and Prometheus /metrics. Concurrent requests are decoded in shared batches;
    several models each serve their language pairs, and a pair none serves but English links is pivoted. SIGTERM
    finishes the requests in flight, then exits 0. See docs/serving.md."""
    if api_key is None and "NMT_API_KEY" in os.environ:  # click reads an empty variable as no key at all
        raise NmtError("NMT_API_KEY is set but empty: set a key, or unset the variable to serve without one")
    try:
        from nmt.serve.config import choose_workers
        from nmt.serve.server import serve
    except ImportError as error:
        raise NmtError(f"nmt serve needs the serving extra: pip install 'nmt[serve]' ({error.name} is missing)") \
            from None
    from nmt.engines.spec import EngineSpec, resolve_search

    set_threads(threads)
    workers = choose_workers(workers, device)
    checkpoints = list(checkpoint or []) + (models_in(model_dir, engine) if model_dir is not None else [])
    if target_language is not None and len(checkpoints) > 1:
        raise NmtError("--target-language gives one model one output language: serve several models without it "
                       "(each multilingual one serves all its pairs)")
    searches = [resolve_search([path], engine, beam, lenpen, lenpen_style, max_len_a=max_len_a, max_len_b=max_len_b,
                               min_len=min_len, no_repeat_ngram_size=no_repeat_ngram_size)
                for path in checkpoints or [None]]
    resolved = searches[0]
    search = resolved.search
    config = ServeConfig(host=host, port=port, api_key=api_key, max_beam=max_beam, max_nbest=max_nbest,
                         max_sentences=max_sentences, max_characters=max_characters,
                         max_request_bytes=max_request_bytes, batch_wait_ms=batch_wait_ms, max_tokens=max_tokens,
                         max_queue=max_queue, workers=workers, worker_processes=worker_processes,
                         timeout_s=timeout, cors_origins=cors_origin or [],
                         log_requests=log_requests, glossary=glossary)
    config.validate()
    if glossary is not None:
        if engine != "torch":
            raise NmtError("--glossary: not with --engine ctranslate2 (CTranslate2 has no constrained search)")
        from nmt.terminology import Glossary as GlossaryFile
        GlossaryFile.load(glossary)  # a bad file ends here, in one line, before the model loads
    for each in searches:
        if each.search.beam > max_beam:
            raise NmtError(f"the default beam {each.search.beam} is above --max-beam {max_beam}")
    if dry_run("serve", {"checkpoints": [str(c) for c in checkpoints] or "the default", "search": search,
                         "host": host, "port": port}):
        return
    for each in searches:
        print_search_notes(each, "serving", " unless a request says otherwise")
    serve([EngineSpec(engine, [path], each.search, device, max_tokens, quantize, threads, precision, target_language)
           for path, each in zip(checkpoints or [default_checkpoint()], searches)], config)


def models_in(folder: Path, engine: str) -> list[Path]:
    """The models of --model-dir, in name order: its checkpoints (torch) or export folders (ctranslate2); anything
    else in it is named, in one line, before a model loads."""
    if not folder.is_dir():
        raise NmtError(f"--model-dir {folder}: " + ("not a folder" if folder.exists() else "no such folder"))
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if engine == "ctranslate2":
        models = [p for p in entries if p.is_dir() and (p / "model.bin").is_file()]
    else:
        models = [p for p in entries if p.is_file() and p.suffix == ".pt"]
    others = [p.name for p in entries if p not in models]
    if others:
        what = "export folders (a model.bin in each)" if engine == "ctranslate2" else "checkpoints (.pt files)"
        raise NmtError(f"--model-dir {folder}: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''} "
                       f"{'is' if len(others) == 1 else 'are'} not {what}; keep only the models to serve there")
    if not models:
        raise NmtError(f"--model-dir {folder}: holds no model to serve")
    return models
