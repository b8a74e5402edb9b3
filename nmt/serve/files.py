"""LibreTranslate's file translation: `POST /translate_file` (multipart: `file`, `source`, `target`, `api_key`)
answers `{"translatedFileUrl": URL}`, and `GET URL` gives the translated file.

Formats: `.txt` (plain text, every line break and blank line kept, sentences translated one by one) and `.html` /
`.htm` (as `format=html`). Office and PDF formats are not taken: reading and writing them faithfully needs a library
per format (LibreTranslate uses its own converter service for them), and a half-kept layout is worse than a clear
refusal. Translated files are held in memory, under an unguessable name, for `KEEP_S` seconds; the oldest go first
when more than `KEEP_FILES` or `KEEP_BYTES` are held.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from nmt.serve.libretranslate import check_key, checked_pair
from nmt.serve.routing import Router, translate_routed
from nmt.serve.service import RequestError

FORMATS = {".txt": ("text", "text/plain; charset=utf-8"), ".html": ("html", "text/html; charset=utf-8"),
           ".htm": ("html", "text/html; charset=utf-8")}
KEEP_S = 3600
KEEP_FILES = 256
KEEP_BYTES = 64 * 1024 * 1024


@dataclass
class TranslatedFile:
    name: str
    content: bytes
    media_type: str
    created: float


class TranslatedFiles:
    """Translated files by token, in memory, the oldest dropped first (by age, count and total size)."""

    def __init__(self, keep_s: float = KEEP_S, keep_files: int = KEEP_FILES, keep_bytes: int = KEEP_BYTES):
        self.keep_s, self.keep_files, self.keep_bytes = keep_s, keep_files, keep_bytes
        self._files: OrderedDict[str, TranslatedFile] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, translated: TranslatedFile) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self._files[token] = translated
            self._bytes += len(translated.content)
            self._expire()
        return token

    def get(self, token: str) -> TranslatedFile | None:
        with self._lock:
            self._expire()
            return self._files.get(token)

    def _expire(self) -> None:
        now = time.monotonic()
        while self._files:
            token, oldest = next(iter(self._files.items()))
            if (now - oldest.created < self.keep_s and len(self._files) <= self.keep_files
                    and self._bytes <= self.keep_bytes):
                return
            del self._files[token]
            self._bytes -= len(oldest.content)


def translate_file_route(router: Router, store: TranslatedFiles):
    """LibreTranslate's `POST /translate_file`."""
    service = router.first

    async def translate_file(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "multipart/form-data":
            raise RequestError(400, "Invalid request: send the file as multipart/form-data (fields file, source, "
                               "target)")
        try:
            form = await request.form(max_files=1, max_fields=16)
        except Exception as error:  # noqa: BLE001 - python-multipart's complaint about the body, for the client
            raise RequestError(400, f"Invalid request: the multipart body cannot be read ({error})") from None
        parameters = {name: value for name, value in form.multi_items() if isinstance(value, str)}
        check_key(service, parameters)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestError(400, "Invalid request: missing file parameter")
        route, _ = checked_pair(router, parameters)
        name = PurePosixPath((upload.filename or "file").replace("\\", "/")).name or "file"
        suffix = PurePosixPath(name).suffix.lower()
        if suffix not in FORMATS:
            raise RequestError(400, f"Invalid request: {suffix or 'a file without an extension'} is not a format "
                               f"this server translates ({', '.join(FORMATS)})")
        text_format, media_type = FORMATS[suffix]
        data = await upload.read()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise RequestError(400, f"Invalid request: {name} is not UTF-8 text (byte {error.start})") from None
        translation = (await translate_routed(request, route, [text], text_format, True))[0][0]
        stem = PurePosixPath(name).stem
        target = parameters["target"]
        translated_name = f"{stem}_{target}{suffix}"
        token = store.add(TranslatedFile(translated_name, translation.text.encode("utf-8"), media_type,
                                         time.monotonic()))
        url = f"{str(request.base_url).rstrip('/')}/download_file/{token}/{quote(translated_name)}"
        return JSONResponse({"translatedFileUrl": url})
    return translate_file


def download_route(store: TranslatedFiles):
    """`GET /download_file/{token}/{name}`: a file `POST /translate_file` translated."""

    async def download(request: Request) -> Response:
        translated = store.get(request.path_params["token"])
        if translated is None:
            raise RequestError(404, "no such translated file (files are kept for an hour)")
        return Response(translated.content, media_type=translated.media_type,
                        headers={"content-disposition": f"attachment; filename*=UTF-8''{quote(translated.name)}"})
    return download
