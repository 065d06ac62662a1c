"""Connections that never finish a request head are closed; past the cap new ones are refused at once."""

from __future__ import annotations

import logging
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager

import pytest
from fastapi import FastAPI

from cartera.web.server import WebServer
from tests.peers.net import free_port

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


def get(port: int, sock: socket.socket | None = None) -> bytes:
    with closing(sock or socket.create_connection(("127.0.0.1", port), timeout=5)) as conn:
        conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        return conn.recv(4096)


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
            conn.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert conn.recv(4096).startswith(b"HTTP/1.1 200")
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
        assert get(port).startswith(b"HTTP/1.1 200")
    lines = [r for r in caplog.records if r.getMessage() == "web.connections_refused"]
    assert len(lines) == 1, [r.getMessage() for r in caplog.records]
    assert lines[0].fields["count"] >= 1  # type: ignore[attr-defined]


def test_failed_accepts_are_logged_once_with_a_count_not_once_each(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with serving(head_timeout=30.0) as port:
        connect = f"socket.create_connection(('127.0.0.1', {port}))"
        flood = f"import socket, sys, time\nsys.stdin.readline()\nopen = [{connect} for _ in range(40)]\ntime.sleep(3)"
        client = subprocess.Popen([sys.executable, "-c", flood], stdin=subprocess.PIPE, text=True)
        opened = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (opened + 2, hard))
        try:
            assert client.stdin is not None
            client.stdin.write("go\n")
            client.stdin.close()
            client.wait(timeout=30)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        time.sleep(0.5)
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5).status == 200
    flood_records = [r for r in caplog.records if "out of system resource" in r.getMessage()]
    tallies = [r for r in caplog.records if r.getMessage() == "web.accept_failing"]
    assert flood_records == []
    assert len(tallies) == 1
