"""The webhook SMS gateway against a vendor played by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cartera.plugin import AdapterCatalog, SmsMessage, SmsState
from cartera.plugin.testing import CapturingContext, SmsConformance
from pydantic import ValidationError

from cartera_webhook_sms import plugin
from cartera_webhook_sms.client import WebhookError
from cartera_webhook_sms.config import WebhookSmsConfig
from cartera_webhook_sms.plugin import WebhookSmsGateway

TOKEN = "tok-3f9a1c7e"
PHONE = "+573001234567"
# Numbers the vendor treats specially; any other number is delivered.
ANSWERS = {
    "+573000000001": (200, {"status": "failed"}),
    "+573000000002": (200, {"status": "queued"}),
    "+573000000003": (500, {"error": "internal error"}),
    "+573000000004": (200, {"state": "delivered"}),
}
REDIRECTED = "+573000000005"
SLOW = "+573000000006"


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Vendor:
    """An SMS vendor's API: bearer auth, ``POST /v1/messages`` answers ``{"id", "status"}``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1/messages"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self._authorized():
                    self._answer(200, {"service": "sms", "ok": True})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if not self._authorized():
                    return
                body = json.loads(raw.decode("utf-8"))
                with vendor._lock:
                    vendor.received.append(Received("POST", self.path, dict(self.headers.items()), body))
                if self.path != "/v1/messages" or set(body) != {"to", "text", "reference"}:
                    self._answer(400, {"error": "bad request"})
                elif body["to"] == REDIRECTED:
                    self.send_response(307)
                    self.send_header("Location", "/v2/messages")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    if body["to"] == SLOW:
                        vendor.release.wait(5)
                    code, answer = ANSWERS.get(body["to"], (200, {"status": "delivered"}))
                    self._answer(code, {"id": uuid.uuid4().hex, **answer} if code == 200 else answer)

            def _authorized(self) -> bool:
                if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                    return True
                self._answer(401, {"error": "invalid token"})
                return False

            def _answer(self, code: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

        return Handler


@pytest.fixture
def vendor() -> Iterator[Vendor]:
    server = Vendor()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def context(tmp_path: Path) -> CapturingContext:
    return CapturingContext(tmp_path / "data")


def make_gateway(context: CapturingContext, url: str, token: str = TOKEN, timeout: float = 5.0) -> WebhookSmsGateway:
    config = WebhookSmsConfig.model_validate({"url": url, "token": token, "timeout": timeout})
    return WebhookSmsGateway(config, context)


@pytest.fixture
def gateway(context: CapturingContext, vendor: Vendor) -> Iterator[WebhookSmsGateway]:
    gateway = make_gateway(context, vendor.url)
    gateway.start()
    yield gateway
    gateway.stop()


class TestWebhookConformance(SmsConformance):
    """The generic SMS gateway contract, run against the vendor server."""

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data")

    @pytest.fixture
    def gateway(self, context: CapturingContext, vendor: Vendor) -> Iterator[WebhookSmsGateway]:
        gateway = make_gateway(context, vendor.url)
        gateway.start()
        yield gateway
        gateway.stop()

    @pytest.fixture
    def phone(self) -> str:
        return PHONE


def message(phone: str, text: str = "Su cuota vence mañana. ¿Dudas? Llámenos.", message_id: int = 7) -> SmsMessage:
    return SmsMessage(message_id=message_id, site="bogota", phone=phone, text=text)


def test_registers_under_its_name() -> None:
    catalog = AdapterCatalog.empty()
    plugin.cartera_register_sms_gateways(catalog.sms_gateways)
    assert catalog.sms_gateways.get("webhook") is WebhookSmsGateway


def test_message_is_posted_as_json_with_the_bearer_token(gateway: WebhookSmsGateway, vendor: Vendor) -> None:
    result = gateway.send(message(PHONE))
    [got] = vendor.received
    assert got.path == "/v1/messages"
    assert got.headers["Authorization"] == f"Bearer {TOKEN}"
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    assert got.body == {
        "to": PHONE,
        "text": "Su cuota vence mañana. ¿Dudas? Llámenos.",
        "reference": "bogota-7",
    }
    assert result.state is SmsState.DELIVERED
    assert result.detail == "vendor status 'delivered'"


def test_delivered_answer_is_reported_once(gateway: WebhookSmsGateway, context: CapturingContext) -> None:
    result = gateway.send(message(PHONE))
    [report] = context.deliveries
    assert (report.state, report.gateway_id, report.message_id, report.raw_status) == (
        SmsState.DELIVERED,
        result.gateway_id,
        7,
        "delivered",
    )


def test_failed_answer_is_the_verdict_and_is_reported(gateway: WebhookSmsGateway, context: CapturingContext) -> None:
    result = gateway.send(message("+573000000001"))
    assert result.state is SmsState.FAILED
    assert result.gateway_id
    [report] = context.deliveries
    assert (report.state, report.gateway_id, report.raw_status) == (
        SmsState.FAILED,
        result.gateway_id,
        "failed",
    )


def test_queued_answer_stays_submitted_without_report(gateway: WebhookSmsGateway, context: CapturingContext) -> None:
    result = gateway.send(message("+573000000002"))
    assert result.state is SmsState.SUBMITTED
    assert result.detail == "vendor status 'queued'"
    assert context.deliveries == []


@pytest.mark.parametrize(
    ("phone", "error"),
    [
        ("+573000000003", 'vendor answered HTTP 500: \'{"error": "internal error"}\''),
        ("+573000000004", 'vendor answer lacks "id" and "status"'),
    ],
)
def test_vendor_errors_raise(gateway: WebhookSmsGateway, context: CapturingContext, phone: str, error: str) -> None:
    with pytest.raises(WebhookError, match=re.escape(error)):
        gateway.send(message(phone))
    assert context.deliveries == []


def test_a_redirect_is_not_followed(gateway: WebhookSmsGateway, vendor: Vendor) -> None:
    with pytest.raises(WebhookError, match="HTTP 307"):
        gateway.send(message(REDIRECTED))
    assert [r.path for r in vendor.received] == ["/v1/messages"]


def test_a_slow_vendor_times_out(context: CapturingContext, vendor: Vendor) -> None:
    gateway = make_gateway(context, vendor.url, timeout=0.2)
    with pytest.raises(WebhookError, match="timed out"):
        gateway.send(message(SLOW))
    assert context.deliveries == []


def test_check_accepts_a_valid_token(gateway: WebhookSmsGateway, vendor: Vendor) -> None:
    result = gateway.check()
    assert result.ok
    assert result.detail == f"{vendor.url} accepted the token (HTTP 200)"


def test_wrong_token_fails_check_and_send_without_leaking_it(context: CapturingContext, vendor: Vendor) -> None:
    gateway = make_gateway(context, vendor.url, token="wrong-token")
    result = gateway.check()
    assert not result.ok
    assert result.detail == f"{vendor.url} refused the token (HTTP 401)"
    with pytest.raises(WebhookError, match="HTTP 401") as caught:
        gateway.send(message(PHONE))
    assert "wrong-token" not in str(caught.value)
    assert "wrong-token" not in repr(gateway.config)
    assert vendor.received == []


def test_check_fails_when_nothing_listens(context: CapturingContext, vendor: Vendor) -> None:
    url = vendor.url
    vendor.stop()
    result = make_gateway(context, url).check()
    assert not result.ok
    assert result.detail.startswith(f"cannot reach {url}: ")


def test_config_as_written_in_sites_toml() -> None:
    config = WebhookSmsConfig.model_validate({"url": "https://sms.example.com/v1/messages", "token": "s3cr3t"})
    assert config.timeout == 10.0
    assert config.token.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(config)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"url": "ftp://sms.example.com/", "token": "t"}, "url"),
        ({"url": "https://sms.example.com/"}, "token"),
        ({"url": "https://sms.example.com/", "token": "t", "timeout": 0}, "timeout"),
    ],
)
def test_config_rejects(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookSmsConfig.model_validate(settings)
    assert [e["loc"] for e in caught.value.errors()] == [(field,)]
