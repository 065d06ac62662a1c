"""An SMSC acceptance without a message id, a response of another command carrying a submit's sequence number, and
submits never answered on a live session (round 24 C-F2, C-F6).

C-F2: an ESME_ROK submit_sm_resp with an empty message_id (or an enquire_link_resp with the submit's sequence number,
taken for its answer) was written to the ledger as ``accepted`` with ``"id":""``, which the reader refuses: the node
could not start, every ``sms``/``check`` failed, and ledgers written before the check already held such lines.
C-F6: the waiter of every submit left unanswered stayed registered for the session's life (memory grew per text).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cartera.core.adapters import IN_DOUBT
from cartera.core.models import SmsMessage, SmsState
from cartera.core.testing.context import CapturingContext
from cartera.plugins.sms.smpp import client as smpp_client
from cartera.plugins.sms.smpp.ledger import SubmitLedger, text_digest
from cartera.plugins.sms.smpp.plugin import LEDGER_FILE, SmppGateway
from tests.peers.net import wait_until
from tests.plugins.sms.test_smpp_hostile import ENQUIRE_LINK, RESPONSE, SUBMIT_SM, FakeSmsc, _config, pdu

pytestmark = pytest.mark.abuse


class NoIdSmsc(FakeSmsc):
    """Accepts every submit_sm with an empty message_id."""

    def __init__(self) -> None:
        super().__init__(lambda _conn, _session: None)

    def submit_response(self, sequence: int, number: int) -> bytes:
        return pdu(SUBMIT_SM | RESPONSE, sequence, b"\x00")


class WrongCommandSmsc(FakeSmsc):
    """Answers every submit_sm with an enquire_link_resp carrying its sequence number, status 0."""

    def __init__(self) -> None:
        super().__init__(lambda _conn, _session: None)

    def submit_response(self, sequence: int, number: int) -> bytes:
        return pdu(ENQUIRE_LINK | RESPONSE, sequence)


@pytest.fixture
def context(tmp_path: Path) -> CapturingContext:
    return CapturingContext(tmp_path / "data")


@pytest.fixture
def started() -> Iterator[Callable[..., SmppGateway]]:
    made: list[Any] = []

    def start(smsc: FakeSmsc, context: CapturingContext, **overrides: Any) -> SmppGateway:
        made.append(smsc)
        gateway = SmppGateway(_config(smsc.port, **overrides), context)
        gateway.start()
        made.append(gateway)
        assert gateway._link.wait_bound(15)
        return gateway

    yield start
    for thing in reversed(made):
        if isinstance(thing, SmppGateway):
            thing.stop()
        else:
            thing.close()


def _message(message_id: int, text: str = "hola") -> SmsMessage:
    return SmsMessage(message_id=message_id, site="test", phone="+573001234567", text=text)


def _ledger(path: Path) -> SubmitLedger:
    ledger = SubmitLedger(path, fsync=False, retention_s=3600, log=logging.getLogger("test.ledger"))
    ledger.open()
    return ledger


def _events(context: CapturingContext) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (context.data_dir / LEDGER_FILE).read_text().splitlines()]


# --- C-F2 reading: a line an earlier version wrote never stops the node ------------------------------------------


def test_an_old_acceptance_with_an_empty_id_is_read_as_accepted_without_an_id(tmp_path: Path) -> None:
    """Versions before the per-kind check wrote an SMSC's empty id as ``"id":""``; opening such a ledger raised."""
    path = tmp_path / LEDGER_FILE
    message = _message(7)
    digest = text_digest(message)
    path.write_text(
        f'{{"e":"sent","m":7,"p":1,"n":1,"t":9e9,"d":"{digest}"}}\n'
        '{"e":"accepted","m":7,"p":1,"n":1,"t":9e9,"id":""}\n'
        '{"e":"sent","m":8,"p":1,"n":1,"t":9e9}\n'
        '{"e":"accepted","m":8,"p":1,"n":1,"t":9e9,"id":""}\n'
    )
    for _ in range(2):  # as written, then as compacted by the first open
        ledger = _ledger(path)
        record = ledger.known(7, digest)
        assert record is not None
        assert record.parts[1].accepted
        assert record.parts[1].smsc_id is None
        assert record.gateway_id is None
        assert "" not in ledger._by_smsc_id  # neither text is bound to "" (nor warned as given twice)
        assert not ledger._reused
        ledger.close()
    assert all(json.loads(line).get("id") != "" for line in path.read_text().splitlines())


def test_a_node_settles_a_text_an_old_version_recorded_as_accepted_with_an_empty_id(
    context: CapturingContext, started: Callable[..., SmppGateway]
) -> None:
    context.data_dir.mkdir(parents=True, exist_ok=True)
    message = _message(11)
    (context.data_dir / LEDGER_FILE).write_text(
        f'{{"e":"sent","m":11,"p":1,"n":1,"t":9e9,"d":"{text_digest(message)}"}}\n'
        '{"e":"accepted","m":11,"p":1,"n":1,"t":9e9,"id":""}\n'
    )
    gateway = started(NoIdSmsc(), context)
    [settled] = gateway.settle([message])
    assert (settled.state, settled.gateway_id) == (SmsState.SUBMITTED, None)


# --- C-F2 writing: what the node records, it can read again ------------------------------------------------------


def test_an_acceptance_without_an_id_is_recorded_as_accepted_without_one(
    context: CapturingContext, started: Callable[..., SmppGateway], caplog: pytest.LogCaptureFixture
) -> None:
    smsc = NoIdSmsc()
    gateway = started(smsc, context)
    first, second = gateway.send(_message(101, "uno")), gateway.send(_message(102, "dos"))
    assert [(r.state, r.gateway_id) for r in (first, second)] == [(SmsState.SUBMITTED, None)] * 2
    accepted = [e for e in _events(context) if e["e"] == "accepted"]
    assert [e["m"] for e in accepted] == [101, 102]
    assert all(e["id"] is None for e in accepted)
    assert "smpp.smsc_id_reused" not in caplog.text  # no id, nothing to reuse
    gateway.stop()
    again = started(smsc, context)  # the node (or an sms command) opens the ledger it wrote
    assert again.send(_message(200, "tres")).state is SmsState.SUBMITTED
    assert smsc.submits == 3


def test_a_response_of_another_command_with_a_submits_sequence_is_not_its_answer(
    context: CapturingContext, started: Callable[..., SmppGateway], caplog: pytest.LogCaptureFixture
) -> None:
    smsc = WrongCommandSmsc()
    gateway = started(smsc, context, response_timeout_s=0.3, submit_timeout_s=1)
    result = gateway.send(_message(101))
    assert result.state is SmsState.FAILED
    assert result.detail.startswith(IN_DOUBT), result.detail  # written, never answered: the SMSC may have it
    assert [e["e"] for e in _events(context)] == ["sent"]
    assert "smpp.unmatched_response" in caplog.text
    gateway.stop()
    again = started(smsc, context)
    assert again._ledger.known(101) is not None


# --- C-F6: unanswered submits are not kept for the session's life -------------------------------------------------


class SilentSmsc(FakeSmsc):
    """Binds, answers enquire_link, never answers a submit_sm until :meth:`answer` sends one response."""

    def __init__(self) -> None:
        self.conn: socket.socket | None = None
        super().__init__(self._bound, answer_submits=False)

    def _bound(self, conn: socket.socket, _session: int) -> None:
        self.conn = conn

    def answer(self, sequence: int) -> None:
        assert self.conn is not None
        self.conn.sendall(pdu(SUBMIT_SM | RESPONSE, sequence, b"late-%d\x00" % sequence))


def test_unanswered_submits_stay_registered_only_up_to_a_bound(
    context: CapturingContext,
    started: Callable[..., SmppGateway],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(smpp_client, "LATE_WAITERS_MAX", 5)
    smsc = SilentSmsc()
    gateway = started(smsc, context, response_timeout_s=0.01, messages_per_second=10000, burst=10000)
    for message_id in range(1, 21):
        assert gateway.send(_message(message_id, f"t{message_id}")).detail.startswith(IN_DOUBT)
    assert len(gateway._link._pending) <= 5  # was 20: one per text, for the session's life
    # the newest still get their late answer: the 20th submit_sm (sequence 21 after the bind's 1)
    smsc.answer(21)
    context.wait_until(lambda: len(context.deliveries) >= 1, 15, "the late acceptance")
    assert [(r.message_id, r.gateway_id) for r in context.deliveries] == [(20, "late-21")]


def test_unanswered_submits_are_dropped_once_older_than_the_late_horizon(
    context: CapturingContext, started: Callable[..., SmppGateway]
) -> None:
    smsc = SilentSmsc()
    gateway = started(smsc, context, response_timeout_s=0.01)
    link = gateway._link
    now = [1000.0]
    link._clock = lambda: now[0]
    for message_id in (1, 2):
        assert gateway.send(_message(message_id, f"t{message_id}")).detail.startswith(IN_DOUBT)
    assert len(link._pending) == 2  # kept a while: a late answer is still recorded
    now[0] += max(smpp_client.LATE_WAIT_S, link.config.submit_timeout_s) + 1
    wait_until(lambda: not link._pending, "the link's thread to drop the waiters past the horizon")
    assert not link._late


def test_a_keepalive_answered_while_submits_wait_keeps_the_session(
    context: CapturingContext, started: Callable[..., SmppGateway]
) -> None:
    """Matching by command too must not break the keepalive: the session stays bound."""
    smsc = SilentSmsc()
    gateway = started(smsc, context, response_timeout_s=0.2)
    done = threading.Event()
    rounds = [0]
    enquire = gateway._link.enquire

    def probe() -> None:
        for _ in range(3):
            enquire()
            rounds[0] += 1
        done.set()

    threading.Thread(target=probe, daemon=True).start()
    assert done.wait(15)
    assert rounds[0] == 3
    assert smsc.sessions == 1
