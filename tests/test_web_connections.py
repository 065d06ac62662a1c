"""Connections that never finish a request head are closed; past the cap new ones are refused at once."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import cast

import pytest
from fastapi import FastAPI, Request, Response

from cartera.web.app import build_app
from cartera.web.server import WebServer
from cartera.web.sse import StreamSlots, event_stream, stream_cap
from cartera.workspace.hub import WorkspaceHub
from cartera.workspace.screen import ScreenBuilder
from tests.peers.net import free_port
from tests.test_web_pages import Site
from tests.test_web_pages import site as pages_site

site = pages_site  # the pages' fixture: site t, seeded

pytestmark = pytest.mark.abuse


@contextmanager
def serving(**limits: float) -> Iterator[int]:
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"ok": "yes"}

    port = free_port()
    with WebServer(app, "127.0.0.1", port, **limits):  # type: ignore[arg-type]
        yield port


def closed_after(sock: socket.socket, trickle: bytes = b"", limit: float = 10) -> float:
    """Seconds until the server closes ``sock`` (sending ``trickle`` a byte at a time meanwhile)."""
    start = time.monotonic()
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() - start < limit:
        if sent < len(trickle):
            try:
                sock.sendall(trickle[sent : sent + 1])
            except OSError:
                return time.monotonic() - start
            sent += 1
        try:
            if sock.recv(1024) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return limit


def get(conn: socket.socket) -> bytes:
    """One ``GET /ping`` on ``conn``: its whole response (head and body may arrive apart)."""
    conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b'{"ok":"yes"}'):
        chunk = conn.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def test_a_silent_connection_and_a_trickled_head_are_closed_within_the_head_timeout() -> None:
    with serving(head_timeout=1.0) as port:
        silent = socket.create_connection(("127.0.0.1", port))
        trickling = socket.create_connection(("127.0.0.1", port))
        with closing(silent), closing(trickling):
            assert closed_after(silent) < 2
            assert closed_after(trickling, b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200) < 2


def test_keep_alive_still_serves_several_requests_on_one_connection() -> None:
    with serving(head_timeout=1.0) as port, socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for _ in range(3):
            assert get(conn).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)  # idle between requests, within the head timeout


def test_past_the_cap_new_connections_are_refused_at_once_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with serving(head_timeout=30.0, max_connections=5) as port:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        time.sleep(0.2)
        refused = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        assert max(closed_after(sock, limit=5) for sock in refused) < 2
        for sock in held + refused:
            sock.close()
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            assert get(conn).startswith(b"HTTP/1.1 200")
    lines = [r for r in caplog.records if r.getMessage() == "web.connections_refused"]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert lines[0].fields["count"] >= 1  # type: ignore[attr-defined]


SERVER_OUT_OF_DESCRIPTORS = """
import logging, os, resource, sys
from fastapi import FastAPI, Request, Response
from cartera.web.server import WebServer
logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(name)s %(message)s")
with WebServer(FastAPI(), "127.0.0.1", int(sys.argv[1])):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 1, hard))
    print("ready", flush=True)
    sys.stdin.readline()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
"""


def test_failed_accepts_are_logged_once_with_a_count_not_once_each() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_OUT_OF_DESCRIPTORS, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    assert server.stdout.readline() == "ready\n"
    flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    time.sleep(2.5)  # asyncio retries a failed accept every second
    for sock in flood:
        sock.close()
    _, log_text = server.communicate("done\n", timeout=30)
    assert "out of system resource" not in log_text
    assert log_text.count("web.accept_failing") == 1, log_text


def echo_length_app() -> FastAPI:
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"length": len(await request.body())}

    return app


def test_a_trickled_request_body_is_closed_within_the_body_timeout_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
    with WebServer(echo_length_app(), "127.0.0.1", port, head_timeout=1.0, body_timeout=1.5):
        trickling = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        for conn in trickling:
            conn.sendall(head)
        assert closed_after(trickling[0], b"x" * 100, limit=8) < 4
        time.sleep(0.5)
        for conn in trickling:
            conn.close()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("web.slow_requests_cut") == 1, messages
    assert not any(r.exc_info for r in caplog.records), messages  # the app's read of the cut body: no traceback


def test_a_large_body_sent_at_a_normal_pace_is_still_read_whole() -> None:
    port = free_port()
    body = b"x" * 16 * 1024 * 1024
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with (
        WebServer(echo_length_app(), "127.0.0.1", port, head_timeout=1.0, body_timeout=1.0),
        socket.create_connection(("127.0.0.1", port), timeout=30) as conn,
    ):
        for _ in range(2):  # kept alive for a second upload
            conn.sendall(head + body)
            answer = b""
            while not answer.endswith(b"}"):
                chunk = conn.recv(4096)
                assert chunk
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
            assert answer.endswith(b'{"length":%d}' % len(body))


def test_a_response_the_client_stops_reading_is_cut_after_the_body_timeout() -> None:
    app = FastAPI()
    size = 64 * 1024 * 1024

    @app.get("/big")
    def big() -> Response:
        return Response(b"x" * size, media_type="application/octet-stream")

    port = free_port()
    with (
        WebServer(app, "127.0.0.1", port, head_timeout=1.0, body_timeout=0.5),
        socket.create_connection(("127.0.0.1", port), timeout=5) as conn,
    ):
        conn.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(2)  # reads nothing meanwhile: four body timeouts
        received = 0
        with contextlib.suppress(OSError):
            while chunk := conn.recv(1 << 20):
                received += len(chunk)
        assert received < size


def test_a_trickled_sign_in_is_cut_quietly_on_the_real_app(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    port = free_port()
    head = b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    with (
        WebServer(build_app(site.node.web_services()), "127.0.0.1", port, body_timeout=1.0),
        socket.create_connection(("127.0.0.1", port)) as conn,
    ):
        conn.sendall(head + b"Content-Length: 1000\r\n\r\nuser=a")
        assert closed_after(conn, limit=6) < 4
        time.sleep(0.5)
    assert not [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert site.audits("web.failed") == []


@pytest.mark.abuse
def test_event_streams_are_bounded_per_holder_and_in_all() -> None:
    slots = StreamSlots(total=3, per_user=2)
    first, second, third = slots.take("user:ana"), slots.take("user:ana"), slots.take("user:ana")
    assert first is not None
    assert second is not None
    assert third is None
    assert slots.take("user:sara") is not None
    assert slots.take("user:beto") is None, "past the total"
    first.give_back()
    first.give_back()  # once only
    assert slots.take("user:beto") is not None
    assert slots.take("user:carl") is None
    assert stream_cap(100) == 50, "half the server's connections"


def collect_holding(hub: WorkspaceHub, slots: StreamSlots) -> None:
    """A collection run by a thread that holds the hub's, the roster's and the slots' locks, as a publish, a
    roster change or a slot taken does when an allocation there sets the collector off."""
    with hub._lock, hub.roster._lock, slots._lock:
        gc.collect()


@pytest.mark.abuse
def test_a_stream_collected_while_its_thread_holds_the_workspace_locks_is_ended_by_the_loop() -> None:
    """A stream body's finalizer closed its subscription, counted its page gone and gave its slot back in whatever
    thread the collector ran: in one holding the hub's lock (a publish), those locks, not re-entrant, were waited
    for by their own holder for good, and the server's loop with them at its next subscribe (round 23 B-F4). The
    finalizers take no lock: the server's loop ends the stream, once, holding none."""
    hub = WorkspaceHub(cast(ScreenBuilder, None), now=lambda: datetime.now(UTC), dialer=lambda: None, dispose=None)
    hub.open_page("ana", "agent-01", None)
    slots = StreamSlots(total=1)
    ended_on: list[threading.Thread] = []

    def page_gone() -> None:
        ended_on.append(threading.current_thread())
        hub.roster.page_gone("ana")

    async def scenario() -> None:
        streamed = slots.take("user:ana")
        assert streamed is not None
        subscription = hub.subscribe("ana")
        hub.roster.page_seen("ana")
        cycle: list[object] = [
            event_stream(cast(Request, None), subscription, on_close=page_gone, slot=streamed),
        ]
        cycle.append(cycle)  # only a collection frees them, in whatever thread it runs
        del cycle
        collector = threading.Thread(target=collect_holding, args=(hub, slots), daemon=True)
        collector.start()
        collector.join(10)  # a deadlock fails the test instead of hanging it
        assert not collector.is_alive(), "the finalizers wait for the locks their own thread holds"
        for _ in range(5):  # the loop runs what the finalizers left it
            await asyncio.sleep(0)
        assert (streamed.given, subscription in hub._subscribers) == (True, False)
        assert ended_on == [threading.current_thread()]
        assert hub.roster.get("ana").pages == 0

    collecting = gc.isenabled()
    gc.disable()  # no collection on this thread before the collector's
    try:
        asyncio.run(scenario())
    finally:
        if collecting:
            gc.enable()
    assert slots.take("user:ana") is not None, "the slot is given back"
