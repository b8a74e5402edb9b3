"""LibreTranslate's API (`POST /translate`, `POST /detect`, `GET /languages`), so that its clients and integrations
work unchanged.

Parameters come as LibreTranslate itself takes them: a JSON body, a form body (urlencoded or multipart) or the query
string; `q` is a string or a list of strings; `source` may be `auto` (here: the model's source language). Errors
keep LibreTranslate's contract: 400 `{"error": message}` for a bad request and a missing key, 403 for a wrong key,
503 when the server is overloaded.
"""

from __future__ import annotations

import json
import math
from typing import Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nmt.serve.routing import ANY, Route, Router, translate_routed
from nmt.serve.service import RequestError, Service

# Names for the codes /languages lists (LibreTranslate gives each a name); any other code is listed as itself.
LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "da": "Danish", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "et": "Estonian", "fi": "Finnish", "fr": "French", "hi": "Hindi", "hu": "Hungarian", "it": "Italian",
    "ja": "Japanese", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ro": "Romanian", "ru": "Russian", "sv": "Swedish", "tr": "Turkish", "uk": "Ukrainian",
    "zh": "Chinese",
}


class TranslateRequest(BaseModel):
    """`POST /translate`'s fields (and `/detect`'s `q` and `api_key`), from a JSON body, a form or the query string.
    Others are ignored, as LibreTranslate ignores them."""

    model_config = ConfigDict(extra="ignore")
    q: str | list[str]
    source: str
    target: str
    format: Literal["text", "html"] = "text"
    alternatives: int = Field(0, ge=0)  # a form sends "2": a whole number in text is taken
    api_key: str | None = None


# What a field holds, for a message about a value of the wrong type.
EXPECTED = {"q": "a string or a list of strings", "source": "a language code", "target": "a language code",
            "format": "text or html", "alternatives": "a whole number, 0 or more", "api_key": "a string"}


def check_types(parameters: dict) -> None:
    """The fields present, checked against TranslateRequest's types (missing ones are each route's to name)."""
    present = {name: value for name, value in parameters.items() if name in TranslateRequest.model_fields}
    try:
        TranslateRequest.model_validate({"q": "", "source": "", "target": "", **present})
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0])
        given = present[field]
        shown = f", not {given!r}" if isinstance(given, (str, int, float)) and len(repr(given)) <= 40 else ""
        raise RequestError(400, f"Invalid request: {field} must be {EXPECTED[field]}{shown}") from None
    for name, value in present.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and not _is_unicode(text):
                raise RequestError(400, f"Invalid request: {name} holds a lone surrogate, which is not text")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Detection(BaseModel):
    confidence: float
    language: str


class TranslateAnswer(BaseModel):
    """`POST /translate`'s answer: a string per text (a list where `q` was a list), the alternatives where asked,
    the detected language where the source was `auto`."""

    translated_text: str | list[str] = Field(serialization_alias="translatedText")
    alternatives: list[str] | list[list[str]] | None = None
    detected_language: Detection | list[Detection] | None = Field(None, serialization_alias="detectedLanguage")
    pivot: str | None = None  # nmt's: the language in between, where two models translated through it


class Language(BaseModel):
    """An entry of `GET /languages`: a language and the ones it translates to."""

    code: str
    name: str
    targets: list[str]
    served_by: dict[str, str] = {}  # nmt's: target -> the model serving it (or "A + B (through en)")


async def read_parameters(request: Request, max_fields: int) -> dict:
    """The query string, overridden by the body's fields (JSON or form); a form of more than MAX_FIELDS fields is
    refused before it is read into a dict."""
    parameters: dict = dict(request.query_params)
    body = await request.body()
    if not body:
        return parameters
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/json":
            fields = _json_object(body)
        elif content_type == "application/x-www-form-urlencoded":
            fields = _form_fields(parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                                            max_num_fields=max_fields))
        elif content_type == "multipart/form-data":
            if "boundary=" not in request.headers.get("content-type", ""):
                raise RequestError(400, "Invalid request: a multipart body needs a boundary in its Content-Type")
            form = await request.form(max_fields=max_fields, max_files=0)
            fields = _form_fields((name, value) for name, value in form.multi_items() if isinstance(value, str))
        else:
            raise RequestError(400, f"Invalid request: send JSON or a form, not {content_type or 'an untyped body'}")
    except UnicodeDecodeError:
        raise RequestError(400, "Invalid request: the body is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise RequestError(400, f"Invalid request: the body is not valid JSON ({error.msg})") from None
    except RecursionError:
        raise RequestError(400, "Invalid request: the JSON body is nested too deeply") from None
    except (MultiPartException, HTTPException) as error:  # Starlette raises the latter inside an app
        message = getattr(error, "message", None) or getattr(error, "detail", "")
        raise RequestError(400, f"Invalid request: the multipart form cannot be read ({message})") from None
    except ValueError as error:  # more fields than max_fields; an integer of more than 4,300 digits
        raise RequestError(400, f"Invalid request: {error}") from None
    parameters.update(fields)
    return parameters


def _json_object(body: bytes) -> dict:
    """The JSON body as an object; NaN, Infinity and numbers past a float's range are refused, not read as such."""
    def refuse(constant: str):
        raise ValueError(f"{constant} is not a JSON number")

    def finite(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(f"{text[:20]} is out of a number's range")
        return number
    fields = json.loads(body.decode("utf-8"), parse_constant=refuse, parse_float=finite)
    if not isinstance(fields, dict):
        raise RequestError(400, "Invalid request: the JSON body must be an object")
    return fields


def _form_fields(pairs) -> dict:
    """Form fields; a repeated `q` becomes a list, as a JSON list would be."""
    fields: dict = {}
    for name, value in pairs:
        if name == "q" and "q" in fields:
            if not isinstance(fields["q"], list):
                fields["q"] = [fields["q"]]
            fields["q"].append(value)
        else:
            fields[name] = value
    return fields


def translate_route(router: Router):
    """LibreTranslate's `POST /translate`."""
    service = router.first

    async def translate(request: Request) -> Response:
        parameters = await read_parameters(request, max_form_fields(service))
        texts, batch = checked_texts(service, parameters)
        route, detected = checked_pair(router, parameters)
        text_format = parameters.get("format", "text")
        alternatives = int(parameters.get("alternatives", 0))
        if not 0 <= alternatives < service.config.max_nbest:
            raise RequestError(400, f"Invalid request: alternatives must be between 0 and "
                               f"{service.config.max_nbest - 1}")
        nbest = alternatives + 1
        beam = max(route.legs[-1].service.search.beam, nbest) if nbest > 1 else None
        # Texts are split into sentences, as LibreTranslate does: a paragraph is translated sentence by sentence.
        results = await translate_routed(request, route, texts, text_format, True, beam, nbest)
        translated = [translations[0].text for translations in results]
        answer = TranslateAnswer(translated_text=translated if batch else translated[0])
        if alternatives:
            others = [[t.text for t in translations[1:]] for translations in results]
            answer.alternatives = others if batch else others[0]
        if detected:
            language = Detection(confidence=100.0, language=route.source if route.source != ANY else "auto")
            answer.detected_language = [language] * len(texts) if batch else language
        if route.pivot:
            answer.pivot = route.pivot
        return JSONResponse(answer.model_dump(exclude_unset=True, by_alias=True))
    return translate


def checked_pair(router: Router, parameters: dict) -> tuple[Route, bool]:
    """`source` and `target` as LibreTranslate takes them (`source` may be `auto`): the route of the pair, and
    whether its source was chosen here."""
    source, target = parameters.get("source"), parameters.get("target")
    for name, value in (("source", source), ("target", target)):
        if not value:
            raise RequestError(400, f"Invalid request: missing {name} parameter")
        if not isinstance(value, str):
            raise RequestError(400, f"Invalid request: {name} must be a language code")
    return router.route(source, target)


def detect_route(router: Router):
    """LibreTranslate's `POST /detect`. No language is detected: where the server translates from one language,
    every text is that one (a client that asks first and translates after gets a pair that is served); where it
    translates from several, a client must name the source."""
    service = router.first

    async def detect(request: Request) -> Response:
        texts, batch = checked_texts(service, await read_parameters(request, max_form_fields(service)))
        sources = sorted(router.languages())
        if len(sources) > 1:
            raise RequestError(400, f"this server does not detect languages; it translates from {', '.join(sources)}:"
                               " name the source")
        detected = Detection(confidence=100.0, language=sources[0] if sources else "auto").model_dump()
        return JSONResponse([[detected] for _ in texts] if batch else [detected])
    return detect


def max_form_fields(service: Service) -> int:
    """A form holds at most the texts a request may send and a few other fields."""
    return service.config.max_sentences + 16


def check_key(service: Service, parameters: dict) -> None:
    """The key as LibreTranslate checks it: missing, 400; wrong, 403."""
    if service.config.api_key is not None:
        given = parameters.get("api_key")
        if not given:
            raise RequestError(400, "Invalid request: this server needs an API key (api_key)")
        if not isinstance(given, str) or not service.key_matches(given):
            raise RequestError(403, "Invalid API key")


def checked_texts(service: Service, parameters: dict) -> tuple[list[str], bool]:
    """The key, then `q` as a list of texts, and whether it came as a list."""
    check_types(parameters)
    check_key(service, parameters)
    q = parameters.get("q")
    if q is None or q == "" or q == []:
        raise RequestError(400, "Invalid request: missing q parameter")
    batch = isinstance(q, list)
    texts = q if batch else [q]
    if not all(isinstance(text, str) for text in texts):
        raise RequestError(400, "Invalid request: q must be a string or a list of strings")
    return texts, batch


def languages_route(router: Router):
    """LibreTranslate's `GET /languages`: every language of a pair served, with the targets it translates into
    (directly or through English), and nmt's `served_by`: which model (or models) serve each target."""

    async def languages(request: Request) -> Response:
        served = router.languages()
        codes = list(served) + sorted({t for targets in served.values() for t in targets} - set(served))
        listed = [Language(code=code, name=LANGUAGE_NAMES.get(code, code), targets=sorted(served.get(code, {})),
                           served_by=served.get(code, {})) for code in codes]
        return JSONResponse([language.model_dump() for language in listed])
    return languages
