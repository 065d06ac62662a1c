"""Serve an ASGI app with uvicorn on a background thread, so the node's scheduler keeps the main thread."""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import uvicorn
from fastapi import FastAPI

from cartera.core.errors import CarteraError
from cartera.core.logs import event

log = logging.getLogger("cartera.web")


class WebServer:
    """One uvicorn server on ``bind:port``; :meth:`start` returns once it listens or raises if it cannot."""

    def __init__(self, app: FastAPI, bind: str, port: int, *, start_timeout: float = 10.0) -> None:
        # uvicorn would believe X-Forwarded-For from loopback: build_app applies [web] trusted_proxies instead
        config = uvicorn.Config(
            app, host=bind, port=port, log_config=None, access_log=False, lifespan="off", proxy_headers=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="cartera-web", daemon=True)
        self._address = f"{bind}:{port}"
        self._start_timeout = start_timeout

    def _serve(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind; start() reports that
            self._server.run()

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise CarteraError(f"web: cannot listen on {self._address}: is the port in use? (sites.toml [web] port)")
        event(log, "web.listening", address=self._address)

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
