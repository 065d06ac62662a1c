"""The creditor API under attack, served by a whole node: no body is read before the token is checked, what is
buffered is bounded, and every error answers the API's JSON error schema, never the supervisors' HTML."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cartera.node import Node
from cartera.web.app import PLUGIN_PREFIX, build_app
from cartera.web.server import WebServer
from tests.conftest import REPO, run_site
from tests.plugins.crm_sync.test_http import BCO_TOKEN, GOOD_ROWS, OTRO_TOKEN, batch, http_site

pytestmark = pytest.mark.abuse

API = f"{PLUGIN_PREFIX}/crm_sync/v1"
LIMIT = 128 << 10
AUTH = {"Authorization": f"Bearer {BCO_TOKEN}"}
JSON = {"Content-Type": "application/json"}


def limited_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int | None = LIMIT) -> Path:
    """The http plugin's test site, with ``max_body_bytes = limit`` (``None``: the default)."""
    config = http_site(tmp_path, monkeypatch)
    if limit is not None:
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace('plugin = "http"\n', f'plugin = "http"\nmax_body_bytes = {limit}\n'))
    return config


@pytest.fixture
def node_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]) -> Iterator[int]:
    """A node with the http plugin serving its whole app (creditor API and supervisors' pages) on loopback."""
    node = open_node(limited_site(tmp_path, monkeypatch))
    port = node.site.section.web.port
    with WebServer(build_app(node.web_services()), "127.0.0.1", port):
        yield port


def raw_request(port: int, head: str, body: bytes = b"", *, wait: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` and ``body`` on a fresh connection, then read the answer without sending more: a server
    that waited for the rest of a body would time out here. Returns status, headers (lower-case) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        reader = _HttpReader()
        while not reader.done:
            chunk = connection.recv(65536)
            if not chunk:
                break
            reader.feed(chunk)
    return reader.result()


class _HttpReader:
    """Just enough HTTP/1.1 response parsing for :func:`raw_request` (Content-Length bodies only)."""

    def __init__(self) -> None:
        self.data = b""

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    @property
    def done(self) -> bool:
        head, sep, body = self.data.partition(b"\r\n\r\n")
        if not sep:
            return False
        return len(body) >= int(self._headers(head).get("content-length", "0"))

    @staticmethod
    def _headers(head: bytes) -> dict[str, str]:
        lines = head.decode("latin-1").split("\r\n")[1:]
        return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}

    def result(self) -> tuple[int, dict[str, str], bytes]:
        head, _, body = self.data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), self._headers(head), body


def post_head(port: int, length: int | None, token: str | None) -> str:
    lines = [f"POST {API}/batches HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return "\n".join(lines) + "\n"


def assert_api_error(status: int, headers: dict[str, str], body: bytes, expected: int) -> Any:
    """The answer is ``expected`` in the API's JSON error schema; returns its ``detail``."""
    assert status == expected, body[:300]
    assert headers["content-type"] == "application/json", body[:300]
    document = json.loads(body)
    assert list(document) == ["detail"], document
    assert b"Traceback" not in body
    return document["detail"]


def test_no_token_is_refused_before_the_body_is_read(node_port: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{node_port}{API}", timeout=10) as client:
        for token in (None, "not-a-token"):
            headers = JSON | ({"Authorization": f"Bearer {token}"} if token else {})
            answer = client.post("/batches", content=b"{nope", headers=headers)
            detail = assert_api_error(answer.status_code, dict(answer.headers), answer.content, 401)
            assert "JSON" not in detail
            assert "nope" not in detail
    # headers only, announcing 1 GiB: the 401 comes at once, nothing of the body is waited for
    detail = assert_api_error(*raw_request(node_port, post_head(node_port, 1 << 30, None)), expected=401)
    assert detail == "send the creditor's token as 'Authorization: Bearer TOKEN'"
    assert_api_error(*raw_request(node_port, post_head(node_port, 1 << 30, "wrong-token")), expected=401)
    assert_api_error(*raw_request(node_port, post_head(node_port, None, None), b"5\r\n{nope"), expected=401)


def test_an_oversized_body_is_refused_at_once_or_as_soon_as_it_passes_the_limit(node_port: int) -> None:
    detail = assert_api_error(*raw_request(node_port, post_head(node_port, LIMIT + 1, BCO_TOKEN)), expected=413)
    assert detail == f"the body exceeds {LIMIT} bytes: split the batch"
    # chunked, no length announced: refused once the limit is passed, without waiting for the last chunk
    chunk = b" " * 4096
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // len(chunk) + 1))
    assert_api_error(*raw_request(node_port, post_head(node_port, None, BCO_TOKEN), chunks), expected=413)


def test_a_chunked_batch_within_the_limit_is_stored(node_port: int) -> None:
    body = json.dumps(batch("chunked-1", GOOD_ROWS, creditor="BANCO")).encode()
    with httpx.Client(base_url=f"http://127.0.0.1:{node_port}{API}", headers=AUTH, timeout=10) as client:
        answer = client.post("/batches", content=iter([body[:100], body[100:]]), headers=JSON)
        assert answer.status_code == 202, answer.text
        assert client.get("/batches/chunked-1").json()["rows"] == len(GOOD_ROWS)


HOSTILE_BODIES = {
    "a 5,000-digit number": (b'{"batch_id": ' + b"9" * 5000 + b"}", 400),
    "50,000-deep nesting": (b"[" * 50_000 + b"]" * 50_000, 400),
    "invalid UTF-8": (b'{"batch_id": "\xff\xfe"}', 400),
    "a truncated document": (b'{"batch_id": "b", "rows": [', 422),
}


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_unreadable_json_answers_the_api_error_schema(node_port: int, name: str) -> None:
    content, expected = HOSTILE_BODIES[name]
    with httpx.Client(base_url=f"http://127.0.0.1:{node_port}{API}", headers=AUTH, timeout=30) as client:
        answer = client.post("/batches", content=content, headers=JSON | {"Accept": "text/html"})
    assert answer.status_code == expected, answer.text[:300]
    assert answer.headers["content-type"] == "application/json", answer.text[:300]
    assert "detail" in answer.json()
    if expected == 400:
        assert answer.json() == {"detail": "the body is not JSON the API can read (UTF-8, depth, number sizes)"}


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/activities?after=" + "9" * 30, 422),
        ("GET", "/activities?limit=" + "9" * 30, 422),
        ("GET", "/nothing-here", 404),
        ("DELETE", "/batches", 405),
        ("PUT", "/health", 405),
    ],
)
def test_unhandled_requests_answer_the_api_error_schema(node_port: int, method: str, path: str, expected: int) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{node_port}{API}", headers=AUTH, timeout=10) as client:
        answer = client.request(method, path, headers={"Accept": "text/html"})
    assert answer.status_code == expected, answer.text[:300]
    assert answer.headers["content-type"] == "application/json", answer.text[:300]
    assert "detail" in answer.json()


def _peak_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])


def _post_body(port: int, head: str, size: int) -> None:
    """Send a whole body of ``size`` bytes, whether or not the server reads it (it may close on us)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        try:
            connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
            block = b"[" + b"1," * (1 << 19)
            sent = 0
            while sent < size:
                connection.sendall(block[: size - sent])
                sent += len(block)
            connection.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass


def test_large_posts_do_not_grow_the_nodes_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's attack on a node run as operators run it: sixteen 16 MiB posts without a token, and four with
    a token announcing more than the default limit, leave the node's peak RSS within a few MiB."""
    config = limited_site(tmp_path, monkeypatch, limit=None)
    port = int(config.read_text(encoding="utf-8").split("port = ", 1)[1].split()[0])
    log = tmp_path / "node.log"
    command = [sys.executable, str(REPO / "run_site.py"), "--config", str(config), "--site", "t"]
    with log.open("wb") as output:
        node = subprocess.Popen(
            [*command, "run", "--duration", "120"],
            cwd=config.parent,
            env={**os.environ, "CARTERA_TEST_BANCO_TOKEN": BCO_TOKEN},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{API}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert node.poll() is None, log.read_text(encoding="utf-8")[-2000:]
            assert time.monotonic() < deadline, "the node never served its API"
            time.sleep(0.2)
        before = _peak_rss_kib(node.pid)
        size = 16 << 20
        for _ in range(16):
            _post_body(port, post_head(port, size, None), size)
        for _ in range(4):
            _post_body(port, post_head(port, size + 1, BCO_TOKEN), size + 1)
        assert httpx.get(f"http://127.0.0.1:{port}{API}/health", timeout=5).status_code == 200
        grown_mib = (_peak_rss_kib(node.pid) - before) / 1024
        assert grown_mib < 24, f"the node's peak RSS grew by {grown_mib:.0f} MiB"
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait(10)


SCOPED_HTTP_SITE = """
[sites.t.crm_sync]
plugin = "http"
[sites.t.crm_sync.creditors.BCO]
token = "${CARTERA_TEST_BANCO_TOKEN}"
portfolios = ["TARJETAS"]
[sites.t.crm_sync.creditors.OTRO]
token = "${CARTERA_TEST_OTRO_TOKEN}"
"""


def scoped_http_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Site ``t`` with the http plugin: BCO may deliver to TARJETAS only, OTRO to any of its portfolios."""
    config = http_site(tmp_path, monkeypatch)
    monkeypatch.setenv("CARTERA_TEST_OTRO_TOKEN", OTRO_TOKEN)
    text = config.read_text(encoding="utf-8")
    config.write_text(text[: text.index("[sites.t.crm_sync]")] + SCOPED_HTTP_SITE.lstrip(), encoding="utf-8")
    return config


def import_by_hand(config: Path, file: Path) -> subprocess.CompletedProcess[str]:
    return run_site(config, "import", str(file))


@pytest.mark.parametrize(
    ("creditor", "portfolio", "named"),
    [
        ("ZZZ", "TARJETAS", "line 1: creditor: 'ZZZ' is not a creditor"),  # not a creditor of the plugin
        ("BCO", "OTRAP", "line 1: portfolio: creditor 'BCO' may not deliver to portfolio 'OTRAP'"),  # not BCO's
    ],
)
def test_import_by_hand_is_refused_outside_the_plugins_creditors_and_portfolios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, creditor: str, portfolio: str, named: str
) -> None:
    config = scoped_http_site(tmp_path, monkeypatch)
    file = tmp_path / "mail.json"
    file.write_text(json.dumps(batch("mail-1", GOOD_ROWS[:2], creditor=creditor, portfolio=portfolio)))
    result = import_by_hand(config, file)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert f"{file}: {named}" in result.stderr, result.stderr
    assert "nothing was loaded" in result.stderr
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        assert db.execute("select count(*) from accounts").fetchone() == (0,)
        assert db.execute("select count(*) from import_batches").fetchone() == (0,)


def test_import_by_hand_names_the_creditor_and_portfolio_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = scoped_http_site(tmp_path, monkeypatch)
    file = tmp_path / "mail.json"
    file.write_text(json.dumps(batch("mail-1", GOOD_ROWS[:2], creditor="OTRO", portfolio="TARJETAS")))
    result = import_by_hand(config, file)
    assert result.returncode == 0, result.stderr
    assert "2 new" in result.stdout, result.stdout
    assert result.stdout.rstrip().endswith("0 quarantined; portfolio OTRO/TARJETAS"), result.stdout
    with sqlite3.connect(tmp_path / "var" / "t.db") as db:
        (details,) = db.execute("select details from audit_log where action = 'assignments.import'").fetchone()
    assert json.loads(details)["portfolios"] == ["OTRO/TARJETAS"]
