"""The HTTP application of `nmt serve` (Starlette): the /v1 API, the LibreTranslate-compatible API, /health,
/metrics and the page.

Every route shares one Batcher, and so one model worker. Bad input is a 4xx with a JSON `{"error": message}`;
nothing a client sends reaches the model unchecked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import math
from importlib import resources

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nmt.config import SearchConfig
from nmt.data.text import normalize
from nmt.errors import NmtError
from nmt.serve.batcher import Batcher, Job, Options, Overloaded
from nmt.serve.config import ServeConfig
from nmt.serve.guard import Guard
from nmt.serve.metrics import Metrics
from nmt.terminology import Glossary
from nmt.translate import Engine, Translation

log = logging.getLogger("nmt.serve")
STATIC = resources.files("nmt.serve") / "static"


class RequestError(Exception):
    """A request that cannot be served as sent: its status and message."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class TranslateBody(BaseModel):
    """POST /v1/translate."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | list[str]
    beam: int | None = None
    nbest: int | None = None
    lenpen: float | None = None
    prefix: str | list[str] | None = None
    constraints: list[str] | list[list[str]] | None = None
    attention: bool = False


# What a field holds, for a message about a value of the wrong type (pydantic names each branch of a union).
EXPECTED = {"text": "a string or a list of strings", "prefix": "a string or a list of strings",
            "constraints": "a list of strings (for one text) or a list of lists of strings (one per text)",
            "beam": "a whole number", "nbest": "a whole number", "lenpen": "a number", "attention": "true or false"}


def validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    location = [part for part in first["loc"] if part not in ("str", "list[str]")]
    if not location:
        return first["msg"]  # the body as a whole: invalid JSON, not an object
    field = str(location[0])
    if first["type"] == "missing":
        return f"{field} is required"
    if first["type"] == "extra_forbidden":
        return f"{field} is not a field of this API (text, beam, nbest, lenpen, prefix, constraints, attention)"
    where = ".".join(str(part) for part in location)
    if field in EXPECTED and len(location) == 1:
        return f"{field} must be {EXPECTED[field]}"
    return f"{where}: {first['msg']}"


class Service:
    """What the routes share: the translator's facts, the batcher, the limits and the metrics."""

    def __init__(self, translator: Engine, config: ServeConfig, engine: str, metrics: Metrics, translate=None):
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self.search: SearchConfig = translator.search
        self.source_language = getattr(translator, "src_lang", None)
        self.target_language = getattr(translator, "tgt_lang", None)
        self.draining = False
        vocab = translator.vocab
        self.check_constraints = getattr(translator, "constraint_pieces", None)
        self.glossary = Glossary.load(config.glossary) if config.glossary is not None else None
        self.count_target = lambda prefix: vocab.encode_target([prefix])[0] if prefix else []
        self.batcher = Batcher(translate or translator.translate, lambda text: len(vocab.encode_source([text])[0]) + 1,
                               config.max_tokens, config.batch_wait_ms / 1000, config.max_queue,
                               on_batch=metrics.observe_batch, workers=config.workers)

    # --- checks shared by both APIs ----------------------------------------------------------------------------

    def key_matches(self, given: str | None) -> bool:
        """Constant-time comparison, so that the time taken tells nothing about the key."""
        return given is not None and hmac.compare_digest(given.encode("utf-8"), self.config.api_key.encode("utf-8"))

    def check_header_key(self, request: Request) -> None:
        if self.config.api_key is None:
            return
        given = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            given = authorization[7:].strip()
        if not self.key_matches(given):
            raise RequestError(401, "a valid API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
                               if given is None else "the API key is not valid", {"www-authenticate": "Bearer"})

    def options(self, beam: int | None, nbest: int | None, lenpen: float | None, attention: bool) -> Options:
        """The server's search settings with a request's choices, checked with the CLI's rules and the caps."""
        config = self.config
        if beam is not None and not 1 <= beam <= config.max_beam:
            raise RequestError(400, f"beam must be between 1 and {config.max_beam}, got {beam}")
        if nbest is not None and not 1 <= nbest <= config.max_nbest:
            raise RequestError(400, f"nbest must be between 1 and {config.max_nbest}, got {nbest}")
        changes = {name: value for name, value in (("beam", beam), ("nbest", nbest), ("lenpen", lenpen))
                   if value is not None}
        if nbest is not None and beam is None and nbest > self.search.beam:
            changes["beam"] = min(nbest, config.max_beam)  # n alternatives need a beam of n
        search = dataclasses.replace(self.search, **changes)
        try:
            search.validate()
        except NmtError as error:
            raise RequestError(400, str(error).replace("--", "")) from None
        if attention and self.engine != "torch":
            raise RequestError(400, "attention is not available with the ctranslate2 engine; serve the checkpoint "
                               "with --engine torch")
        return Options(search, attention)

    def constraints(self, given: list[str] | list[list[str]] | None, texts: list[str], prefixes: list[str],
                    options: Options) -> list[list[str]] | None:
        """A request's constraints, one list of target phrases per text, with the server's glossary terms after
        them, checked as `nmt translate` checks them (and against --max-beam: a text needs a beam of its constraint
        pieces + 1)."""
        nested = bool(given) and isinstance(given[0], list)
        if given and (nested and not all(isinstance(entry, list) for entry in given) or not nested and len(texts) != 1):
            raise RequestError(400, "constraints must be a list of strings for one text, or a list of lists of "
                               "strings, one per text")
        per_text = given if nested else [given or []] * len(texts)
        if len(per_text) != len(texts):
            raise RequestError(400, f"constraints has {len(per_text)} entries for {len(texts)} texts")
        if self.glossary is not None:
            per_text = [list(dict.fromkeys(list(phrases) + self.glossary.constraints(normalize(text))))
                        for phrases, text in zip(per_text, texts)]
        if not any(per_text):
            return None
        if self.engine != "torch":
            raise RequestError(400, "constraints are not available with the ctranslate2 engine (CTranslate2 has no "
                               "constrained search); serve the checkpoint with --engine torch")
        if options.search.sampling:
            raise RequestError(400, "constraints need beam search: this server samples")
        for index, (phrases, prefix) in enumerate(zip(per_text, prefixes)):
            where = f"constraints[{index}]" if len(texts) > 1 else "constraints"
            try:
                pieces = self.check_constraints(phrases, options.search, len(self.count_target(prefix)))
            except NmtError as error:
                raise RequestError(400, f"{where}: {getattr(error, 'message', error)}") from None
            beam = sum(len(p) for p in pieces) + 1
            if beam > self.config.max_beam:
                raise RequestError(400, f"{where}: {beam - 1} constraint pieces"
                                   + (" (with the server's glossary terms)" if self.glossary else "")
                                   + f" need a beam of {beam}, above this server's limit of {self.config.max_beam} "
                                   "(--max-beam)")
        return [list(phrases) for phrases in per_text]

    def check_texts(self, texts: list[str], what: str = "text") -> None:
        config = self.config
        if len(texts) > config.max_sentences:
            raise RequestError(400, f"{len(texts):,} sentences in one request; the limit is {config.max_sentences}")
        for index, text in enumerate(texts):
            if len(text) > config.max_characters:
                raise RequestError(400, f"{what}[{index}] has {len(text):,} characters; the limit is "
                                   f"{config.max_characters:,}")

    async def translate(self, request: Request, texts: list[str], prefixes: list[str], options: Options,
                        constraints: list[list[str]] | None = None) -> list[list[Translation]]:
        """Queue the sentences, wait for them (or the deadline, or the client leaving) and return their n-best."""
        if self.draining:  # and the connection closes after this answer, so that no request waits on it
            raise RequestError(503, "the server is shutting down", {"retry-after": "1", "connection": "close"})
        self.batcher.request_opened()
        try:
            return await self._translate(request, texts, prefixes, options, constraints)
        finally:
            self.batcher.request_closed()

    async def _translate(self, request: Request, texts: list[str], prefixes: list[str], options: Options,
                         constraints: list[list[str]] | None) -> list[list[Translation]]:
        try:
            jobs = self.batcher.submit(texts, prefixes, options, constraints)
        except Overloaded as error:
            raise RequestError(503, f"the server is busy: {error}", {"retry-after": "1"}) from None
        self.metrics.queue_depth.set(self.batcher.waiting)
        answers = asyncio.gather(*[asyncio.wrap_future(job.future) for job in jobs])
        left = asyncio.ensure_future(_client_left(request))
        done, _ = await asyncio.wait({answers, left}, timeout=self.config.timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
        self.metrics.queue_depth.set(self.batcher.waiting)
        if answers in done:
            left.cancel()
            try:
                return answers.result()
            except NmtError as error:
                raise RequestError(400, str(error)) from None
        reason = "disconnect" if left in done else "deadline"
        left.cancel()
        self._drop(jobs, answers, reason)
        if reason == "disconnect":
            raise ClientLeft()
        raise RequestError(504, f"no answer within {self.config.timeout_s:g} s; the request's sentences were dropped")

    def _drop(self, jobs: list[Job], answers: asyncio.Future, reason: str) -> None:
        self.metrics.dropped.labels(reason).inc(self.batcher.cancel(jobs))
        self.metrics.queue_depth.set(self.batcher.waiting)
        answers.cancel()
        answers.add_done_callback(lambda future: future.cancelled() or future.exception())


class ClientLeft(Exception):
    """The client disconnected while its request waited; nobody is left to answer."""


async def _client_left(request: Request) -> None:
    """Returns once the client has disconnected (the body has been read, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def error_response(error: RequestError) -> JSONResponse:
    return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)


def score_json(score: float) -> float | None:
    """JSON has no infinity: a hypothesis that only the length limit ended (score -inf) scores null."""
    return round(score, 6) if math.isfinite(score) else None


def translation_json(translation: Translation, attention: bool) -> dict:
    record = {"text": translation.text, "score": score_json(translation.score), "tokens": translation.tokens,
              "source_tokens": translation.source_tokens}
    if translation.alignment is not None:
        record["alignment"] = [list(pair) for pair in translation.alignment]
    if attention and translation.attention is not None:
        # (layers, target pieces + eos, source pieces + eos), rounded: JSON of a few kilobytes a sentence
        record["attention"] = translation.attention.round(4).tolist()
    return record


def handle_errors(route):
    async def wrapped(request: Request) -> Response:
        try:
            return await route(request)
        except RequestError as error:
            return error_response(error)
        except ClientLeft:
            return Response(status_code=499)
        except Exception:  # noqa: BLE001 - a bug of ours is a 500 with a message, and the server goes on
            log.exception("unexpected error in %s", request.url.path)
            return JSONResponse({"error": "internal error; see the server's log"}, status_code=500)
    return wrapped


def create_app(translator: Engine, config: ServeConfig, engine: str = "torch", metrics: Metrics | None = None,
               translate=None) -> Starlette:
    """The application over `translator`; `translate`, where given, decodes in its place (worker processes)."""
    from nmt.serve import libretranslate

    config.validate()
    metrics = metrics or Metrics()
    service = Service(translator, config, engine, metrics, translate)

    @handle_errors
    async def v1_translate(request: Request) -> Response:
        service.check_header_key(request)
        try:
            body = TranslateBody.model_validate_json(await request.body())
        except ValidationError as error:
            raise RequestError(400, validation_message(error)) from None
        texts = [body.text] if isinstance(body.text, str) else body.text
        prefixes = body.prefix if isinstance(body.prefix, list) else [body.prefix or ""] * len(texts)
        if len(prefixes) != len(texts):
            raise RequestError(400, f"prefix has {len(prefixes)} entries for {len(texts)} texts")
        if body.prefix and engine != "torch":
            raise RequestError(400, "prefix is not available with the ctranslate2 engine")
        service.check_texts(texts)
        options = service.options(body.beam, body.nbest, body.lenpen, body.attention)
        constraints = service.constraints(body.constraints, texts, prefixes, options)
        results = await service.translate(request, texts, prefixes, options, constraints)
        alignment = body.attention
        answers = []
        for translations in results:
            record = translation_json(translations[0], alignment)
            if options.search.nbest > 1:
                record["nbest"] = [{"text": t.text, "score": score_json(t.score), "tokens": t.tokens}
                                   for t in translations]
            answers.append(record)
        return JSONResponse({"translations": answers})

    async def health(request: Request) -> Response:
        status = "draining" if service.draining else "ok"
        return JSONResponse({"status": status, "engine": engine, "source": service.source_language,
                             "target": service.target_language}, status_code=503 if service.draining else 200)

    @handle_errors
    async def metrics_route(request: Request) -> Response:
        service.check_header_key(request)
        metrics.queue_depth.set(service.batcher.waiting)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def page(request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"))

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/v1/translate", v1_translate, methods=["POST"]),
        Route("/translate", handle_errors(libretranslate.translate_route(service)), methods=["POST"]),
        Route("/detect", handle_errors(libretranslate.detect_route(service)), methods=["POST"]),
        Route("/languages", libretranslate.languages_route(service), methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    middleware = [Middleware(Guard, max_bytes=config.max_request_bytes, metrics=metrics,
                             log_requests=config.log_requests)]
    if config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                                     allow_headers=["authorization", "x-api-key", "content-type"]))

    async def not_found(request: Request, exc) -> Response:
        status = getattr(exc, "status_code", 404)
        message = {404: f"no such endpoint: {request.url.path}", 405: f"{request.method} is not allowed on "
                   f"{request.url.path}"}.get(status, "bad request")
        return JSONResponse({"error": message}, status_code=status)

    application = Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found, 405: not_found})
    application.state.service = service
    return application
