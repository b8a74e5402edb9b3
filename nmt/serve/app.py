"""The HTTP application of `nmt serve` (Starlette): nmt's /v1 API (nmt.serve.v1), the LibreTranslate-compatible API
(nmt.serve.libretranslate), /health, /metrics and the page.

Each model has a Service of its own (nmt.serve.service: its batcher and model workers); the router
(nmt.serve.routing) chooses the model of each request by its language pair. Bad input is a 4xx with
a JSON `{"error": message}`; nothing a client sends reaches the model unchecked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from nmt.engines.base import Engine
from nmt.serve import files, libretranslate, v1
from nmt.serve.config import ServeConfig
from nmt.serve.guard import Guard
from nmt.serve.metrics import Metrics
from nmt.serve.routing import Router
from nmt.serve.service import ClientLeft, RequestError, Service, error_response

log = logging.getLogger("nmt.serve")
STATIC = resources.files("nmt.serve") / "static"


def handle_errors(route):
    """A route whose RequestError is its JSON answer, whose client left is a 499, and whose bug is a logged 500 with a
    message while the server goes on."""
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


def create_app(models: list[tuple[str, Engine, Callable | None]], config: ServeConfig, engine: str = "torch",
               metrics: Metrics | None = None) -> Starlette:
    """The application over `models`: (name, translator, a function that decodes in its place, e.g. in worker
    processes, or None) each, routed by language pair (nmt.serve.routing) in the order given."""
    config.validate()
    metrics = metrics or Metrics()
    router = Router([(name, Service(translator, config, engine, metrics, translate, name))
                     for name, translator, translate in models])
    service = router.first  # what the routes share: the limits, the key
    services = [served for _, served in router.models]
    translated_files = files.TranslatedFiles()

    async def health(request: Request) -> Response:
        status = "draining" if service.draining else "ok" if all(s.can_decode() for s in services) \
            else "restarting workers"
        answer = {"status": status, "engine": engine, "source": service.source_language,
                  "target": service.target_language}
        if len(services) > 1:
            answer["models"] = [{"model": s.name, "source": s.source_language, "target": s.target_language}
                                for s in services]
        return JSONResponse(answer, status_code=200 if status == "ok" else 503)

    @handle_errors
    async def metrics_route(request: Request) -> Response:
        service.check_header_key(request)
        metrics.queue_depth.set(sum(s.batcher.waiting for s in services))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def page(request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"))

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/v1/translate", handle_errors(v1.translate_route(router)), methods=["POST"]),
        Route("/translate", handle_errors(libretranslate.translate_route(router)), methods=["POST"]),
        Route("/detect", handle_errors(libretranslate.detect_route(router)), methods=["POST"]),
        Route("/languages", libretranslate.languages_route(router), methods=["GET"]),
        Route("/translate_file", handle_errors(files.translate_file_route(router, translated_files)),
              methods=["POST"]),
        Route("/download_file/{token}/{name}", handle_errors(files.download_route(translated_files)),
              methods=["GET"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    middleware = [Middleware(Guard, max_bytes=config.max_request_bytes, metrics=metrics,
                             log_requests=config.log_requests, draining=lambda: service.draining)]
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
    application.state.router = router
    return application
