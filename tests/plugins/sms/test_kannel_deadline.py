"""A hostile or hung smsbox holds no sender past ``timeout_s``: each request has a wall-clock deadline (not only a
bound on each socket read) and the answer's body read is bounded. Against a fake smsbox on 127.0.0.1 that drips its
headers or body a byte at a time, or floods a body of gigabytes."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from cartera.core.adapters import IN_DOUBT
from cartera.core.models import SmsMessage, SmsState
from cartera.core.store.schema import ActivityRow, ContactAttempt, SmsRow
from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.plugins.sms.kannel.client import SENDSMS_MAX_BYTES, Reply
from cartera.plugins.sms.kannel.config import KannelConfig
from cartera.plugins.sms.kannel.plugin import KannelGateway
from tests.conftest import write_portfolio, write_sites
from tests.peers.net import free_port, wait_until
from tests.plugins.sms.test_kannel import serving

pytestmark = pytest.mark.abuse

PASSWORD = "s3cr3t-pass"
PHONE = "+573001234567"
TIMEOUT_S = 1.0
SLACK_S = 1.5  #: what a loaded test machine may add to the deadline
ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Type: text/html\r\nContent-Length: 24\r\n\r\n0: Accepted for delivery"


class FakeSmsbox:
    """An HTTP server answering each request as ``mode`` says: ``ok``; ``drip_headers`` (a status line, then a
    header line every 0.1 s); ``drip_body`` (a body of 100 MB announced, a byte every 0.1 s); ``drip_until_close``
    (no length, a byte every 0.1 s); ``flood`` (a body of 2 GB at loopback speed)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[str] = []
        self.flooded = 0  #: bytes of the flood sent before the client hung up
        self.flood_ended = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._clients: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def texts(self) -> list[str]:
        """The requests that sent a text (``check`` sends one without a receiver)."""
        return [request for request in self.requests if "&to=" in request]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._server.close()
        for client in self._clients:
            client.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._clients.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        pending = b""
        try:
            while not self._closed:
                while b"\r\n\r\n" not in pending:
                    data = client.recv(65536)
                    if not data:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                self.requests.append(head.split(b"\r\n", 1)[0].decode())
                if self.mode == "ok":
                    client.sendall(ACCEPTED)
                    continue
                self._misbehave(client)
                return
        except OSError:
            return

    def _misbehave(self, client: socket.socket) -> None:
        if self.mode == "flood":
            client.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2000000000\r\n\r\n")
            chunk = b"0" * (1 << 20)
            try:
                while self.flooded < 2_000_000_000:
                    client.sendall(chunk)
                    self.flooded += len(chunk)
            finally:
                self.flood_ended.set()
        heads = {
            "drip_headers": (b"HTTP/1.1 202 Accepted\r\n", b"X-Drip: 1\r\n"),
            "drip_body": (b"HTTP/1.1 202 Accepted\r\nContent-Length: 100000000\r\n\r\n", b"0"),
            "drip_until_close": (b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\n", b"0"),
        }
        head, drop = heads[self.mode]
        client.sendall(head)
        while not self._closed:
            client.sendall(drop)
            time.sleep(0.1)


@pytest.fixture
def smsbox() -> Iterator[FakeSmsbox]:
    box = FakeSmsbox()
    yield box
    box.close()


@pytest.fixture
def gateway(smsbox: FakeSmsbox, tmp_path: Path) -> Iterator[KannelGateway]:
    config = KannelConfig.model_validate(
        {"smsbox_url": smsbox.url, "username": "cartera", "password": PASSWORD, "timeout_s": TIMEOUT_S}
    )
    gateway = KannelGateway(config, CapturingContext(tmp_path / "data"))
    gateway.start()
    yield gateway
    gateway.stop()


T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    result = action()
    return result, time.monotonic() - start


@pytest.mark.parametrize("mode", ["drip_headers", "drip_body", "drip_until_close"])
def test_a_dripping_smsbox_fails_the_text_at_the_deadline_and_the_next_one_goes(
    smsbox: FakeSmsbox, gateway: KannelGateway, mode: str
) -> None:
    smsbox.mode = mode
    result, took = timed(lambda: gateway.send(SmsMessage(1, "test", PHONE, "Hola")))
    assert took < TIMEOUT_S + SLACK_S
    assert result.state is SmsState.FAILED
    assert result.gateway_id  # smsbox may have taken it: its report still finds the text
    assert "did not answer" in result.detail
    assert "timeout_s" in result.detail
    assert PASSWORD not in result.detail
    smsbox.mode = "ok"  # the pool does not hand out the connection that was cut
    after = gateway.send(SmsMessage(2, "test", PHONE, "Hola"))
    assert after.state is SmsState.SUBMITTED
    assert "0: Accepted for delivery" in after.detail
    assert len(smsbox.requests) == 2


def test_a_dripping_smsbox_fails_check_at_the_deadline(smsbox: FakeSmsbox, gateway: KannelGateway) -> None:
    smsbox.mode = "drip_headers"
    check, took = timed(gateway.check)
    assert took < TIMEOUT_S + SLACK_S
    assert not check.ok
    assert "did not answer" in check.detail
    assert PASSWORD not in check.detail


def test_a_flooded_answer_is_read_only_up_to_its_bound(smsbox: FakeSmsbox, gateway: KannelGateway) -> None:
    smsbox.mode = "flood"
    result, took = timed(lambda: gateway.send(SmsMessage(1, "test", PHONE, "Hola")))
    assert took < TIMEOUT_S + SLACK_S
    assert result.state is SmsState.SUBMITTED  # smsbox said 202: it took the text
    assert len(result.detail) < SENDSMS_MAX_BYTES + 200
    assert f"cut after {SENDSMS_MAX_BYTES} bytes" in result.detail
    assert smsbox.flood_ended.wait(10)  # the client hung up: the 2 GB were not read
    assert smsbox.flooded < 256 << 20


# --- the node ------------------------------------------------------------------------------------------------

UNREACHED = ["300 123 4561", "300 123 4562", "300 123 4563", "300 123 4564"]


def site_texting_through(tmp_path: Path, smsbox: FakeSmsbox) -> Path:
    """Site ``t`` with one attempt a day, its simulator leaving every phone of ``UNREACHED`` unanswered, its texts
    going to ``smsbox`` with ``timeout_s = TIMEOUT_S``."""
    path = write_sites(tmp_path)
    scripted = ", ".join(f'"+57{phone.replace(" ", "")}" = "no_answer"' for phone in UNREACHED)
    text = path.read_text().replace("seed = 7", f"seed = 7\nscripted = {{ {scripted} }}")
    text = text.replace("retry_after_minutes = 60", "retry_after_minutes = 1\nmax_attempts_per_day = 1")
    sms = (
        f'plugin = "kannel"\nsmsbox_url = "{smsbox.url}"\nusername = "cartera"\n'
        f'password = "${{KANNEL_PASSWORD}}"\ntimeout_s = {TIMEOUT_S}'
    )
    path.write_text(text.replace('plugin = "outbox"\npath = "sms/outbox.jsonl"', sms))
    rows = [f"BCO-{n};Deudor {n};{phone};;1.000,00;COP" for n, phone in enumerate(UNREACHED, 1)]
    write_portfolio(tmp_path / "inbox", rows)
    return path


def test_a_hung_smsbox_holds_the_nodes_stop_one_deadline_at_most(
    tmp_path: Path,
    smsbox: FakeSmsbox,
    open_node: Callable[..., Node],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("KANNEL_PASSWORD", PASSWORD)
    caplog.set_level(logging.INFO, logger="cartera.campaign")
    node = open_node(site_texting_through(tmp_path, smsbox))
    node.creditor_sync().run_once()
    campaign = node._campaign()
    assert campaign is not None
    for _ in range(20):  # each account called once, unanswered: today's attempts are used up
        campaign.tick()
        with node.db.session() as session:
            attempts = session.scalars(sa.select(ContactAttempt.id)).all()
        if len(attempts) == len(UNREACHED):
            break
    assert len(attempts) == len(UNREACHED)
    for attempt in attempts:
        assert node.calls.wait_for_call(attempt, timeout=10) is not None
    time.sleep(node.clock.real_seconds(90))
    assert smsbox.requests == []

    smsbox.mode = "drip_body"  # every reminder text hangs
    runner = threading.Thread(target=node.run, kwargs={"duration": 60})
    runner.start()
    try:
        wait_until(lambda: len(smsbox.texts()) == 1, "the first reminder at smsbox", timeout=20)
        stopping = time.monotonic()
        node.stop()
        runner.join(TIMEOUT_S + 2 * SLACK_S)
        took = time.monotonic() - stopping
        assert not runner.is_alive(), f"the node still runs {took:.1f} s after its stop"
    finally:
        node.stop()
        smsbox.close()
        runner.join(30)
    assert len(smsbox.texts()) == 1  # the campaign sent no other reminder once stopping
    with node.db.session() as session:
        states = session.scalars(sa.select(SmsRow.state)).all()
    assert states == [SmsState.FAILED.value]
    skipped = [r for r in caplog.records if r.getMessage() == "campaign.reminder_not_sent"]
    assert [getattr(r, "fields", {}).get("reason") for r in skipped] == ["the node is stopping"] * (len(UNREACHED) - 1)


@pytest.mark.parametrize("first", ["answer", "report"])
def test_a_text_smsbox_took_without_answering_in_time_ends_as_kannel_reports_it(
    tmp_path: Path,
    smsbox: FakeSmsbox,
    open_node: Callable[..., Node],
    monkeypatch: pytest.MonkeyPatch,
    first: str,
) -> None:
    """Round 26 C-F1: a sendsms request smsbox received but did not answer within ``timeout_s`` was failed plainly, not
    in doubt, so Kannel's later report made the row delivered while its SMS activity (the creditor's export) stayed
    failed, whether the report reached the node after the sender's answer or before it. It is given up in doubt (its
    ref kept): either order ends delivered, the activity too. A request never sent stays plainly failed."""
    monkeypatch.setenv("KANNEL_PASSWORD", PASSWORD)
    node = open_node(site_texting_through(tmp_path, smsbox))
    node.creditor_sync().run_once()
    smsbox.mode = "drip_headers"  # smsbox took the text; its answer never completes
    assert node.texts.sms is not None
    gateway = node.texts.sms()
    assert isinstance(gateway, KannelGateway)
    port = free_port()

    def kannel_reports_delivered() -> None:  # the exact dlr-url the adapter gave smsbox, as Kannel fills it in
        [request] = smsbox.texts()
        dlr = urlsplit(parse_qs(urlsplit(request.split()[1]).query)["dlr-url"][0])
        fields = {"%d": "1", "%A": "id:X stat:DELIVRD", "%F": "X"}
        params = {key: fields.get(values[0], values[0]) for key, values in parse_qs(dlr.query).items()}
        assert httpx.get(f"http://127.0.0.1:{port}{dlr.path}", params=params).status_code == 200

    client = gateway._http()
    sendsms = client.sendsms

    def report_before_the_answer(params: dict[str, str]) -> Reply:
        try:
            return sendsms(params)
        finally:
            kannel_reports_delivered()  # smsbox has it, the sender has not stored its answer yet

    if first == "report":
        monkeypatch.setattr(client, "sendsms", report_before_the_answer)
    with serving(gateway, port):
        result = node.texts.send_sms(phone=None, text="hola", account="BCO-1", actor="test")
        if first == "answer":
            with node.db.session() as session:
                failed = session.scalars(sa.select(ActivityRow.outcome).where(ActivityRow.kind == "sms")).all()
            assert failed == ["failed"]
            kannel_reports_delivered()
    with node.db.session() as session:
        [row] = session.scalars(sa.select(SmsRow)).all()
        outcomes = session.scalars(sa.select(ActivityRow.outcome).where(ActivityRow.kind == "sms")).all()
    assert (row.state, row.gateway_id) == ("delivered", result.gateway_id)
    assert result.gateway_id  # its ref: Kannel's report finds the text by it
    assert outcomes == ["delivered"]
    answered = SmsState.DELIVERED if first == "report" else SmsState.FAILED
    assert result.state is answered  # the sender says what the store had when it stored its answer
    assert IN_DOUBT in result.detail
    assert "did not answer" in result.detail


def test_a_sendsms_never_sent_is_failed_not_in_doubt(tmp_path: Path) -> None:
    """Round 26 C-F1: only a request smsbox may have taken is in doubt; one refused at connect is plainly failed."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = KannelConfig.model_validate(
        {"smsbox_url": url, "username": "cartera", "password": PASSWORD, "timeout_s": TIMEOUT_S}
    )
    gateway = KannelGateway(config, CapturingContext(tmp_path / "data"))
    gateway.start()
    try:
        result = gateway.send(SmsMessage(1, "test", PHONE, "Hola"))
    finally:
        gateway.stop()
    assert result.state is SmsState.FAILED
    assert "did not answer" in result.detail
    assert not result.detail.startswith(IN_DOUBT)
