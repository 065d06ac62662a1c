"""The Kannel SMS gateway against a real Kannel 1.4.5 (bearerbox, smsbox and Kannel's fakesmsc).

Delivery reports and MO come back over real sockets: to a uvicorn server running the adapter's router (the
conformance suite), or to the node's own HTTP server (``run``), as in production.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cartera.contact.compliance.model import Reason
from cartera.contact.smstext import GSM7, UCS2, segment_count, sms_encoding
from cartera.contact.targets import Denied
from cartera.core.models import SmsMessage, SmsState
from cartera.core.registry import AdapterCatalog
from cartera.core.store.schema import AuditEntry, InboundSmsRow, Phone, SmsOptOut, SmsRow
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.sms import LONG, SPANISH, SmsConformance
from cartera.node import Node
from cartera.plugins.sms.kannel import plugin
from cartera.plugins.sms.kannel.client import KannelClient
from cartera.plugins.sms.kannel.config import KannelConfig
from cartera.plugins.sms.kannel.plugin import (
    MO_QUERY,
    KannelGateway,
    UnsupportedCharset,
    decode_mo_text,
    dlr_state,
)
from cartera.web.app import PLUGIN_PREFIX
from cartera.web.server import WebServer
from tests.conftest import write_portfolio, write_sites
from tests.peers.kannel import KannelPeer, listening_port, running_kannel
from tests.peers.net import free_port, wait_until
from tests.plugins.sms import sms_row

PHONE = "+573001234567"
#: Receivers of their own, so texts of earlier tests still on their way to fakesmsc cannot mix in.
CODING_PHONE = "+573001234501"
NODE_PHONE = "+573001234502"
TOKEN = "tok-0123456789abcdef"


def _settings(**overrides: Any) -> KannelConfig:
    base = {"smsbox_url": f"http://127.0.0.1:{free_port()}", "username": "cartera", "password": "s3cr3t-pass"}
    return KannelConfig.model_validate({**base, **overrides})


def gateway_app(gateway: KannelGateway) -> FastAPI:
    """The adapter's routes mounted where the node mounts them."""
    app = FastAPI()
    app.include_router(gateway.http_router(), prefix=f"{PLUGIN_PREFIX}/sms")
    return app


@contextmanager
def serving(gateway: KannelGateway, port: int) -> Iterator[None]:
    """The adapter's routes on a real HTTP server at ``port``."""
    with WebServer(gateway_app(gateway), "127.0.0.1", port):
        yield


# --- without a peer ------------------------------------------------------------------------------------


def test_registers_under_its_name() -> None:
    catalog = AdapterCatalog.empty()
    plugin.cartera_register_sms_gateways(catalog.sms_gateways)
    assert catalog.sms_gateways.get("kannel") is KannelGateway


@pytest.mark.parametrize(
    ("dlr_type", "smsc_status", "state"),
    [
        (1, "", SmsState.DELIVERED),
        (2, "id:1 sub:001 dlvrd:000 stat:UNDELIV err:001", SmsState.FAILED),
        (2, "id:1 sub:001 dlvrd:000 stat:EXPIRED err:000", SmsState.EXPIRED),
        (4, "", SmsState.SUBMITTED),
        (8, "ACK/", SmsState.SUBMITTED),
        (16, "NACK/0x0000000b/Invalid Destination Address", SmsState.FAILED),
        (3, "", None),
    ],
)
def test_dlr_types_map_to_states(dlr_type: int, smsc_status: str, state: SmsState | None) -> None:
    assert dlr_state(dlr_type, smsc_status) is state


def test_mo_text_is_decoded_by_coding_and_charset() -> None:
    assert decode_mo_text("¿Bája?".encode("utf-16-be"), "2", "") == "¿Bája?"
    assert decode_mo_text("¿Bája?".encode(), "0", "UTF-8") == "¿Bája?"
    assert decode_mo_text("¿Bája?".encode("latin-1"), "0", "ISO-8859-1") == "¿Bája?"
    assert decode_mo_text(b"BAJA", "", "") == "BAJA"
    assert decode_mo_text("¿Bája?".encode("utf-16-be"), "2", "UCS-2") == "¿Bája?"
    assert decode_mo_text("¿Bája? €".encode("cp1252"), "0", "windows-1252") == "¿Bája? €"
    assert decode_mo_text(b"\xbfBaja", "1", "8-BIT") == "¿Baja"  # Kannel's %C of an 8-bit MO: bytes as they came


@pytest.mark.abuse
@pytest.mark.parametrize("charset", ["punycode", "idna", "UTF-7", "unicode_escape", "rot13", "no-such-charset"])
def test_an_mo_in_a_charset_kannel_does_not_send_is_refused(charset: str) -> None:
    with pytest.raises(UnsupportedCharset, match="charset"):
        decode_mo_text(b"xn--" + b"a" * 70, "0", charset)


@pytest.mark.abuse
def test_an_mo_callback_in_an_odd_charset_is_a_400_not_a_500(tmp_path: Path) -> None:
    """Round 18 I5: charset=punycode (or idna) gave a 500 and the MO was lost to a codec error."""
    context = CapturingContext(tmp_path / "data")
    gateway = KannelGateway(_settings(callback_token=TOKEN), context)
    port = free_port()
    url = f"http://127.0.0.1:{port}{PLUGIN_PREFIX}/sms/kannel/mo"
    mo = {"from": PHONE, "token": TOKEN, "coding": "0"}
    with serving(gateway, port), httpx.Client() as http:
        refused = [http.get(url, params={**mo, "text": text, "charset": charset}) for text, charset in
                   [("a-99999", "punycode"), ("xn--" + "a" * 70, "idna"), ("+AGE-", "UTF-7")]]  # fmt: skip
        taken = http.get(url, params={**mo, "text": "BAJA", "charset": "UTF-8"})
    assert [r.status_code for r in refused] == [400, 400, 400]
    assert all("charset" in r.json()["detail"] for r in refused)
    assert taken.status_code == 200
    assert [m.text for m in context.inbound] == ["BAJA"]  # nothing of the refused ones stored


def test_config_refuses_bad_urls_and_tokens() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        _settings(smsbox_url="127.0.0.1:13013")
    with pytest.raises(ValueError, match="without a query"):
        _settings(smsbox_url="http://127.0.0.1:13013/cgi-bin/sendsms?user=x")
    with pytest.raises(ValueError, match="16 or more letters"):
        _settings(callback_token="has%percent-and-more")
    assert "s3cr3t-pass" not in repr(_settings())


def test_redaction_masks_credentials_plain_and_url_encoded() -> None:
    client = KannelClient(_settings(password="p@ss word/+", callback_token=TOKEN))
    try:
        text = "GET /cgi-bin/sendsms?username=cartera&password=p%40ss+word%2F%2B&x=p@ss word/+ token " + TOKEN
        redacted = client.redact(text)
    finally:
        client.close()
    assert "p%40ss" not in redacted
    assert "p@ss" not in redacted
    assert TOKEN not in redacted
    assert "cartera" not in redacted


def test_unreachable_smsbox_fails_the_text_and_check_without_secrets(tmp_path: Path) -> None:
    config = _settings()
    gateway = KannelGateway(config, CapturingContext(tmp_path / "data"))
    gateway.start()
    try:
        result = gateway.send(SmsMessage(1, "test", PHONE, "Hola"))
        check = gateway.check()
    finally:
        gateway.stop()
    assert result.state is SmsState.FAILED
    assert result.gateway_id  # smsbox may have taken it: its report carries this ref and must still match
    assert "did not answer" in result.detail
    assert config.smsbox_url in result.detail
    assert not check.ok
    assert "smsbox at" in check.detail
    for text in (result.detail, check.detail):
        assert "s3cr3t-pass" not in text
        assert "cartera" not in text


def test_callbacks_need_the_token_when_one_is_set(tmp_path: Path) -> None:
    context = CapturingContext(tmp_path / "data")
    gateway = KannelGateway(_settings(callback_token=TOKEN), context)
    port = free_port()
    base = f"http://127.0.0.1:{port}{PLUGIN_PREFIX}/sms/kannel"
    with serving(gateway, port), httpx.Client() as http:
        assert http.get(f"{base}/dlr", params={"msg": 1, "ref": "r", "type": 1}).status_code == 403
        assert http.get(f"{base}/dlr", params={"msg": 1, "ref": "r", "type": 1, "token": "x" * 20}).status_code == 403
        assert http.get(f"{base}/mo", params={"from": PHONE, "text": "BAJA"}).status_code == 403
        ok = http.get(f"{base}/dlr", params={"msg": 1, "ref": "r", "type": 1, "token": TOKEN})
        assert ok.status_code == 200
        bad_type = http.get(f"{base}/dlr", params={"msg": 1, "ref": "r", "type": 3, "token": TOKEN})
        assert bad_type.status_code == 400
        assert http.get(f"{base}/mo", params={"text": "BAJA", "token": TOKEN}).status_code == 400
    assert [(r.message_id, r.gateway_id, r.state) for r in context.deliveries] == [(1, "r", SmsState.DELIVERED)]
    assert context.inbound == []


@pytest.mark.abuse
def test_without_a_token_only_callbacks_from_this_host_are_taken(tmp_path: Path) -> None:
    context = CapturingContext(tmp_path / "data")
    gateway = KannelGateway(_settings(), context)
    port = free_port()
    base = f"http://127.0.0.1:{port}{PLUGIN_PREFIX}/sms/kannel"
    proxied = {"X-Forwarded-For": "203.0.113.9"}  # through a proxy on this host: someone else's request
    with serving(gateway, port), httpx.Client() as http:
        assert http.get(f"{base}/mo", params={"from": PHONE, "text": "BAJA"}, headers=proxied).status_code == 403
        forged = http.get(f"{base}/dlr", params={"msg": 1, "ref": "r", "type": 1}, headers={"Forwarded": "for=x"})
        assert forged.status_code == 403
        assert "callback_token" in forged.json()["detail"]
        assert http.get(f"{base}/dlr", params={"msg": 2, "ref": "s", "type": 1}).status_code == 200  # Kannel here
    with TestClient(gateway_app(gateway)) as remote:  # its socket peer is no loopback address
        assert remote.get(f"{PLUGIN_PREFIX}/sms/kannel/mo", params={"from": PHONE, "text": "BAJA"}).status_code == 403
    assert [(r.message_id, r.gateway_id) for r in context.deliveries] == [(2, "s")]
    assert context.inbound == []


# --- against the real Kannel --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mo_port() -> int:
    """Where smsbox's sms-service passes MO: the port the MO tests serve the adapter (or run the node) on."""
    return listening_port()


@pytest.fixture(scope="module")
def kannel(mo_port: int) -> Iterator[KannelPeer]:
    url = f"http://127.0.0.1:{mo_port}{PLUGIN_PREFIX}/sms/kannel/mo?{MO_QUERY}&token={TOKEN}"
    with running_kannel(url) as peer:
        yield peer


def _gateway(kannel: KannelPeer, context: CapturingContext, **overrides: Any) -> KannelGateway:
    config = KannelConfig.model_validate(kannel.gateway_settings(callback_token=TOKEN, **overrides))
    gateway = KannelGateway(config, context)
    gateway.start()
    return gateway


@pytest.mark.kannel
class TestKannelConformance(SmsConformance):
    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        # A fresh port per test: a late report for an earlier test's message cannot reach this one.
        return CapturingContext(tmp_path / "data", base_url=f"http://127.0.0.1:{listening_port()}")

    @pytest.fixture
    def gateway(self, kannel: KannelPeer, context: CapturingContext) -> Iterator[KannelGateway]:
        gateway = _gateway(kannel, context)
        port = int(context.base_url.rsplit(":", 1)[1])
        with serving(gateway, port):
            yield gateway
        gateway.stop()

    @pytest.fixture
    def phone(self) -> str:
        return PHONE


@pytest.fixture
def served(kannel: KannelPeer, tmp_path: Path, mo_port: int) -> Iterator[tuple[KannelGateway, CapturingContext]]:
    """A started gateway whose routes listen where smsbox sends MO."""
    context = CapturingContext(tmp_path / "data", base_url=f"http://127.0.0.1:{mo_port}")
    gateway = _gateway(kannel, context)
    with serving(gateway, mo_port):
        yield gateway, context
    gateway.stop()


def _reassembled(kannel: KannelPeer, receiver: str, count: int) -> list[str]:
    """The texts of the first ``count`` messages fakesmsc received for ``receiver``, concatenated parts joined."""
    received = kannel.wait_received(receiver, count)
    texts: list[str] = []
    parts: list[bytes] = []
    for message in received:
        if message.kind == "udh":
            parts.append(message.payload)
            total, index = message.udh[-2], message.udh[-1]
            if index == total:
                texts.append(b"".join(parts).decode("utf-16-be"))
                parts = []
        else:
            texts.append(message.text())
    return texts


@pytest.mark.kannel
def test_fake_smsc_receives_the_texts_with_their_coding(
    kannel: KannelPeer, served: tuple[KannelGateway, CapturingContext]
) -> None:
    gateway, context = served
    gsm = "Su pago de $ 120.000 fue recibido. Gracias."
    assert (sms_encoding(gsm), sms_encoding(SPANISH)) == (GSM7, UCS2)
    texts = (gsm, SPANISH, "¿Pagó?")
    results = [gateway.send(SmsMessage(i, "test", CODING_PHONE, text)) for i, text in enumerate(texts, 1)]
    assert [r.state for r in results] == [SmsState.SUBMITTED] * 3
    assert "2 UCS-2 segment(s)" in results[1].detail
    received = kannel.wait_received(CODING_PHONE, 4)  # the long UCS-2 text is two concatenated parts
    assert [m.kind for m in received] == ["text", "udh", "udh", "ucs-2"]
    assert all(m.sender == "12345" for m in received)
    assert _reassembled(kannel, CODING_PHONE, 4) == list(texts)
    context.wait_until(
        lambda: sum(r.state is SmsState.DELIVERED for r in context.deliveries) == 3, 10, "three delivered reports"
    )
    delivered = {r.message_id: r for r in context.deliveries if r.state is SmsState.DELIVERED}
    assert {i: r.gateway_id for i, r in delivered.items()} == {r.message_id: r.gateway_id for r in results}
    assert all("kannel type 1" in r.raw_status and "smsc id" in r.raw_status for r in delivered.values())
    accepted = [r for r in context.deliveries if r.state is SmsState.SUBMITTED]
    assert all("kannel type 8" in r.raw_status for r in accepted)


@pytest.mark.kannel
def test_mo_through_fakesmsc_reaches_the_adapter(
    kannel: KannelPeer, served: tuple[KannelGateway, CapturingContext]
) -> None:
    _, context = served
    kannel.send_mo(PHONE, "Baja.")
    kannel.send_mo(PHONE, "¿Cuánto debo?")
    kannel.send_mo(PHONE, urllib.parse.quote("¡Bája! 😀".encode("utf-16-be")), kind="ucs2")  # coding 2 at Kannel
    inbound = context.wait_for_inbound(3)  # smsbox calls the get-url concurrently: any order
    assert sorted((m.phone, m.text) for m in inbound) == [(PHONE, t) for t in ("Baja.", "¡Bája! 😀", "¿Cuánto debo?")]
    assert all(m.gateway_id and re.fullmatch(r"[0-9a-f-]{36}", m.gateway_id) for m in inbound)
    assert len({m.gateway_id for m in inbound}) == 3


@pytest.mark.kannel
def test_wrong_credentials_fail_without_leaking_them(kannel: KannelPeer, tmp_path: Path) -> None:
    context = CapturingContext(tmp_path / "data")
    gateway = _gateway(kannel, context, password="wrong-password-123")
    try:
        result = gateway.send(SmsMessage(1, "test", PHONE, "Hola"))
        check = gateway.check()
    finally:
        gateway.stop()
    assert result.state is SmsState.FAILED
    assert "HTTP 403" in result.detail
    assert "Authorization failed" in result.detail
    assert not check.ok
    assert "refused the sendsms user" in check.detail
    assert all("wrong-password-123" not in text for text in (result.detail, check.detail))


@pytest.mark.kannel
def test_check_names_a_bearerbox_without_status_access(kannel: KannelPeer, tmp_path: Path) -> None:
    gateway = _gateway(kannel, CapturingContext(tmp_path / "data"), status_password="not-the-status-pw")
    try:
        check = gateway.check()
    finally:
        gateway.stop()
    assert not check.ok
    assert f"bearerbox at {kannel.status_url} is not running" in check.detail
    assert "not-the-status-pw" not in check.detail


# --- through the node ---------------------------------------------------------------------------------


def kannel_site(tmp_path: Path, kannel: KannelPeer, web_port: int) -> Path:
    """Site ``t`` texting through ``kannel``, its HTTP server on ``web_port``, no campaign of its own."""
    path = write_sites(tmp_path)
    settings = kannel.gateway_settings(password="${KANNEL_PASSWORD}", status_password="${KANNEL_STATUS_PASSWORD}")
    settings["callback_token"] = "${KANNEL_TOKEN}"
    sms = "\n".join(
        f"{key} = {value!r}" if isinstance(value, int) else f'{key} = "{value}"' for key, value in settings.items()
    )
    text = path.read_text()
    text = text.replace('plugin = "outbox"\npath = "sms/outbox.jsonl"', f'plugin = "kannel"\n{sms}')
    text = re.sub(r"\[sites\.t\.web\]\nport = \d+", f"[sites.t.web]\nport = {web_port}", text)
    text = text.replace("tick_seconds = 0.2", "enabled = false\ntick_seconds = 0.2")
    path.write_text(text)
    write_portfolio(tmp_path / "inbox", [f"BCO-1;Ana Gómez;{NODE_PHONE.removeprefix('+57')};;1.000,00;COP"])
    return path


@pytest.fixture
def node_on_kannel(
    kannel: KannelPeer,
    tmp_path: Path,
    mo_port: int,
    open_node: Callable[..., Node],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Node]:
    """A running node (``run``: its HTTP server on the MO port) whose SMS gateway is the real Kannel."""
    monkeypatch.setenv("KANNEL_PASSWORD", kannel.password)
    monkeypatch.setenv("KANNEL_STATUS_PASSWORD", kannel.status_password)
    monkeypatch.setenv("KANNEL_TOKEN", TOKEN)
    node = open_node(kannel_site(tmp_path, kannel, mo_port))
    node.creditor_sync().run_once()
    runner = threading.Thread(target=node.run, kwargs={"duration": 120})
    runner.start()
    try:
        wait_until(lambda: _listening(mo_port), "the node's HTTP server")
        yield node
    finally:
        node.stop()
        runner.join(30)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.kannel
def test_the_nodes_text_is_delivered_and_its_report_reaches_the_node(
    kannel: KannelPeer, node_on_kannel: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node = node_on_kannel
    caplog.set_level(logging.DEBUG)
    result = node.texts.send_sms(phone=None, text=LONG, account="BCO-1", actor="test")
    assert result.state is SmsState.SUBMITTED, result.detail
    wait_until(lambda: sms_row(node, result.message_id).state == SmsState.DELIVERED, "the DLR to reach the node")
    row = sms_row(node, result.message_id)
    assert (row.phone, row.gateway_id, row.text) == (NODE_PHONE, result.gateway_id, LONG)
    assert _reassembled(kannel, NODE_PHONE, segment_count(LONG)) == [LONG]  # UCS-2 parts of at most 67 characters
    check = {line.what: line.result for line in node.check()}
    assert check["sms kannel"].ok, check
    assert kannel.password not in caplog.text
    assert TOKEN not in caplog.text


@pytest.mark.kannel
def test_baja_through_fakesmsc_opts_the_phone_out_at_once(kannel: KannelPeer, node_on_kannel: Node) -> None:
    node = node_on_kannel
    kannel.send_mo(NODE_PHONE.removeprefix("+"), "  baja. ")  # as an SMSC may give the sender: without the plus
    wait_until(lambda: _opted_out(node), "the opt-out to reach the store")
    with node.db.session() as session:
        inbound = session.scalars(sa.select(InboundSmsRow)).one()
        assert (inbound.phone, inbound.text, inbound.opt_out) == (NODE_PHONE, "  baja. ", "BAJA")
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "sms.opt_out")).one()
        assert (entry.subject, entry.details["keyword"], entry.details["phones_flagged"]) == (NODE_PHONE, "BAJA", 1)
        assert session.get(SmsOptOut, NODE_PHONE) is not None
    before = len(kannel.received_by(NODE_PHONE))  # the previous test's texts, all received
    with pytest.raises(Denied) as denied:
        node.texts.send_sms(phone=None, text="Recordatorio", account="BCO-1", actor="test")
    assert Reason.DEBTOR_OPT_OUT in denied.value.decision.reasons
    with node.db.session() as session:
        assert session.scalars(sa.select(SmsRow)).all() == []
    time.sleep(2)  # fakesmsc reads its socket about once a second
    assert len(kannel.received_by(NODE_PHONE)) == before, "a text reached the SMSC after the opt-out"


def _opted_out(node: Node) -> bool:
    with node.db.session() as session:
        return bool(session.scalar(sa.select(Phone.do_not_text).where(Phone.e164 == NODE_PHONE)))


def _inbound(node: Node) -> list[tuple[str, str, str | None]]:
    with node.db.session() as session:
        return [(row.phone, row.text, row.opt_out) for row in session.scalars(sa.select(InboundSmsRow))]


@pytest.mark.kannel
@pytest.mark.abuse
def test_a_ucs2_baja_through_fakesmsc_opts_the_phone_out(kannel: KannelPeer, node_on_kannel: Node) -> None:
    """Round 20 I-F0: UCS-2 text (any á, or an emoji) reached the node as UTF-16BE bytes, a zero byte beside every
    Latin character, and the node's NUL guard answered 400 before the plugin decoded it: the opt-out was lost."""
    node = node_on_kannel
    kannel.send_mo(NODE_PHONE.removeprefix("+"), urllib.parse.quote("Bája".encode("utf-16-be")), kind="ucs2")
    wait_until(lambda: _opted_out(node), "the opt-out to reach the store")
    assert _inbound(node) == [(NODE_PHONE, "Bája", "BAJA")]


@pytest.mark.kannel
@pytest.mark.abuse
def test_the_nodes_mo_route_checks_the_text_it_decoded(node_on_kannel: Node, mo_port: int) -> None:
    """Through the node's whole app: UTF-16BE text is taken; a NUL or a lone surrogate in the text once decoded,
    or a NUL in any other parameter, is refused 400 and nothing of it stored."""
    node = node_on_kannel
    url = f"http://127.0.0.1:{mo_port}{PLUGIN_PREFIX}/sms/kannel/mo"

    def mo(text: bytes, sender: str = "573001234509", charset: str = "UTF-16BE") -> httpx.Response:
        query = f"from={sender}&to=12345&id=x&coding=2&charset={charset}&text={urllib.parse.quote(text)}"
        return http.get(f"{url}?{query}&token={TOKEN}")

    emoji = "Gracias 😀 pagaré el lunes"
    with httpx.Client() as http:
        taken = mo(emoji.encode("utf-16-be"))
        refused = {
            "decoded NUL": mo("Ba\x00ja".encode("utf-16-be")),
            "lone surrogate": mo(b"\xd8\x00\x00a"),  # no UTF-16BE: read as Latin-1 bytes, a NUL among them
            "lone surrogate, UTF-8": mo(b"Baja \xed\xa0\x80\x00", charset="UTF-8"),
            "8-bit NUL": mo(b"Baja\x00", charset="8-BIT"),
            "NUL in the sender": mo("Baja".encode("utf-16-be"), sender="57300%00"),
        }
    assert taken.status_code == 200, taken.text
    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 400)
    assert refused["NUL in the sender"].json()["detail"] == "a NUL character in the request"  # the guard's
    assert _inbound(node) == [("+573001234509", emoji, None)]
    with node.db.session() as session:
        reasons = session.scalars(sa.select(AuditEntry.details).where(AuditEntry.action == "web.rejected")).all()
    assert sum("NUL" in str(details) for details in reasons) == len(refused), reasons
