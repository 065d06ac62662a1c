"""Serve an ASGI app with uvicorn on a background thread, so the node's scheduler keeps the main thread.

Connections are bounded so that strangers cannot use up the node's file descriptors: one that has not sent a
complete request head within ``head_timeout`` seconds (of connecting, or of its previous response) is closed,
so is one whose request body has not arrived within ``body_timeout`` seconds of its head plus one second for each
``MIN_BODY_RATE`` bytes already received (a trickled body is cut, a large upload at any usable pace is not),
so is one that leaves its response unread (the send buffer full) for ``body_timeout`` seconds,
and past ``max_connections`` a new one is closed at once. The descriptor soft limit is raised to the hard one.
Refused connections and failed accepts are logged once per interval with a count, never once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from cartera.core.errors import CarteraError
from cartera.core.logs import event

log = logging.getLogger("cartera.web")

HEAD_TIMEOUT = 10.0  #: seconds a connection has to send a complete request head ([web] head_timeout)
BODY_TIMEOUT = 15.0  #: seconds a request body has after its head, before the rate allowance ([web] body_timeout)
MIN_BODY_RATE = 64 * 1024  #: bytes a second a body must keep up past ``body_timeout`` (16 MiB: 256 s more)
RESERVED_DESCRIPTORS = 512  #: kept for the store, the vendors' sockets and files when sizing the default cap
TALLY_SECONDS = 60.0  #: how often a repeated connection problem is logged (with its count)


def bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on as uvicorn listens (every address ``host`` resolves to, with
    ``SO_REUSEADDR``), tried and let go at once: ``None`` when it can. ``run`` names it when it cannot listen,
    ``check`` before (round 21 C-F10: check said 'listens' while another process held the port)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"{host!r} does not resolve: {exc.strerror or exc} (sites.toml [web] bind)"
    for family, kind, proto, _name, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
                probe.bind(address)
        except OSError as exc:
            return f"{exc.strerror or exc} (sites.toml [web] bind and port)"
    return None


ON_STOP = "on_stop"  #: ``app.state``'s callables :meth:`WebServer.stop` calls once it stopped serving


class WebServer:
    """One uvicorn server on ``bind:port``; :meth:`start` returns once it listens or raises if it cannot."""

    def __init__(
        self,
        app: FastAPI,
        bind: str,
        port: int,
        *,
        start_timeout: float = 10.0,
        head_timeout: float = HEAD_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
        max_connections: int | None = None,
    ) -> None:
        cap = max_connections or default_max_connections(raise_descriptor_limit())
        # uvicorn would believe X-Forwarded-For from loopback: build_app applies [web] trusted_proxies instead
        config = uvicorn.Config(
            _QuietDisconnects(app),
            host=bind,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            http=_bounded_h11(head_timeout, body_timeout, cap),
        )
        self._server = uvicorn.Server(config)
        self._app = app
        self._thread = threading.Thread(target=self._serve, name="cartera-web", daemon=True)
        self._address = f"{bind}:{port}"
        self._start_timeout = start_timeout

    def _serve(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind; start() reports that
            asyncio.run(self._serve_quietly())

    async def _serve_quietly(self) -> None:
        asyncio.get_running_loop().set_exception_handler(_FailedAccepts())
        await self._server.serve()

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self._server.started:
            self.stop()
            raise CarteraError(f"web: cannot listen on {self._address}: {self._why_not()}")
        event(log, "web.listening", address=self._address)

    def _why_not(self) -> str:
        """Why uvicorn could not listen (it only logs the error, then exits): the same bind tried again."""
        problem = bind_problem(self._server.config.host, self._server.config.port)
        return problem or f"it did not start listening within {self._start_timeout:g} s (see the log above)"

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, then call what the app asked to be called at its stop (``app.state.on_stop``: the
        summaries of what it only counted)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for stopped in getattr(self._app.state, ON_STOP, ()):
            stopped()


def raise_descriptor_limit() -> int:
    """Raise the process's descriptor soft limit to its hard limit (when finite); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard not in (resource.RLIM_INFINITY, soft):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft


def default_max_connections(descriptor_limit: int) -> int:
    """The connection cap when ``[web] max_connections`` is not set: what the descriptors allow, less a reserve."""
    return max(64, descriptor_limit - RESERVED_DESCRIPTORS)


class Tally:
    """Counts a repeated problem and logs it at most once per :data:`TALLY_SECONDS`, with the count since."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._count = 0
        self._next = 0.0

    def note(self, **fields: Any) -> None:
        self._count += 1
        now = time.monotonic()
        if now >= self._next:
            event(log, self.name, logging.WARNING, count=self._count, **fields)
            self._count, self._next = 0, now + TALLY_SECONDS


class _FailedAccepts:
    """The loop's exception handler: asyncio reports each failed ``accept()`` (out of descriptors) with a
    traceback; those are tallied instead. Anything else goes to asyncio's default handler."""

    def __init__(self) -> None:
        self._tally = Tally("web.accept_failing")

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            self._tally.note(error=str(context.get("exception", "")))
        else:
            loop.default_exception_handler(context)


class _QuietDisconnects:
    """The app, where a request whose client is gone (or was cut) before its body was read simply ends: there is
    no one to answer, and a traceback for each would flood the log."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(ClientDisconnect):
            await self._app(scope, receive, send)


def _bounded_h11(head_timeout: float, body_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with deadlines for each request head and body, and a cap on open connections."""
    refused = Tally("web.connections_refused")
    cut = Tally("web.slow_requests_cut")

    class BoundedH11(H11Protocol):
        _head_deadline: asyncio.TimerHandle | None = None
        _body_deadline: asyncio.TimerHandle | None = None
        _read_deadline: asyncio.TimerHandle | None = None
        _body_started = 0.0
        _body_received = 0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                refused.note(max_connections=max_connections)
                transport.abort()  # frees the descriptor now; nothing is kept for it
                return
            self._await_head()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._serving():
                self._cancel_head_deadline()
                self._await_body(len(data))

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self._serving():
                self._await_head()  # the next request's head (keep-alive) has the same time

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_deadline()
            self._cancel_body_deadline()
            self._cancel_read_deadline()
            super().connection_lost(exc)

        def pause_writing(self) -> None:
            super().pause_writing()
            self._cancel_read_deadline()
            self._read_deadline = self.loop.call_later(body_timeout, self._not_reading)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._cancel_read_deadline()

        def _serving(self) -> bool:
            """A request's head has arrived and its response is not complete."""
            return self.cycle is not None and not self.cycle.response_complete

        def _receiving_body(self) -> bool:
            return self._serving() and self.cycle.more_body and not self.transport.is_closing()

        def _await_head(self) -> None:
            self._cancel_head_deadline()
            self._head_deadline = self.loop.call_later(head_timeout, self._head_too_slow)

        def _head_too_slow(self) -> None:
            self._head_deadline = None
            if not self._serving():
                self.transport.close()

        def _cancel_head_deadline(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _await_body(self, received: int) -> None:
            """Count ``received`` towards the body in flight; the first bytes of a request start its deadline."""
            if not self._receiving_body():
                self._cancel_body_deadline()
            elif self._body_deadline is None:
                self._body_started, self._body_received = self.loop.time(), received
                self._body_deadline = self.loop.call_later(body_timeout, self._check_body)
            else:
                self._body_received += received

        def _check_body(self) -> None:
            self._body_deadline = None
            if not self._receiving_body():
                return
            due = self._body_started + body_timeout + self._body_received / MIN_BODY_RATE
            if self.flow.read_paused or self.loop.time() < due:  # paused: the app has not read what came yet
                self._body_deadline = self.loop.call_at(max(due, self.loop.time() + 1), self._check_body)
            else:
                cut.note(body_timeout=body_timeout, waiting_for="request body")
                self.transport.close()

        def _cancel_body_deadline(self) -> None:
            if self._body_deadline is not None:
                self._body_deadline.cancel()
                self._body_deadline = None

        def _not_reading(self) -> None:
            """The client has left the response unread for ``body_timeout``: its buffered rest is dropped."""
            self._read_deadline = None
            if self.flow.write_paused:
                cut.note(body_timeout=body_timeout, waiting_for="client to read the response")
                self.transport.abort()

        def _cancel_read_deadline(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

    return BoundedH11
