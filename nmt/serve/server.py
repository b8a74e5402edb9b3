"""Running the application under uvicorn, with the signals handled here.

SIGTERM (and Ctrl-C) drain: the service refuses new requests (503), uvicorn stops accepting connections and waits for
the requests in flight, the model worker finishes what was queued, and the process exits 0. uvicorn's own handling
re-raises a caught signal after its shutdown, which would end the process by the signal instead.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from nmt.serve.app import create_app
from nmt.serve.config import ServeConfig
from nmt.engines.base import Engine
from nmt.engines.spec import EngineSpec, load_engine
from nmt.errors import NmtError

# After SIGTERM, how long requests still arriving on open connections are answered 503 (and their connections closed)
# before uvicorn stops: long enough for clients to hear it, short for a rolling restart.
DRAIN_NOTICE_S = 0.5


def check_port_free(host: str, port: int) -> None:
    """Raise NmtError, in one line, where HOST:PORT cannot be listened on (in use, or an address not of this
    machine)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
            probe.bind((host, port))
    except OSError as error:
        raise NmtError(f"cannot listen on {host}:{port}: {error.strerror or error} (choose another --port, or stop "
                       "what uses it)") from None


def serve(specs: list[EngineSpec], config: ServeConfig) -> None:
    """Load the engines `specs` name (each, with worker processes, one copy in each), then serve until SIGTERM.
    Several: each serves its language pairs (nmt.serve.routing), the first named where two serve one."""
    import torch
    import uvicorn

    check_port_free(config.host, config.port)  # before the models load: minutes, on a large one
    engine = specs[0].engine
    models, workers = [], []
    for spec in specs:
        translator: Engine = load_engine(spec)
        processes = None
        if config.worker_processes and config.workers > 1:
            from nmt.serve.workers import ProcessWorkers
            processes = ProcessWorkers(spec, config.workers, torch.get_num_threads())
            workers.append(processes)
        models.append((model_name(spec, specs), translator, processes.translate if processes is not None else None))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log = logging.getLogger("nmt.serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    application = create_app(models, config, engine)
    service, router = application.state.service, application.state.router
    services = [served for _, served in router.models]
    for processes, served in zip(workers, services):
        processes.on_restart = service.metrics.worker_restarts.inc
        served.can_decode = lambda processes=processes: not processes.replacing
    if len(specs) > 1:
        for source, targets in router.languages().items():
            for target, served_by in targets.items():
                log.info("%s->%s: %s", source, target, served_by)
    if config.host not in ("127.0.0.1", "localhost", "::1") and config.api_key is None:
        log.warning("listening on %s without an API key: anyone who can reach this port can use the model; set "
                    "--api-key or NMT_API_KEY", config.host)

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            def drain(signum, frame):
                if service.draining:
                    if signum == signal.SIGINT:
                        self.force_exit = True  # a second Ctrl-C: stop now
                    return
                for served in services:
                    served.draining = True
                threading.Thread(target=stop_when_idle, name="nmt-serve-drain", daemon=True).start()

            def stop_when_idle():
                """Refuse new requests (503, Connection: close) while those in flight finish, then let uvicorn
                close the listener and the idle connections. Stopping uvicorn at once would close keep-alive
                connections on which a client may just have sent a request, which would go unanswered."""
                deadline = time.monotonic() + config.graceful_shutdown_s
                time.sleep(DRAIN_NOTICE_S)
                while any(served.batcher.busy() for served in services) and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.should_exit = True
            previous = {sig: signal.signal(sig, drain) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, old in previous.items():
                    signal.signal(sig, old)

    server = Server(uvicorn.Config(application, host=config.host, port=config.port, access_log=False,
                                   log_level="info", lifespan="off",
                                   timeout_graceful_shutdown=int(config.graceful_shutdown_s)))
    log.info("serving %s on http://%s:%d (the page at /, the API at /v1/translate and /translate)", engine,
             config.host, config.port)
    try:
        server.run()
    finally:
        for served in services:
            served.draining = True
            served.batcher.close(timeout=config.graceful_shutdown_s)
        for processes in workers:
            processes.close()
    log.info("stopped")


def model_name(spec: EngineSpec, specs: list[EngineSpec]) -> str:
    """How logs, /languages and /metrics name a model: its checkpoint's file name, or its path where two share it."""
    names = [Path(s.checkpoints[0]).name for s in specs]
    name = Path(spec.checkpoints[0]).name
    return name if names.count(name) == 1 else str(spec.checkpoints[0])
