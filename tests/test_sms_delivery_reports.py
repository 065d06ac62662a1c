"""Delivery reports reach only the message they were made for: the report's gateway id must be the one stored
for its message (a stale or forged report naming another message's number changes nothing), a message number
beyond any the store holds is an unknown report (never a 5xx), and an inbound sender is never cut short."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from cartera.core.hooks import load_plugins
from cartera.core.hookspecs import hookimpl
from cartera.core.models import DeliveryReport, InboundSms, SmsMessage, SmsState, SmsSubmitResult
from cartera.core.store.schema import ActivityRow, AuditEntry, InboundSmsRow, SmsRow
from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.plugins.sms.kannel.config import KannelConfig
from cartera.plugins.sms.kannel.plugin import KannelGateway
from tests.conftest import write_portfolio, write_sites
from tests.peers.net import free_port
from tests.plugins.sms.test_kannel import gateway_app

pytestmark = pytest.mark.abuse

TOKEN = "tok-0123456789abcdef"


class Deliveries:
    @hookimpl
    def cartera_sms_delivery(self, site: str, message_id: int, report: DeliveryReport) -> None:
        self.seen.append((message_id, report.state))

    def __init__(self) -> None:
        self.seen: list[tuple[int, SmsState]] = []


@pytest.fixture
def observer() -> Deliveries:
    return Deliveries()


@pytest.fixture
def node(tmp_path: Path, open_node: Callable[..., Node], observer: Deliveries) -> Node:
    path = write_sites(tmp_path)
    write_portfolio(
        tmp_path / "inbox",
        ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP", "BCO-2;Luis Pérez;310 987 6543;;500,00;COP"],
    )
    node = open_node(path, with_hooks=load_plugins(entry_points=False, extra=[observer]))
    node.creditor_sync().run_once()
    return node


def _rows(node: Node) -> list[tuple[int, str, str | None]]:
    with node.db.session() as session:
        return [(r.id, r.state, r.gateway_id) for r in session.scalars(sa.select(SmsRow).order_by(SmsRow.id))]


def _unknown(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage() == "sms.unknown_delivery" for r in caplog.records)


def test_a_report_whose_gateway_id_is_not_its_messages_changes_nothing(
    node: Node, observer: Deliveries, caplog: pytest.LogCaptureFixture
) -> None:
    first = node.texts.send_sms(phone=None, text="Aviso uno", account="BCO-1", actor="test")
    second = node.texts.send_sms(phone=None, text="Aviso dos", account="BCO-2", actor="test")
    before = _rows(node)
    assert [state for _, state, _ in before] == [SmsState.DELIVERED, SmsState.DELIVERED]  # the outbox's own
    assert observer.seen == [(first.message_id, SmsState.DELIVERED), (second.message_id, SmsState.DELIVERED)]
    later = node.clock.now() + timedelta(seconds=5)
    forged = [
        DeliveryReport(SmsState.FAILED, "FORGED-not-the-ref", later, message_id=first.message_id, raw_status="x"),
        DeliveryReport(SmsState.EXPIRED, second.gateway_id, later, message_id=first.message_id, raw_status="x"),
        DeliveryReport(SmsState.FAILED, None, later, message_id=second.message_id, raw_status="x"),
        DeliveryReport(SmsState.FAILED, "", later, message_id=second.message_id, raw_status="x"),
    ]
    with caplog.at_level(logging.INFO, logger="cartera.contacts"):
        for report in forged:
            node.texts.on_delivery(report)
    assert _rows(node) == before
    assert len(observer.seen) == 2  # no hook for a refused report
    assert _unknown(caplog) == len(forged)
    # the report of that very submission still applies
    node.texts.on_delivery(DeliveryReport(SmsState.EXPIRED, first.gateway_id, later, message_id=first.message_id))
    assert _rows(node)[0][1] == SmsState.EXPIRED
    assert observer.seen[-1] == (first.message_id, SmsState.EXPIRED)


@pytest.mark.parametrize("message_id", [10**23, 2**63, -(2**63) - 1, 0, -1])
def test_a_message_number_beyond_the_store_is_an_unknown_report(
    node: Node, observer: Deliveries, caplog: pytest.LogCaptureFixture, message_id: int
) -> None:
    node.texts.send_sms(phone=None, text="Aviso", account="BCO-1", actor="test")
    before = _rows(node)
    with caplog.at_level(logging.INFO, logger="cartera.contacts"):
        node.texts.on_delivery(DeliveryReport(SmsState.FAILED, "x", node.clock.now(), message_id=message_id))
    assert _rows(node) == before
    assert _unknown(caplog) == 1
    assert len(observer.seen) == 1


class _ToNode(CapturingContext):
    """A Kannel adapter's context handing reports to a node's texts, as the node's own does."""

    def __init__(self, data_dir: Path, node: Node) -> None:
        super().__init__(data_dir, site="t", clock=node.clock)
        self._node = node

    def report_delivery(self, report: DeliveryReport) -> None:
        self._node.texts.on_delivery(report)

    def report_inbound(self, message: InboundSms) -> None:
        self._node.texts.on_inbound(message)


def test_kannel_reports_with_a_huge_or_foreign_msg_answer_like_unknown_ones(node: Node, tmp_path: Path) -> None:
    sent = node.texts.send_sms(phone=None, text="Aviso", account="BCO-1", actor="test")
    config = KannelConfig.model_validate(
        {"smsbox_url": f"http://127.0.0.1:{free_port()}", "username": "u", "password": "p", "callback_token": TOKEN}
    )
    gateway = KannelGateway(config, _ToNode(tmp_path / "k", node))
    before = _rows(node)
    with TestClient(gateway_app(gateway), raise_server_exceptions=False) as http:
        for msg in ("99999999999999999999999", str(2**63), "-99999999999999999999999", str(sent.message_id)):
            params = {"msg": msg, "ref": "FORGED", "type": "16", "smsc_status": "x", "token": TOKEN}
            answer = http.get("/plugins/sms/kannel/dlr", params=params)
            assert (answer.status_code, answer.text) == (200, "ok"), msg
    assert _rows(node) == before


def test_a_sender_too_long_for_the_store_is_refused_not_cut(node: Node, caplog: pytest.LogCaptureFixture) -> None:
    sender = "9" * 5000
    with caplog.at_level(logging.INFO, logger="cartera.contacts"):
        node.texts.on_inbound(InboundSms(sender, "BAJA", node.clock.now(), "mo-1"))
    with node.db.session() as session:
        assert session.scalars(sa.select(InboundSmsRow)).all() == []
        assert session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "sms.inbound")).all() == []
    refused = [r for r in caplog.records if r.getMessage() == "sms.inbound_refused"]
    assert len(refused) == 1
    assert refused[0].levelno == logging.WARNING
    assert sender not in caplog.text
    node.texts.on_inbound(InboundSms("+573001234567", "hola", node.clock.now(), "m" * 129))  # nor a gateway id
    assert len([r for r in caplog.records if r.getMessage() == "sms.inbound_refused"]) == 2
    node.texts.on_inbound(InboundSms("9" * 32, "hola", node.clock.now(), "mo-2"))  # the longest the store holds
    with node.db.session() as session:
        assert session.scalars(sa.select(InboundSmsRow.phone)).all() == ["9" * 32]


class LongIdGateway:
    """A gateway taking every text with an id longer than the store keeps, as smpplib hands an SMSC's
    submit_sm_resp message_id through whole (its C-octet string's max is not checked); with ``receipt``, a fast
    receipt carrying that id arrives while the text is still being submitted (queued)."""

    def __init__(self, receipt: Callable[[DeliveryReport], None] | None = None) -> None:
        self.sent: list[int] = []
        self.receipt = receipt

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        self.sent.append(message.message_id)
        if self.receipt is not None:
            self.receipt(DeliveryReport(SmsState.DELIVERED, "9" * 200, datetime.now(UTC), message.message_id))
        return SmsSubmitResult(message.message_id, SmsState.SUBMITTED, "9" * 200)


@pytest.mark.postgres
def test_a_gateway_id_longer_than_the_store_keeps_does_not_lose_the_submission(
    tmp_path: Path, postgres_url: str, open_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Red-team round 17 M4: PostgreSQL refused a 200-character SMSC id after the gateway had taken the text:
    the row stayed queued with no activity. The id is dropped (logged); the state and activity are stored."""
    path = write_sites(tmp_path, database=postgres_url)
    write_portfolio(
        tmp_path / "inbox",
        ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP", "BCO-2;Luis Pérez;310 987 6543;;500,00;COP"],
    )
    node = open_node(path)
    node.creditor_sync().run_once()
    gateway = LongIdGateway()
    monkeypatch.setattr(node.texts, "sms", lambda: gateway)
    result = node.texts.send_sms(phone=None, text="Hola", account="BCO-1", actor="test")
    assert (result.state, result.gateway_id) == (SmsState.SUBMITTED, None)
    assert gateway.sent == [result.message_id]
    assert _rows(node) == [(result.message_id, "submitted", None)]
    with node.db.session() as session:
        assert session.scalars(sa.select(ActivityRow.outcome).where(ActivityRow.kind == "sms")).all() == ["submitted"]
    # a receipt with such an id while the text is queued: its state is taken, the id is not kept
    gateway.receipt = node.texts.on_delivery
    second = node.texts.send_sms(phone=None, text="Hola", account="BCO-2", actor="test")
    assert _rows(node)[1] == (second.message_id, "delivered", None)


@pytest.mark.postgres
@pytest.mark.parametrize("reported", [SmsState.DELIVERED, SmsState.SUBMITTED])
def test_a_report_while_the_senders_answer_is_stored_is_kept_on_postgresql(
    tmp_path: Path, postgres_url: str, open_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch,
    reported: SmsState,
) -> None:  # fmt: skip
    """Round 27 C-F2: on PostgreSQL (READ COMMITTED) the sender's answer read its row without a lock, so a report
    committed between that read and the answer's write was overwritten: a final "delivered" went back to "submitted",
    and a late acceptance of a text given up in doubt went back to "failed in doubt". The answer and the report now
    take the row FOR UPDATE: here the report comes right after the answer read its row; it waits for the answer and
    is applied on top of it (without the lock it committed first and was lost)."""
    from cartera.contact.texts import TextService
    from cartera.core.adapters import IN_DOUBT
    from tests.peers.net import wait_until

    path = write_sites(tmp_path, database=postgres_url)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(path)
    node.creditor_sync().run_once()
    answer = (SmsState.SUBMITTED, "ref-1", "accepted") if reported is SmsState.DELIVERED else (
        SmsState.FAILED, None, f"{IN_DOUBT}: written, no answer")  # fmt: skip

    class Gateway:
        def send(self, message: SmsMessage) -> SmsSubmitResult:
            return SmsSubmitResult(message.message_id, *answer)

    node.texts.sms = Gateway  # type: ignore[assignment]
    watcher = sa.create_engine(postgres_url)
    original = TextService._settled_as_killed
    reports: list[threading.Thread] = []

    def waiting_on_a_lock() -> bool:
        with watcher.connect() as conn:
            return bool(conn.scalar(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )))  # fmt: skip

    def settled_as_killed(self: TextService, session: sa.orm.Session, row: SmsRow) -> str | None:
        if not reports:  # the answer's session has read its row: the report comes now
            report = DeliveryReport(reported, "ref-1", node.clock.now(), row.id, "report")
            reports.append(threading.Thread(target=node.texts.on_delivery, args=(report,)))
            reports[0].start()
            wait_until(lambda: not reports[0].is_alive() or waiting_on_a_lock(), "the report committed or waiting")
        return original(self, session, row)

    monkeypatch.setattr(TextService, "_settled_as_killed", settled_as_killed)
    try:
        result = node.texts.send_sms(phone=None, text="hola", account="BCO-1", actor="test")
        reports[0].join()
    finally:
        watcher.dispose()
    with node.db.session() as session:
        row = session.get_one(SmsRow, result.message_id)
        state, gateway_id = row.state, row.gateway_id
        outcomes = [a.outcome for a in session.scalars(sa.select(ActivityRow).where(ActivityRow.kind == "sms"))]
    assert (state, gateway_id) == (reported.value, "ref-1")
    assert outcomes == ["submitted"]  # the export: accepted (the in-doubt text's answered by its late acceptance)
