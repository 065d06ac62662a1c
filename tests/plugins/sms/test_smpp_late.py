"""An SMSC slower than ``response_timeout_s`` (round 23 C-F9, C-F2): with ``resubmit_in_doubt`` one text went again
every ``response_timeout_s`` for ever (each copy accepted and sent to the debtor, ``send`` never returning), and a
late submit_sm_resp that accepted an in-doubt text, and its receipt, never reached the store (it stayed failed)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cartera.core.adapters import IN_DOUBT
from cartera.core.models import SmsState, SmsSubmitResult
from cartera.core.store.schema import ActivityRow, SmsRow
from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.plugins.sms.smpp.client import InDoubt
from cartera.plugins.sms.smpp.plugin import SmppGateway
from tests.conftest import write_portfolio
from tests.peers.net import wait_until
from tests.plugins.sms.test_smpp_hostile import (
    DELIVER_SM,
    RESPONSE,
    SMPP_SECRET,
    SUBMIT_SM,
    FakeSmsc,
    _config,
    _message,
    pdu,
    smpp_site,
)
from tests.plugins.sms.test_smpp_settings import _sent_at, on_held_clock

pytestmark = pytest.mark.abuse


class LateSmsc(FakeSmsc):
    """Holds the submit_sm_resp of every submit_sm until :meth:`release` sends them (late); after that it answers
    at once. :meth:`receipt` sends a DELIVRD receipt, :meth:`drop` cuts the session."""

    def __init__(self) -> None:
        self._conn: socket.socket | None = None
        self._held: list[bytes] = []
        self._holding = True
        self._hold_lock = threading.Lock()
        super().__init__(self._bound)

    def _bound(self, conn: socket.socket, _session: int) -> None:
        self._conn = conn

    def submit_response(self, sequence: int, number: int) -> bytes:
        answer = super().submit_response(sequence, number)
        with self._hold_lock:
            if self._holding:
                self._held.append(answer)
                return b""
        return answer

    def release(self) -> None:
        with self._hold_lock:
            self._holding = False
            held, self._held = self._held, []
        assert self._conn is not None
        self._conn.sendall(b"".join(held))

    def receipt(self, smsc_id: str, sequence: int = 900) -> None:
        short = f"id:{smsc_id} sub:001 dlvrd:001 submit date:2612060000 done date:2612060001 stat:DELIVRD err:000 text:"
        body = b"\x00\x01\x01573001234567\x00\x05\x0085432\x00" + b"\x04\x00\x00\x00\x00\x00\x00"
        assert self._conn is not None
        self._conn.sendall(pdu(DELIVER_SM, sequence, body + bytes([0, 0, len(short)]) + short.encode()))

    def drop(self) -> None:
        with self._hold_lock:
            self._holding = False
            self._held = []
        assert self._conn is not None
        with suppress(OSError):
            self._conn.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def smsc() -> Iterator[LateSmsc]:
    smsc = LateSmsc()
    yield smsc
    smsc.close()


@pytest.fixture
def context(tmp_path: Path) -> CapturingContext:
    return CapturingContext(tmp_path / "data")


@pytest.fixture
def gateway_on() -> Iterator[Callable[..., tuple[SmppGateway, threading.Event]]]:
    """A started gateway, and an event set once a submit of it was in doubt (its response_timeout_s passed)."""
    started: list[SmppGateway] = []

    def start(smsc: FakeSmsc, context: CapturingContext, **overrides: Any) -> tuple[SmppGateway, threading.Event]:
        gateway = SmppGateway(_config(smsc.port, response_timeout_s=0.2, **overrides), context)
        gateway.start()
        started.append(gateway)
        in_doubt = threading.Event()
        submit = gateway._link.submit

        def spying(*args: Any, **kwargs: Any) -> Any:
            try:
                return submit(*args, **kwargs)
            except InDoubt:
                in_doubt.set()
                raise

        gateway._link.submit = spying  # type: ignore[method-assign]
        return gateway, in_doubt

    yield start
    for gateway in started:
        gateway.stop()


def _sending(gateway: SmppGateway) -> tuple[threading.Thread, list[SmsSubmitResult]]:
    results: list[SmsSubmitResult] = []
    thread = threading.Thread(target=lambda: results.append(gateway.send(_message("una sola vez"))), daemon=True)
    thread.start()
    return thread, results


def test_a_late_answer_is_waited_for_and_the_text_goes_once(
    smsc: LateSmsc, context: CapturingContext, gateway_on: Callable[..., tuple[SmppGateway, threading.Event]]
) -> None:
    gateway, in_doubt = gateway_on(smsc, context, resubmit_in_doubt=True, submit_timeout_s=120)
    thread, results = _sending(gateway)
    assert in_doubt.wait(30)  # response_timeout_s passed on a live session
    smsc.release()  # the SMSC answers it, late (and any copy at once)
    thread.join(30)
    assert not thread.is_alive()
    [result] = results
    assert (result.state, result.gateway_id) == (SmsState.SUBMITTED, "msg2")  # the one submit_sm (sequence 2)
    assert smsc.submits == 1  # no copy reached the debtor


def test_an_unanswered_text_is_given_up_at_submit_timeout_s_not_resubmitted_on_a_live_session(
    smsc: LateSmsc, context: CapturingContext, gateway_on: Callable[..., tuple[SmppGateway, threading.Event]]
) -> None:
    gateway, in_doubt = gateway_on(smsc, context, resubmit_in_doubt=True, submit_timeout_s=1)
    thread, results = _sending(gateway)
    thread.join(30)  # submit_timeout_s bounds it (the red team's send never returned)
    assert not thread.is_alive()
    [result] = results
    assert result.state is SmsState.FAILED
    assert result.detail.startswith(IN_DOUBT), result.detail
    assert smsc.submits == 1
    assert in_doubt.is_set()


def test_an_in_doubt_part_is_resubmitted_once_after_the_rebind(
    smsc: LateSmsc, context: CapturingContext, gateway_on: Callable[..., tuple[SmppGateway, threading.Event]]
) -> None:
    """As documented: a response lost with the connection, the part goes again on the next session."""
    gateway, in_doubt = gateway_on(smsc, context, resubmit_in_doubt=True, submit_timeout_s=120)
    thread, results = _sending(gateway)
    assert in_doubt.wait(30)
    smsc.drop()
    thread.join(30)
    assert not thread.is_alive()
    [result] = results
    assert result.state is SmsState.SUBMITTED
    assert smsc.submits == 2
    assert smsc.sessions == 2


def test_a_late_acceptance_and_its_receipt_are_reported(
    smsc: LateSmsc, context: CapturingContext, gateway_on: Callable[..., tuple[SmppGateway, threading.Event]]
) -> None:
    """By default the in-doubt part is not resubmitted and the send fails; the SMSC's late acceptance tells at last,
    then its receipt."""
    gateway, _ = gateway_on(smsc, context)
    message = _message("hola tarde")
    result = gateway.send(message)
    assert (result.state, result.gateway_id) == (SmsState.FAILED, None)
    assert result.detail.startswith(IN_DOUBT), result.detail
    smsc.release()
    context.wait_until(lambda: len(context.deliveries) >= 1, 15, "the late acceptance")
    smsc.receipt("msg2")
    context.wait_until(lambda: len(context.deliveries) >= 2, 15, "the receipt")
    assert [(r.state, r.gateway_id, r.message_id) for r in context.deliveries] == [
        (SmsState.SUBMITTED, "msg2", message.message_id),
        (SmsState.DELIVERED, "msg2", message.message_id),
    ]
    assert smsc.submits == 1


def _row(node: Node, message_id: int) -> tuple[str, str | None]:
    """The stored state and gateway id of text ``message_id``."""
    with node.db.session() as session:
        text = session.get_one(SmsRow, message_id)
        return text.state, text.gateway_id


def _sms_outcomes(node: Node) -> list[str | None]:
    """The outcome of each SMS activity (what the creditor's export says of the texts)."""
    with node.db.session() as session:
        return list(session.scalars(select(ActivityRow.outcome).where(ActivityRow.kind == "sms")))


def test_a_late_acceptance_reaches_the_store(
    smsc: LateSmsc, tmp_path: Path, open_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The red team's s5: the text stayed failed, no gateway id, its receipt refused as unknown."""
    monkeypatch.setenv(*SMPP_SECRET)
    site = smpp_site(tmp_path, smsc.port)
    site.write_text(site.read_text().replace("response_timeout_s = 60", "response_timeout_s = 0.2"))
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    node = open_node(site)
    node.creditor_sync().run_once()
    result = node.texts.send_sms(phone=None, text="hola tarde", account="BCO-1", actor="test")
    assert result.state is SmsState.FAILED

    assert _row(node, result.message_id) == ("failed", None)
    assert _sms_outcomes(node) == ["failed"]
    smsc.release()
    wait_until(lambda: _row(node, result.message_id) == ("submitted", "msg2"), "the late acceptance in the store")
    assert _sms_outcomes(node) == ["submitted"]  # the creditor's export tells it went
    smsc.receipt("msg2")
    wait_until(lambda: _row(node, result.message_id) == ("delivered", "msg2"), "the receipt in the store")
    assert smsc.submits == 1


class PartTwoLateSmsc(LateSmsc):
    """Answers a text's first submit_sm at once and holds the rest (a 2-part text in doubt on its part 2)."""

    def submit_response(self, sequence: int, number: int) -> bytes:
        if number == 1:
            return FakeSmsc.submit_response(self, sequence, number)
        return super().submit_response(sequence, number)


def test_a_late_acceptance_of_a_multi_part_text_reaches_the_store(
    tmp_path: Path, open_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 25 C-F1: a 2-part text given up in doubt on part 2 failed with part 1's SMSC id, so the late
    acceptance was dropped as a late delivery (row and SMS activity failed) though the text went whole."""
    smsc = PartTwoLateSmsc()
    monkeypatch.setenv(*SMPP_SECRET)
    site = smpp_site(tmp_path, smsc.port)
    site.write_text(site.read_text().replace("response_timeout_s = 60", "response_timeout_s = 0.2"))
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    try:
        node = open_node(site)
        node.creditor_sync().run_once()
        result = node.texts.send_sms(phone=None, text="y" * 200, account="BCO-1", actor="test")  # two parts
        assert (result.state, result.gateway_id) == (SmsState.FAILED, "msg2"), result.detail
        assert result.detail.startswith(f"{IN_DOUBT}part 2/2"), result.detail

        assert _sms_outcomes(node) == ["failed"]
        smsc.release()
        wait_until(lambda: _row(node, result.message_id) == ("submitted", "msg2"), "the late acceptance in the store")
        assert _sms_outcomes(node) == ["submitted"]  # the creditor's export tells it went
        smsc.receipt("msg2", 900)
        smsc.receipt("msg3", 901)
        wait_until(lambda: _row(node, result.message_id) == ("delivered", "msg2"), "the receipts in the store")
        assert smsc.submits == 2
    finally:
        smsc.close()


class ThrottlingSmsc(FakeSmsc):
    """Answers the first ``refusals`` submit_sm with ``status`` (the SMSC asks to slow down), accepts the rest."""

    def __init__(self, status: int, refusals: int = 1) -> None:
        self._status, self._refusals = status, refusals
        super().__init__(lambda _conn, _session: None)

    def submit_response(self, sequence: int, number: int) -> bytes:
        if number <= self._refusals:
            return pdu(SUBMIT_SM | RESPONSE, sequence, b"\x00", status=self._status)
        return super().submit_response(sequence, number)


@pytest.mark.parametrize("status", [0x58, 0x14], ids=["throttled", "queue-full"])
def test_a_text_the_smsc_asks_to_slow_down_for_is_submitted_again_within_submit_timeout_s(
    status: int, context: CapturingContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 24 C-F1: the answer was written to the ledger as refused, and the check at the retry loop's top (for a
    response that came meanwhile) took it as the part's final answer: the text failed at once, never retried."""
    smsc = ThrottlingSmsc(status)
    try:
        with on_held_clock(_config(smsc.port), context, monkeypatch) as (gateway, clock):
            result = gateway.send(_message("despacio"))
    finally:
        smsc.close()
    assert (result.state, result.gateway_id) == (SmsState.SUBMITTED, "msg3"), result.detail  # the second submit_sm
    assert smsc.submits == 2
    assert clock.slept == [1.0]  # the pause before the retry


def test_a_text_throttled_until_submit_timeout_s_fails_as_refused(
    context: CapturingContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    smsc = ThrottlingSmsc(0x58, refusals=1000)
    config = _config(smsc.port, submit_timeout_s=3, messages_per_second=100)
    try:
        with on_held_clock(config, context, monkeypatch) as (gateway, clock):
            result = gateway.send(_message("despacio"))
    finally:
        smsc.close()
    assert result.state is SmsState.FAILED
    assert result.detail.startswith("SMSC refused part 1/1: 0x00000058 Throttling error"), result.detail
    assert smsc.submits == 3  # at the held clock's 0, 1 and 2 s; given up at 3
    assert clock.slept == [1.0, 1.0, 1.0]


def test_the_parts_after_a_throttled_one_keep_the_rate(
    context: CapturingContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 25 C-F2: the SMSC throttled part 1 of three (one part a second); its retry took a turn of its own, 3 s
    on, but parts 2 and 3 went at their turns reserved as the send began, already past: all three within a
    millisecond, right after the SMSC asked to slow down. Each part now goes one interval after the one before."""
    smsc = ThrottlingSmsc(0x58)
    config = _config(smsc.port, messages_per_second=1, burst=1, submit_timeout_s=20)
    try:
        with on_held_clock(config, context, monkeypatch) as (gateway, clock):
            sent = _sent_at(clock, monkeypatch)
            result = gateway.send(_message("x" * 400))  # three parts
    finally:
        smsc.close()
    assert result.state is SmsState.SUBMITTED, result.detail
    assert sent == [1000.0, 1003.0, 1004.0, 1005.0]  # part 1, its retry at its own turn, parts 2 and 3
