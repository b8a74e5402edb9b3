"""What the routes of both APIs share: the request error, the service (the translator's facts, the batcher, the
limits, the checks) and waiting for an answer while watching the deadline and the client."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse

from nmt.config import SearchConfig
from nmt.data.text import normalize
from nmt.documents.engine import documents_of, piece_counter, sentence_constraints, source_limit
from nmt.documents.plan import DocumentPlan
from nmt.engines.base import Engine, Translation
from nmt.errors import NmtError
from nmt.serve.batcher import Batcher, Job, Options, Overloaded
from nmt.serve.config import ServeConfig
from nmt.serve.metrics import Metrics
from nmt.serve.workers import WorkerLost
from nmt.terminology import Glossary


class RequestError(Exception):
    """A request that cannot be served as sent: its status and message."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class Service:
    """What the routes share: the translator's facts, the batcher, the limits and the metrics."""

    def __init__(self, translator: Engine, config: ServeConfig, engine: str, metrics: Metrics, translate=None,
                 name: str = "model"):
        self.config, self.translator, self.name = config, translator, name
        self.engine = engine
        self.metrics = metrics
        self.search: SearchConfig = translator.search
        self.source_language = translator.src_lang
        self.target_language = translator.tgt_lang
        self.draining = False
        self.can_decode = lambda: True  # False while worker processes are replaced (/health answers 503 then)
        vocab = translator.vocab
        self.check_constraints = translator.constraint_pieces
        self.glossary = Glossary.load(config.glossary) if config.glossary is not None else None
        self.count_target = lambda prefix: vocab.encode_target([prefix])[0] if prefix else []
        self.count_source, self.source_limit = piece_counter(translator), source_limit(translator)
        self.batcher = Batcher(translate or translator.translate, lambda text: len(vocab.encode_source([text])[0]) + 1,
                               config.max_tokens, config.batch_wait_ms / 1000, config.max_queue,
                               on_batch=lambda sentences, tokens: metrics.observe_batch(sentences, tokens, name),
                               workers=config.workers)

    # --- checks shared by both APIs ----------------------------------------------------------------------------

    def key_matches(self, given: str | bytes | None) -> bool:
        """Constant-time comparison, so that the time taken tells nothing about the key. A header's key comes as
        its raw bytes (HTTP headers are read as latin-1: a key of other letters arrives as its UTF-8 bytes)."""
        if given is None:
            return False
        return hmac.compare_digest(given if isinstance(given, bytes) else given.encode("utf-8", "surrogatepass"),
                                   self.config.api_key.encode("utf-8"))

    def check_header_key(self, request: Request) -> None:
        if self.config.api_key is None:
            return
        given = request.headers.get("x-api-key")
        authorization = request.headers.get("authorization", "")
        if authorization[:7].lower() == "bearer ":
            given = authorization[7:].strip()
        if not self.key_matches(None if given is None else given.encode("latin-1")):
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

    async def translate_texts(self, request: Request, texts: list[str], text_format: str, split: bool,
                              options: Options, prefixes: list[str] | None = None,
                              constraints: list[str] | list[list[str]] | None = None,
                              language: str | None = None) -> list[list[Translation]]:
        """Texts of any length (paragraphs, line breaks; HTML for text_format "html") through the sentence queue:
        each text split into sentences (unless `split` is off for plain text; by the rules of `language`, default
        the model's source language), the sentences queued like any others (so that one long text is spread over
        batches, between other clients' sentences), and each text put back together with its spacing and
        markup."""
        if len(texts) > self.config.max_sentences:
            raise RequestError(400, f"{len(texts):,} texts in one request; the limit is {self.config.max_sentences}")
        try:
            documents = documents_of(texts, text_format, language or self.source_language, split)
        except Exception as error:  # noqa: BLE001 - the parser's complaint about the text is the client's to read
            raise RequestError(400, f"the text cannot be read as {text_format}: {error}") from None
        for index, document in enumerate(documents):
            if not document.sentences:
                where = f"[{index}]" if len(texts) > 1 else ""
                raise RequestError(400, f"text{where} holds nothing to translate"
                                   + (" (only markup)" if texts[index].strip() else " (only spaces)"))
        self._check_lengths(documents, prefixes or [], constraints or [])
        plan = DocumentPlan.of(documents, self.count_source, self.source_limit)
        if len(plan.inputs) > self.config.max_queue:
            raise RequestError(400, f"{len(plan.inputs):,} sentences in one request; this server takes at most "
                               f"{self.config.max_queue:,} (--max-queue)")
        input_prefixes = plan.prefixes(prefixes or [])
        given = None
        if constraints:
            is_nested = isinstance(constraints[0], list)
            if not is_nested and len(texts) != 1:
                raise RequestError(400, "constraints must be a list of strings for one text, or a list of lists of "
                                   "strings, one per text")
            nested = constraints if is_nested else [constraints]
            if len(nested) != len(texts):
                raise RequestError(400, f"constraints has {len(nested)} entries for {len(texts)} texts")
            try:
                given = sentence_constraints(plan, nested, None)
            except NmtError as error:
                where = f"text[{error.index}]" if len(texts) > 1 else "text"
                raise RequestError(400, f"constraints: {where} has {getattr(error, 'message', error)}") from None
        options = dataclasses.replace(options, attention=options.attention or text_format == "html"
                                      and self.engine == "torch")
        input_constraints = self.constraints(given, plan.inputs, input_prefixes, options)
        results = await self.translate(request, plan.inputs, input_prefixes, options, input_constraints)
        return plan.assemble(results)

    def _check_lengths(self, documents, prefixes: list[str], constraints: list[str] | list[list[str]]) -> None:
        """A sentence, a prefix and a constraint phrase are each at most --max-characters long: what one sentence's
        decoding may cost is bounded by what its request may send."""
        phrases = [p for entry in constraints for p in (entry if isinstance(entry, list) else [entry])]
        for what, strings in (("sentence", [s for document in documents for s in document.sentences]),
                              ("prefix", prefixes), ("constraint", phrases)):
            longest = max(map(len, strings), default=0)
            if longest > self.config.max_characters:
                raise RequestError(400, f"a {what} of {longest:,} characters; the limit is "
                                   f"{self.config.max_characters:,} characters a {what} (--max-characters)")

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
            except WorkerLost as error:
                raise RequestError(503, f"{error}; send it again", {"retry-after": "5"}) from None
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
    """The JSON answer `{"error": message}` to a request that cannot be served, with its status and headers."""
    return JSONResponse({"error": error.message}, status_code=error.status, headers=error.headers)
