"""Every route's body is bounded before anything reads it (round 16 M1): the app-wide NUL guard read the whole
body of any JSON or multipart request to a plugin's route, which had no bound, before the route's own checks (the
Kannel callbacks check their token in the endpoint), so a stranger's 400 MiB went into the node's memory."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.plugins.sms.kannel.plugin import KannelGateway
from cartera.web.app import PAGE_BODY_LIMIT, PLUGIN_PREFIX, build_app
from cartera.web.server import WebServer
from tests.plugins.crm_sync.test_http import BCO_TOKEN, GOOD_ROWS, batch
from tests.plugins.crm_sync.test_http_abuse import LIMIT, limited_site
from tests.plugins.sms.test_kannel import TOKEN, _settings

pytestmark = pytest.mark.abuse

DLR = f"{PLUGIN_PREFIX}/sms/kannel/dlr?msg=1&ref=r&type=1"
BIG = 20 << 20


@pytest.fixture
def node_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]) -> Iterator[int]:
    """A whole node's app (the creditor API with ``max_body_bytes`` 128 KiB) plus Kannel's callbacks, on loopback."""
    node = open_node(limited_site(tmp_path, monkeypatch))
    gateway = KannelGateway(_settings(callback_token=TOKEN), CapturingContext(tmp_path / "kannel"))
    services = node.web_services()
    plugins = services.routers
    services = dataclasses.replace(services, routers=lambda: [*plugins(), ("sms", gateway.http_router())])
    port = node.site.section.web.port
    with WebServer(build_app(services), "127.0.0.1", port):
        yield port


def answer_before_the_body(port: int, head: str, sent: int, *, wait: float = 10) -> int:
    """Send ``head`` and ``sent`` bytes of a body announced (or chunked) far larger, then read the answer without
    sending more: a node that waited for the whole body answers nothing here (the read times out). The status."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as connection:
        connection.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        chunked = "chunked" in head
        piece = b"x" * 65536
        for _ in range(sent // len(piece)):
            try:
                connection.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            except OSError:  # the node answered and closed: what is wanted
                break
        data = b""
        while b"\r\n" not in data:
            chunk = connection.recv(65536)  # socket.timeout (the test fails) when the node waits for the body
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "content_type", ["application/json", "multipart/form-data; boundary=b", "application/x-www-form-urlencoded"]
)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_strangers_huge_body_to_a_plugin_route_is_refused_unread(
    node_port: int, method: str, content_type: str, framing: str
) -> None:
    length = f"Content-Length: {BIG}" if framing == "length" else "Transfer-Encoding: chunked"
    head = f"{method} {DLR} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: {content_type}\n{length}\n"
    status = answer_before_the_body(node_port, head, 2 << 20)
    assert status in (403, 405, 413), status


def test_a_json_typed_get_to_a_core_page_is_not_read(node_port: int) -> None:
    head = "GET /login HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\nTransfer-Encoding: chunked\n"
    status = answer_before_the_body(node_port, head, 2 << 20)
    assert status == 200


def test_the_creditor_api_keeps_its_own_larger_limit(node_port: int) -> None:
    rows = GOOD_ROWS * (PAGE_BODY_LIMIT // len(json.dumps(GOOD_ROWS)) + 1)
    body = json.dumps(batch("big-1", rows, creditor="BANCO")).encode()
    assert PAGE_BODY_LIMIT < len(body) < LIMIT
    auth = {"Authorization": f"Bearer {BCO_TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{node_port}{PLUGIN_PREFIX}/crm_sync/v1", timeout=30) as client:
        assert client.post("/batches", content=body, headers=auth).status_code == 202
        chunked = client.post("/batches", content=iter([body.replace(b"big-1", b"big-2")]), headers=auth)
        assert chunked.status_code == 202
        stranger = client.post("/batches", content=body, headers={"Content-Type": "application/json"})
        assert stranger.status_code == 401
