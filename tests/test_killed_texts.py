"""A text in flight when its sender (an ``sms`` command, a node) is killed: the next start settles it, records its
activity and counts it; a text an ``sms`` command beside the node is still sending is never touched (round 21
C-F2: it stayed ``queued`` for ever, with no activity, never exported)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import select, text
from sqlalchemy.pool import QueuePool

from cartera.contact import texts as texts_module
from cartera.core.adapters import IN_DOUBT, KILLED_WHILE_SENDING, SmsGateway
from cartera.core.models import DeliveryReport, SmsMessage, SmsState, SmsSubmitResult
from cartera.core.store.database import Database
from cartera.core.store.schema import ActivityRow, AuditEntry, SmsRow
from cartera.core.store.text_senders import SendingText, no_text_in_flight, sending_texts
from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.plugins.sms.smpp.plugin import NOT_IN_LEDGER, SmppGateway
from tests.conftest import REPO, run_site, write_portfolio, write_sites
from tests.peers.net import wait_until
from tests.plugins.sms.test_smpp_hostile import SMPP_SECRET, FakeSmsc, _config, smpp_site

pytestmark = pytest.mark.abuse

PHONE = "+573001234567"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


@pytest.fixture(autouse=True)
def smpp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*SMPP_SECRET)


@pytest.fixture
def silent_smsc() -> Iterator[FakeSmsc]:
    """An SMSC that binds and takes every submit_sm, answering none: a text stays in flight."""
    smsc = FakeSmsc(lambda _conn, _session: None, answer_submits=False)
    yield smsc
    smsc.close()


def _site(tmp_path: Path, smsc: FakeSmsc, store: str | None, open_node: Callable[..., Node]) -> tuple[Path, Node]:
    site = smpp_site(tmp_path, smsc.port, store)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(site)
    node.creditor_sync().run_once()
    return site, node


def _sending(site: Path, smsc: FakeSmsc) -> subprocess.Popen[str]:
    """``sms`` as a process, once its submit_sm reached the SMSC (unanswered: the text is in flight)."""
    before = smsc.submits
    process = subprocess.Popen(
        [sys.executable, str(REPO / "run_site.py"), "--config", str(site), "--site", "t", "sms", "300 123 4567",
         "hola prueba", "--account", "BCO-1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=site.parent,
        env={**os.environ, SMPP_SECRET[0]: SMPP_SECRET[1]},
    )  # fmt: skip
    try:
        wait_until(lambda: smsc.submits > before or process.poll() is not None, "the text's submit_sm")
    except BaseException:
        process.kill()
        raise
    assert process.poll() is None, process.communicate()
    return process


def _killed(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate()


def _texts(node: Node) -> list[tuple[int, str, str | None, str | None]]:
    with node.db.session() as session:
        rows = session.scalars(select(SmsRow).order_by(SmsRow.id))
        return [(row.id, row.state, row.gateway_id, row.detail) for row in rows]


def _sms_activities(node: Node) -> list[tuple[str | None, str | None]]:
    with node.db.session() as session:
        return [(a.phone, a.outcome) for a in session.scalars(select(ActivityRow).where(ActivityRow.kind == "sms"))]


def _reconcile_audits(node: Node) -> list[dict[str, object]]:
    with node.db.session() as session:
        return list(session.scalars(select(AuditEntry.details).where(AuditEntry.action == "sms.reconcile")))


def test_a_text_whose_sender_was_killed_is_settled_at_the_next_start(
    tmp_path: Path, silent_smsc: FakeSmsc, store: str | None, open_node: Callable[..., Node]
) -> None:
    site, node = _site(tmp_path, silent_smsc, store, open_node)
    _killed(_sending(site, silent_smsc))
    [(message, state, gateway_id, _detail)] = _texts(node)
    assert (state, gateway_id) == ("queued", None)  # what the killed command left
    assert _sms_activities(node) == []

    again = run_site(site, "--log-format", "json", "run", "--duration", "1")
    assert again.returncode == 0, again.stderr

    [(_, state, gateway_id, detail)] = _texts(node)
    assert (state, gateway_id) == ("failed", None)
    assert detail is not None
    assert "part 1/1 in doubt: its sender was killed" in detail  # the submit ledger said it was written
    assert _sms_activities(node) == [(PHONE, "failed")]  # the creditor's export gets it
    assert [(a["message"], a["state"]) for a in _reconcile_audits(node)] == [(message, "failed")]
    events = [json.loads(line) for line in again.stderr.splitlines() if line.startswith("{")]
    assert [e["messages"] for e in events if e["event"] == "sms.reconciling"] == [[message]]
    assert "reconciled   1 texts a killed sender left queued: 1 failed" in again.stdout, again.stdout
    assert "1 queued" not in again.stdout


def test_a_text_an_sms_command_is_still_sending_is_left_to_it(
    tmp_path: Path, silent_smsc: FakeSmsc, store: str | None, open_node: Callable[..., Node]
) -> None:
    """The node starting beside a live ``sms`` command of its site leaves the command's text alone; once the
    command is killed, the node's next look settles it."""
    site, node = _site(tmp_path, silent_smsc, store, open_node)
    sending = _sending(site, silent_smsc)
    try:
        beside = run_site(site, "--log-format", "json", "run", "--duration", "1")
        assert beside.returncode == 0, beside.stderr
        assert [text[1:3] for text in _texts(node)] == [("queued", None)]
        assert _reconcile_audits(node) == []
        assert '"event": "sms.reconcile_deferred"' in beside.stderr
        assert node.texts.reconcile_texts() is None  # the periodic look, too
        assert sending.poll() is None
    finally:
        _killed(sending)
    [(message, *_)] = _texts(node)
    assert _settled_once_released(node) == [message]
    assert [text[1] for text in _texts(node)] == ["failed"]
    assert _sms_activities(node) == [(PHONE, "failed")]
    assert node.adapter("sms", SmsGateway).check().ok  # bound before the node closes: no stop mid-bind


def _settled_once_released(node: Node) -> list[int] | None:
    """The node's look once the killed command's lock is gone: PostgreSQL drops a dead client's advisory lock only
    when its backend sees the connection closed, a moment after the kill (the node's next look, a minute later,
    is as patient)."""
    deadline = time.monotonic() + 30
    while (settled := node.texts.reconcile_texts()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return settled


def test_a_gateway_that_cannot_tell_settles_it_failed_as_unknown(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """The outbox (as Kannel) keeps no record to ask: the text is failed, its detail saying it is unknown."""
    site = write_sites(tmp_path)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(site)
    node.creditor_sync().run_once()
    sent = node.texts.send_sms(phone=None, text="enviado", account="BCO-1", actor="test")
    now = node.clock.now()
    with node.db.session() as session:  # as a sender killed between the row and the gateway's answer leaves it
        left = SmsRow(site="t", account_id=None, phone=PHONE, text="en vuelo", state="queued", created_at=now,
                      updated_at=now)  # fmt: skip
        session.add(left)
        session.flush()
        left_id = left.id
        other_site = SmsRow(site="u", phone=PHONE, text="de otro sitio", state="queued", created_at=now, updated_at=now)
        session.add(other_site)
    before = {row[0]: row[1:] for row in _texts(node)}
    assert node.texts.reconcile_texts() == [left_id]
    texts = {row[0]: row[1:] for row in _texts(node)}
    assert texts[left_id] == ("failed", None, KILLED_WHILE_SENDING)
    assert texts[sent.message_id] == before[sent.message_id]  # a text whose answer was stored is not touched
    assert texts[other_site.id][0] == "queued"  # another site's is its node's
    assert node.texts.reconcile_texts() == []

    node.texts.on_delivery(DeliveryReport(SmsState.SUBMITTED, "k-7", node.clock.now(), left_id))  # it went
    assert _texts(node)[1:2] == [(left_id, "submitted", "k-7", f"reported submitted after its send was given up "
                                  f"{KILLED_WHILE_SENDING}")]  # fmt: skip
    node.texts.on_delivery(DeliveryReport(SmsState.DELIVERED, "k-7", node.clock.now(), left_id))
    assert _texts(node)[1][1:3] == ("delivered", "k-7")  # its receipt tells at last


def _left_by_a_killed_sender(tmp_path: Path, open_node: Callable[..., Node]) -> tuple[Node, int]:
    """A node on the outbox (which cannot tell what became of a text) with one text of account BCO-1 sent, and one
    ``queued`` as a sender killed between the row and the gateway's answer leaves it (its id)."""
    site = write_sites(tmp_path)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(site)
    node.creditor_sync().run_once()
    sent = node.texts.send_sms(phone=None, text="enviado", account="BCO-1", actor="test")
    now = node.clock.now()
    with node.db.session() as session:
        account_id = session.get_one(SmsRow, sent.message_id).account_id
        left = SmsRow(site="t", account_id=account_id, phone=PHONE, text="en vuelo", state="queued", created_at=now,
                      updated_at=now)  # fmt: skip
        session.add(left)
        session.flush()
        return node, left.id


@pytest.mark.parametrize("first", ["report", "settle"])
@pytest.mark.parametrize("reported", [SmsState.DELIVERED, SmsState.SUBMITTED])
def test_a_text_settled_unknown_gets_the_activity_its_later_report_tells(
    tmp_path: Path, open_node: Callable[..., Node], first: str, reported: SmsState
) -> None:
    """Round 27 C-F1: a killed sender's text the gateway cannot tell about (Kannel, the outbox) is settled failed as
    unknown with a failed SMS activity (what the creditor's export reads). Its report coming after the settle made the
    row delivered but left the activity failed, while the same report coming before made both delivered: the export
    depended on timing. Settled unknown, it is as a text given up in doubt: the report that tells makes its activity."""
    node, left_id = _left_by_a_killed_sender(tmp_path, open_node)
    before = _sms_activities(node)
    report = DeliveryReport(reported, "k-8", node.clock.now(), left_id)
    if first == "report":
        node.texts.on_delivery(report)
        assert node.texts.reconcile_texts() == [left_id]
    else:
        assert node.texts.reconcile_texts() == [left_id]
        assert _sms_activities(node) == [*before, (PHONE, "failed")]
        node.texts.on_delivery(report)
    [(_id, state, gateway_id, _detail)] = [row for row in _texts(node) if row[0] == left_id]
    assert (state, gateway_id) == (reported.value, "k-8")
    assert _sms_activities(node) == [*before, (PHONE, reported.value)]  # the row and the export agree

    # once told, later reports follow the usual rules: a stale SUBMITTED never moves a final state back
    node.texts.on_delivery(DeliveryReport(SmsState.DELIVERED, "k-8", node.clock.now(), left_id))
    node.texts.on_delivery(DeliveryReport(SmsState.SUBMITTED, "k-8", node.clock.now(), left_id))
    assert [row[1] for row in _texts(node) if row[0] == left_id] == ["delivered"]
    assert _sms_activities(node) == [*before, (PHONE, reported.value)]


@pytest.mark.parametrize("stale", ["after the settle", "before the settle"])
def test_a_failure_reported_before_the_settle_stays_final(
    tmp_path: Path, open_node: Callable[..., Node], stale: str
) -> None:
    """Round 28 C-F1: a killed sender's text reported failed before the node settled it kept the settle's plain
    "unknown" detail, so a stale "accepted" report after was taken as the one that tells at last: the row and its
    activity went back to submitted, and the creditor's export said a text never delivered went. A text a report
    answered before the settle is answered: later reports follow the usual rules."""
    node, left_id = _left_by_a_killed_sender(tmp_path, open_node)
    before = _sms_activities(node)
    accepted = DeliveryReport(SmsState.SUBMITTED, "k-9", node.clock.now(), left_id)
    if stale == "before the settle":
        node.texts.on_delivery(accepted)
    node.texts.on_delivery(DeliveryReport(SmsState.FAILED, "k-9", node.clock.now(), left_id))
    assert node.texts.reconcile_texts() == [left_id]
    node.texts.on_delivery(accepted)
    assert [row[1:3] for row in _texts(node) if row[0] == left_id] == [("failed", "k-9")]
    assert _sms_activities(node) == [*before, (PHONE, "failed")]


def test_the_smpp_ledger_says_what_became_of_each_text(tmp_path: Path) -> None:
    gateway = SmppGateway(_config(9), CapturingContext(tmp_path / "data"))
    ledger = gateway._ledger
    ledger.open()
    try:
        ledger.sent(1, 1, 2)
        ledger.answered(1, 1, 2, 0, "smsc-1")
        ledger.sent(1, 2, 2)
        ledger.answered(1, 2, 2, 0, "smsc-2")  # accepted whole
        ledger.sent(2, 1, 1)
        ledger.answered(2, 1, 1, 0x45, "")  # refused
        ledger.sent(3, 1, 2)
        ledger.answered(3, 1, 2, 0, "smsc-3")  # its second part never written
        messages = [SmsMessage(n, "t", PHONE, "hola") for n in (1, 2, 3, 4)]
        settled = {r.message_id: (r.state, r.gateway_id, r.detail) for r in gateway.settle(messages)}
    finally:
        ledger.close()
    assert settled[1][:2] == (SmsState.SUBMITTED, "smsc-1")  # its receipts will find it
    assert settled[2][:2] == (SmsState.FAILED, None)
    assert "SMSC refused part 1/1" in str(settled[2][2])
    assert settled[3][:2] == (SmsState.FAILED, "smsc-3")
    assert "part 2/2 not submitted" in str(settled[3][2])
    assert settled[4] == (SmsState.FAILED, None, NOT_IN_LEDGER)


#: Ends every backend holding an advisory lock in the test's database (as a restart or a dropped connection would).
_KILL_LOCK_HOLDERS = text(
    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


class _HeldGateway:
    """A gateway whose sends wait until :attr:`release` is set, then answer accepted with a gateway id."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.waiting = 0

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        with self.lock:
            self.waiting += 1
        self.release.wait(60)
        return SmsSubmitResult(message.message_id, SmsState.SUBMITTED, f"gw-{message.message_id}", "1 part(s)")

    def settle(self, messages: list[SmsMessage]) -> list[SmsSubmitResult]:
        return SmsGateway.settle(cast(SmsGateway[Any], self), messages)


def _held_node(tmp_path: Path, store: str, open_node: Callable[..., Node]) -> tuple[Node, _HeldGateway]:
    site = write_sites(tmp_path, database=store)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(site)
    node.creditor_sync().run_once()
    gateway = _HeldGateway()
    node.texts.sms = lambda: cast(SmsGateway[Any], gateway)
    return node, gateway


def _sends(node: Node, count: int) -> list[threading.Thread]:
    threads = [
        threading.Thread(
            target=node.texts.send_sms, kwargs={"phone": None, "text": f"hola {n}", "account": "BCO-1", "actor": "test"}
        )
        for n in range(count)
    ]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.postgres
def test_texts_in_flight_hold_no_connection_of_the_store_pool(
    tmp_path: Path, postgres_url: str, open_node: Callable[..., Node]
) -> None:
    """Round 22 C-F3: each text waiting on its gateway held a pool connection (the senders' lock's): a slow SMSC
    starved the node's store."""
    node, gateway = _held_node(tmp_path, postgres_url, open_node)
    threads = _sends(node, 6)
    try:
        wait_until(lambda: gateway.waiting == 6, "six texts at the gateway")
        assert cast(QueuePool, node.db.engine.pool).checkedout() == 0
        assert node.texts.reconcile_texts() is None  # the senders' lock is held all the same
    finally:
        gateway.release.set()
        for thread in threads:
            thread.join()
    assert sorted(text[1] for text in _texts(node)) == ["submitted"] * 6
    assert node.texts.reconcile_texts() == []


@pytest.mark.postgres
def test_a_sender_whose_lock_connection_was_dropped_has_the_last_word(
    tmp_path: Path, postgres_url: str, open_node: Callable[..., Node]
) -> None:
    """Round 22 C-F4: the lock's connection dropped mid-send, the node settled the live text as killed, and the
    sender's real answer (accepted, its gateway id) was thrown away. It replaces the guess, audited, and the one
    SMS activity tells it."""
    node, gateway = _held_node(tmp_path, postgres_url, open_node)
    [thread] = _sends(node, 1)
    try:
        wait_until(lambda: gateway.waiting == 1, "the text at the gateway")
        with node.db.engine.connect() as conn:
            conn.execute(_KILL_LOCK_HOLDERS)
        deadline = time.monotonic() + 30
        while (settled := node.texts.reconcile_texts()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        [(message, state, _, detail)] = _texts(node)
        assert settled == [message]
        assert (state, detail) == ("failed", KILLED_WHILE_SENDING)
        assert _sms_activities(node) == [(PHONE, "failed")]
    finally:
        gateway.release.set()
        thread.join()
    assert _texts(node) == [(message, "submitted", f"gw-{message}", "1 part(s)")]
    assert _sms_activities(node) == [(PHONE, "submitted")]  # the one activity, now right
    with node.db.session() as session:
        answers = list(session.scalars(select(AuditEntry.details).where(AuditEntry.action == "sms.sender_answer")))
    assert [(a["message"], a["state"], a["gateway_id"]) for a in answers] == [(message, "submitted", f"gw-{message}")]
    assert node.texts.reconcile_texts() == []


@pytest.mark.postgres
def test_a_lost_senders_lock_is_seen_and_taken_again_before_the_gateway_call(postgres_url: str) -> None:
    """Round 22 C-F4: the lock's connection dropped, the sender went on unprotected without knowing."""
    db = Database(postgres_url)
    try:
        with sending_texts(db, "t") as sending:
            assert not sending.lock_retaken()  # held
            with db.engine.connect() as conn:
                conn.execute(_KILL_LOCK_HOLDERS)
            deadline = time.monotonic() + 30
            while not _free(db) and time.monotonic() < deadline:  # the backend goes a moment after
                time.sleep(0.05)
            assert _free(db)  # lost: a settler could take it
            assert sending.lock_retaken()
            assert not _free(db)  # held again
            assert not sending.lock_retaken()
        assert _free(db)  # the last text's answer stored: let go
    finally:
        db.dispose()


def _free(db: Database) -> bool:
    with no_text_in_flight(db, "t") as quiet:
        return quiet


def test_a_text_settled_while_its_lock_was_lost_is_not_sent(
    tmp_path: Path, open_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its sender saw its lock lost and taken again, and the node had settled its text meanwhile: it sends nothing
    (the text is the settle's) and says what the settle stored."""
    site = write_sites(tmp_path)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(site)
    node.creditor_sync().run_once()
    gateway = _HeldGateway()
    gateway.release.set()
    node.texts.sms = lambda: cast(SmsGateway[Any], gateway)

    class Retaken(SendingText):
        def lock_retaken(self) -> bool:
            node.texts._reconcile_texts(node.texts.sms)  # type: ignore[arg-type]  # the settler, in between
            return True

    @contextmanager
    def sending(_db: Database, _site: str) -> Iterator[SendingText]:
        yield Retaken()

    monkeypatch.setattr(texts_module, "sending_texts", sending)
    result = node.texts.send_sms(phone=None, text="hola", account="BCO-1", actor="test")
    assert (result.state, result.gateway_id, result.detail) == (SmsState.FAILED, None, KILLED_WHILE_SENDING)
    assert gateway.waiting == 0  # not sent
    assert _texts(node) == [(result.message_id, "failed", None, KILLED_WHILE_SENDING)]
    assert _sms_activities(node) == [(PHONE, "failed")]


def test_a_killed_senders_text_a_receipt_moved_on_is_still_settled(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    """Round 23 C-F10: the receipt reached the node before its reconcile and moved the queued row on; the reconcile
    looked at queued rows only, so the text never got its SMS activity (never exported) nor its audit entry. What
    tells a killed sender's text is that no answer of its sender was stored, whatever state a receipt gave it."""
    node, left_id = _left_by_a_killed_sender(tmp_path, open_node)
    node.texts.on_delivery(DeliveryReport(SmsState.DELIVERED, "k-9", node.clock.now(), left_id))  # the receipt first
    assert _texts(node)[1] == (left_id, "delivered", "k-9", None)
    before = _sms_activities(node)

    assert node.texts.reconcile_texts() == [left_id]
    # the receipt's state is kept, and the detail says a report answered it (no longer unknown)
    assert _texts(node)[1] == (left_id, "delivered", "k-9", f"reported delivered after its send was given up "
                               f"{KILLED_WHILE_SENDING}")  # fmt: skip
    assert _sms_activities(node) == [*before, (PHONE, "delivered")]  # the creditor's export gets it
    assert [(a["message"], a["state"]) for a in _reconcile_audits(node)] == [(left_id, "delivered")]
    assert node.texts.reconcile_texts() == []  # once


class _AcceptedLateGateway:
    """An SMPP gateway that gives its text up in doubt, the SMSC's late acceptance (reported as submitted with its
    id, ``smpp.accepted_late``) reaching the store before the sender's answer (it is on the gateway's reader thread,
    the sender may wait for the store's write lock): :attr:`first` says which comes first. A text of ``parts``
    parts is in doubt on its last: its answer carries part 1's SMSC id (the text's), a 1-part text's none."""

    def __init__(self, node: Node, first: str, parts: int = 1) -> None:
        self.node, self.first, self.parts = node, first, parts

    def late_acceptance(self, message_id: int) -> None:
        report = DeliveryReport(SmsState.SUBMITTED, "SMSC-4", self.node.clock.now(), message_id, "late submit_sm_resp")
        self.node.texts.on_delivery(report)

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        if self.first == "report":
            self.late_acceptance(message.message_id)
        known = "SMSC-4" if self.parts > 1 else None  # part 1 was accepted
        where = f"part {self.parts}/{self.parts}"
        return SmsSubmitResult(message.message_id, SmsState.FAILED, known, f"{IN_DOUBT}{where} written, no answer")

    def settle(self, messages: list[SmsMessage]) -> list[SmsSubmitResult]:
        return SmsGateway.settle(cast(SmsGateway[Any], self), messages)


def _accepted_late(
    tmp_path: Path, open_node: Callable[..., Node], first: str, parts: int
) -> tuple[Node, SmsSubmitResult]:
    """A node whose text of account BCO-1 (``parts`` parts) its gateway gave up in doubt and the SMSC accepted late,
    the acceptance reaching the store ``first`` ("report": before the sender's answer, "answer": after it)."""
    site = write_sites(tmp_path)
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(site)
    node.creditor_sync().run_once()
    gateway = _AcceptedLateGateway(node, first, parts)
    node.texts.sms = lambda: cast(SmsGateway[Any], gateway)
    result = node.texts.send_sms(phone=None, text="hola tarde " * 15 * parts, account="BCO-1", actor="test")
    if first == "answer":
        gateway.late_acceptance(result.message_id)
    return node, result


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("first", ["report", "answer"])
def test_a_late_acceptance_is_kept_whichever_reaches_the_store_first(
    tmp_path: Path, open_node: Callable[..., Node], first: str, parts: int
) -> None:
    """Round 24 C-F3: the SMSC's late acceptance stored before the sender's in-doubt answer was then overwritten
    by it: the text stayed submitted with its SMSC id erased (its receipts refused as unknown) and its SMS activity
    failed (the creditor's export said it never went). Either order ends the same: submitted, the SMSC's id, one
    activity submitted. Round 25 C-F1: so does a multi-part text in doubt on its last part, whose answer carries
    part 1's id (its activity stayed failed in either order, the late acceptance after the answer dropped)."""
    node, result = _accepted_late(tmp_path, open_node, first, parts)
    [(message, state, gateway_id, detail)] = _texts(node)
    assert (message, state, gateway_id) == (result.message_id, "submitted", "SMSC-4")
    assert IN_DOUBT in (detail or "")  # the sender's answer is stored (no reconcile)
    assert not (detail or "").startswith(IN_DOUBT)  # no longer in doubt: the late acceptance told (round 26 C-F2)
    assert _sms_activities(node) == [(PHONE, "submitted")]
    # the sender says what it knew when it stored its answer (an ``sms`` command prints it)
    known = "SMSC-4" if parts > 1 else None
    answered = (SmsState.SUBMITTED, "SMSC-4") if first == "report" else (SmsState.FAILED, known)
    assert (result.state, result.gateway_id) == answered
    node.texts.on_delivery(DeliveryReport(SmsState.DELIVERED, "SMSC-4", node.clock.now(), message, "DELIVRD"))
    assert _texts(node)[0][1:3] == ("delivered", "SMSC-4")  # its receipt is taken
    assert node.texts.reconcile_texts() == []


@pytest.mark.parametrize("parts", [1, 2])
@pytest.mark.parametrize("first", ["report", "answer"])
def test_a_text_accepted_late_is_no_longer_in_doubt_so_a_stale_report_never_reopens_it(
    tmp_path: Path, open_node: Callable[..., Node], first: str, parts: int
) -> None:
    """Round 26 C-F2 (regression of round 25 C-F1's fix): the in-doubt state was read from the detail alone and the
    detail was never changed, so a text once in doubt stayed in doubt: after its receipt made it failed, a stale
    SUBMITTED report (receipts overtake each other) moved it back from a final state to submitted. Once a report told
    what became of it, it is a text like any other."""
    node, result = _accepted_late(tmp_path, open_node, first, parts)
    assert _texts(node)[0][1:3] == ("submitted", "SMSC-4")

    def report(state: SmsState) -> None:
        node.texts.on_delivery(DeliveryReport(state, "SMSC-4", node.clock.now(), result.message_id, state.value))

    report(SmsState.FAILED)
    assert _texts(node)[0][1:3] == ("failed", "SMSC-4")
    report(SmsState.SUBMITTED)  # stale: the SMSC's acceptance after its final receipt
    assert _texts(node)[0][1:3] == ("failed", "SMSC-4")  # a final state is never moved back to submitted
    report(SmsState.DELIVERED)
    report(SmsState.SUBMITTED)
    assert _texts(node)[0][1:3] == ("delivered", "SMSC-4")
    assert _sms_activities(node) == [(PHONE, "submitted")]  # set once, by the late acceptance
