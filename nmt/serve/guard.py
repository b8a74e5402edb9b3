"""The ASGI layer in front of every route: the request-size limit, the access log and the per-request metrics.

The size limit counts the bytes received, so a chunked body without Content-Length is held to it too. The body is
read here, whole, before any route sees it (the limit keeps that small), and replayed to the route; a body over the
limit is read on and discarded up to DISCARD_LIMIT so that the client, still sending, gets its 413, then the
connection is closed.

A body still arriving when the server starts to shut down is not waited for: its sender gets a 503 (send it again)
and the connection closes, instead of holding the shutdown for its whole grace period.

uvicorn's own access log prints query strings, where LibreTranslate clients put `q` and `api_key`; the server turns
it off and logs here instead: method, path, status and time, and the query string and body only with
--log-requests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from nmt.serve.metrics import Metrics

log = logging.getLogger("nmt.serve")

# A body over the limit is read and thrown away up to this many bytes, so that its sender gets the 413.
DISCARD_LIMIT = 256 * 1024 * 1024
DRAIN_CHECK_S = 0.25  # how often a request whose body is still arriving looks whether the server drains
ENDPOINTS = {"/v1/translate", "/translate", "/detect", "/languages", "/health", "/metrics", "/"}


def json_error(status: int, message: str, headers: dict | None = None) -> tuple[int, list, bytes]:
    body = json.dumps({"error": message}, ensure_ascii=False).encode("utf-8")
    header_list = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    header_list += [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
    return status, header_list, body


class Guard:
    def __init__(self, app, max_bytes: int, metrics: Metrics, log_requests: bool = False,
                 draining: Callable[[], bool] = lambda: False):
        self.app = app
        self.max_bytes = max_bytes
        self.metrics = metrics
        self.log_requests = log_requests
        self.draining = draining

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in ENDPOINTS else ("/static" if path.startswith("/static/") else "other")
        status_seen = {"status": 0}

        async def send_counting(message):
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
            await send(message)

        body, refusal = await self._read_body(scope, receive)
        if body is None and refusal is None:  # the client left while sending
            status_seen["status"] = 499
        elif refusal is not None:
            await _respond(send_counting, *refusal)
        else:
            replayed = False

            async def replay():
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()  # after the body: http.disconnect when the client leaves
            await self.app(scope, replay, send_counting)
        seconds = time.perf_counter() - started
        status = status_seen["status"]
        self.metrics.requests.labels(endpoint, str(status)).inc()
        if endpoint not in ("/metrics", "/static", "other"):
            self.metrics.latency.labels(endpoint).observe(seconds)
        where = path
        if self.log_requests:
            query = scope.get("query_string", b"").decode("latin-1")
            where = f"{path}?{query}" if query else path
            if body:
                where += " " + body[:500].decode("utf-8", "replace")
        client = scope.get("client") or ("-", 0)
        log.info("%s %s %s %d %.1f ms", client[0], scope["method"], where, status, seconds * 1000)

    async def _read_body(self, scope, receive) -> tuple[bytes | None, tuple | None]:
        """(body, None); (None, a 413 response) over the limit; (None, None) if the client disconnected."""
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = None
        try:
            if declared is not None and int(declared) > self.max_bytes:
                too_large = f"the request body declares {int(declared):,} bytes; the limit is {self.max_bytes:,}"
        except ValueError:
            return None, json_error(400, "Content-Length is not a number")
        chunks, size = [], 0
        while True:
            message = await self._receive_unless_draining(receive)
            if message is None:
                return None, json_error(503, "the server is shutting down; send the request again",
                                        {"retry-after": "1", "connection": "close"})
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if too_large is None and size > self.max_bytes:
                too_large = f"the request body passed the limit of {self.max_bytes:,} bytes"
            if too_large is None:
                chunks.append(chunk)
            elif size > DISCARD_LIMIT:
                break  # answered below; the connection is then closed with the rest unread
            if not message.get("more_body", False):
                break
        if too_large is not None:
            return None, json_error(413, too_large, {"connection": "close"})
        return b"".join(chunks), None


    async def _receive_unless_draining(self, receive) -> dict | None:
        """The next message of the request, or None once the server drains while it is still awaited."""
        pending = asyncio.ensure_future(receive())
        while True:
            done, _ = await asyncio.wait({pending}, timeout=DRAIN_CHECK_S)
            if done:
                return pending.result()
            if self.draining():
                pending.cancel()
                return None


async def _respond(send, status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
