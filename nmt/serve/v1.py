"""nmt's own API, `POST /v1/translate`: typed request and response bodies (pydantic), every feature of the engine
a request may ask for within the server's caps."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nmt.engines.base import Translation
from nmt.serve.routing import Router, translate_routed
from nmt.serve.service import RequestError


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
    format: Literal["text", "html"] = "text"  # html: markup kept, its text translated (docs/serving.md)
    split: bool = True  # each text's sentences translated one by one (false: each line of it whole)
    # the language pair, where the server serves several (a multilingual model, or several models)
    source: str | None = None
    target: str | None = None


# What a field holds, for a message about a value of the wrong type (pydantic names each branch of a union).
EXPECTED = {"text": "a string or a list of strings", "prefix": "a string or a list of strings",
            "constraints": "a list of strings (for one text) or a list of lists of strings (one per text)",
            "beam": "a whole number", "nbest": "a whole number", "lenpen": "a number", "attention": "true or false",
            "format": "text or html", "split": "true or false", "source": "a language code",
            "target": "a language code"}


def validation_message(error: ValidationError) -> str:
    first = error.errors()[0]
    location = [part for part in first["loc"] if part not in ("str", "list[str]")]
    if not location:
        return first["msg"]  # the body as a whole: invalid JSON, not an object
    field = str(location[0])
    if first["type"] == "missing":
        return f"{field} is required"
    if first["type"] == "extra_forbidden":
        return (f"{field} is not a field of this API (text, beam, nbest, lenpen, prefix, constraints, attention, "
                "format, split)")
    where = ".".join(str(part) for part in location)
    if field in EXPECTED and len(location) == 1:
        return f"{field} must be {EXPECTED[field]}"
    return f"{where}: {first['msg']}"


class Alternative(BaseModel):
    """One of the n best, under `nbest`."""

    text: str
    score: float | None  # null where only the length limit ended the hypothesis (a score of -inf)
    tokens: list[str]


class SentenceAnswer(BaseModel):
    """One sentence of a text of several, with `attention`: its pieces, alignment and attention, as the page shows
    them sentence by sentence."""

    source: str  # the source sentence, as the text holds it
    text: str
    tokens: list[str]
    source_tokens: list[str]
    alignment: list[list[int]] | None = None
    attention: list | None = None


class TranslationAnswer(BaseModel):
    """The answer for one text: the best translation, its pieces and the source's; with `attention`, the hard
    alignment and the attention itself; with nbest > 1, the alternatives."""

    text: str
    score: float | None
    tokens: list[str]
    source_tokens: list[str]
    alignment: list[list[int]] | None = None  # (source piece, target piece) pairs
    attention: list | None = None  # (layers, target pieces + eos, source pieces + eos), rounded to 4 places
    nbest: list[Alternative] | None = None
    sentences: list[SentenceAnswer] | None = None  # with attention, for a text of more than one sentence
    cut: int | None = None  # sentences too long for the model, translated in parts (only where there were any)


class TranslateAnswer(BaseModel):
    translations: list[TranslationAnswer]
    source: str | None = None  # the pair translated, where the server serves several
    target: str | None = None
    pivot: str | None = None  # the language in between, where two models translated through it


def score_json(score: float) -> float | None:
    """JSON has no infinity: a hypothesis that only the length limit ended (score -inf) scores null."""
    return round(score, 6) if math.isfinite(score) else None


def translation_answer(translations: list[Translation], attention: bool, nbest: int) -> TranslationAnswer:
    best = translations[0]
    answer = TranslationAnswer(text=best.text, score=score_json(best.score), tokens=best.tokens,
                               source_tokens=best.source_tokens)
    if best.alignment is not None:
        answer.alignment = [list(pair) for pair in best.alignment]
    if attention and best.attention is not None:
        # (layers, target pieces + eos, source pieces + eos), rounded: JSON of a few kilobytes a sentence
        answer.attention = best.attention.round(4).tolist()
    if attention and best.sentences is not None and len(best.sentences) > 1:
        answer.sentences = [SentenceAnswer(source=s.source or "", text=s.text, tokens=s.tokens,
                                           source_tokens=s.source_tokens,
                                           alignment=[list(pair) for pair in s.alignment or []],
                                           attention=s.attention.round(4).tolist() if s.attention is not None
                                           else None) for s in best.sentences]
    if best.cut:
        answer.cut = best.cut
    if nbest > 1:
        answer.nbest = [Alternative(text=t.text, score=score_json(t.score), tokens=t.tokens) for t in translations]
    return answer


def answer_json(answer: BaseModel) -> JSONResponse:
    """A response model as JSON: the fields it was given, in declaration order (unset optional ones left out)."""
    return JSONResponse(answer.model_dump(exclude_unset=True))


def translate_route(router: Router):
    """`POST /v1/translate`."""
    service = router.first

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
        if body.prefix and service.engine != "torch":
            raise RequestError(400, "prefix is not available with the ctranslate2 engine")
        route, _ = router.route(body.source, body.target)
        results = await translate_routed(request, route, texts, body.format, body.split, body.beam, body.nbest,
                                         body.lenpen, body.attention, prefixes, body.constraints)
        nbest = max((len(translations) for translations in results), default=1)
        answer = TranslateAnswer(translations=[translation_answer(translations, body.attention, nbest)
                                               for translations in results])
        if body.source or body.target:
            answer.source, answer.target = route.source, route.target
        if route.pivot:
            answer.pivot = route.pivot
        return answer_json(answer)
    return v1_translate
