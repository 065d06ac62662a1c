"""An SMSC answering a submit_sm with generic_nack (SMPP 3.4 §4.3), round 21 C-F6: that part is refused with the
nack's status and the session goes on; a nack nobody waits for is logged and ignored; a response handler that
raises leaves neither its sender waiting nor the others without their responses."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cartera.core.models import SmsState
from cartera.core.testing.context import CapturingContext
from cartera.plugins.sms.smpp.client import InDoubt
from cartera.plugins.sms.smpp.plugin import LEDGER_FILE, SmppGateway
from tests.peers.net import wait_until
from tests.plugins.sms.test_smpp_hostile import (
    GENERIC_NACK,
    FakeSmsc,
    _config,
    _message,
    _on_first_session,
    pdu,
)

pytestmark = pytest.mark.abuse

ESME_RINVSRCADR = 0x0A  # the red team's nack status: "invalid source address"


class NackingSmsc(FakeSmsc):
    """Answers the submit_sm numbered in ``nacked`` with generic_nack ESME_RINVSRCADR, the others as FakeSmsc. With
    ``hold_first``, the first submit_sm's response is held back and sent right after the second's nack."""

    def __init__(self, nacked: set[int], *, hold_first: bool = False, after_bind: Any = None) -> None:
        super().__init__(after_bind or (lambda _conn, _session: None))
        self.nacked, self.hold_first = nacked, hold_first
        self._held = b""

    def submit_response(self, sequence: int, number: int) -> bytes:
        if self.hold_first and number == 1:
            self._held = super().submit_response(sequence, number)
            return b""
        answer = super().submit_response(sequence, number)
        if number in self.nacked:
            answer = pdu(GENERIC_NACK, sequence, status=ESME_RINVSRCADR)
        held, self._held = self._held, b""
        return answer + held


@pytest.fixture
def context(tmp_path: Path) -> CapturingContext:
    return CapturingContext(tmp_path / "data")


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """SMSCs and gateways a test made, closed and stopped after it."""
    made: list[Any] = []
    yield made
    for thing in reversed(made):
        if isinstance(thing, SmppGateway):
            thing.stop()
        else:
            thing.close()


def _gateway(smsc: FakeSmsc, context: CapturingContext, started: list[Any], **overrides: Any) -> SmppGateway:
    # response_timeout_s far above any run: a nack treated as "no response" would show as a test timing out
    gateway = SmppGateway(_config(smsc.port, response_timeout_s=10, **overrides), context)
    started += [smsc, gateway]
    gateway.start()
    assert gateway._link.wait_bound(15)
    return gateway


def _ledger(context: CapturingContext) -> list[dict[str, Any]]:
    lines = (context.data_dir / LEDGER_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def _events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.getMessage() == name]  # type: ignore[attr-defined]


@pytest.mark.parametrize("resubmit_in_doubt", [False, True])
def test_a_generic_nack_is_the_refusal_of_its_submit_and_the_session_goes_on(
    context: CapturingContext, started: list[Any], caplog: pytest.LogCaptureFixture, resubmit_in_doubt: bool
) -> None:
    smsc = NackingSmsc({1})
    gateway = _gateway(smsc, context, started, resubmit_in_doubt=resubmit_in_doubt)
    refused = _message("hola nack")
    with caplog.at_level(logging.INFO):
        result = gateway.send(refused)
        accepted = gateway.send(_message("hola de nuevo"))
    assert result.state is SmsState.FAILED
    assert result.detail == "SMSC refused part 1/1: 0x0000000A Invalid Source Address"
    assert accepted.state is SmsState.SUBMITTED, accepted.detail
    assert smsc.submits == 2  # the refused part was not resubmitted, in doubt or not
    assert smsc.sessions == 1
    assert _events(caplog, "smpp.link_lost") == []
    events = [(e["e"], e.get("status")) for e in _ledger(context) if e["m"] == refused.message_id]
    assert events == [("sent", None), ("refused", ESME_RINVSRCADR)]
    nacks = _events(caplog, "smpp.generic_nack")
    assert [(n["command"], n["status"]) for n in nacks] == [("submit_sm", "0x0000000A Invalid Source Address")]


def test_texts_in_flight_keep_their_responses_when_another_is_nacked(
    context: CapturingContext, started: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The first text's submit_sm_resp comes right after the second's nack, on the same session."""
    smsc = NackingSmsc({2}, hold_first=True)
    gateway = _gateway(smsc, context, started)
    first, second = _message("primero"), _message("segundo")
    results: dict[str, Any] = {}
    sender = threading.Thread(target=lambda: results.setdefault("first", gateway.send(first)))
    with caplog.at_level(logging.WARNING):
        sender.start()
        wait_until(lambda: smsc.submits == 1, "the first submit_sm")
        results["second"] = gateway.send(second)
        sender.join(30)
    assert not sender.is_alive()
    assert results["second"].state is SmsState.FAILED
    assert results["second"].detail.startswith("SMSC refused part 1/1: 0x0000000A")
    assert results["first"].state is SmsState.SUBMITTED, results["first"].detail
    assert (results["first"].gateway_id or "").startswith("msg")  # the SMSC's id, from the response after the nack
    assert smsc.sessions == 1
    assert _events(caplog, "smpp.link_lost") == []


def test_a_generic_nack_nobody_waits_for_is_logged_and_ignored(
    context: CapturingContext, started: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    smsc = NackingSmsc(set(), after_bind=_on_first_session(pdu(GENERIC_NACK, 4242, status=ESME_RINVSRCADR)))
    with caplog.at_level(logging.WARNING):
        gateway = _gateway(smsc, context, started)
        wait_until(lambda: bool(_events(caplog, "smpp.generic_nack")), "the nack logged")
        result = gateway.send(_message())
    assert result.state is SmsState.SUBMITTED, result.detail
    assert _events(caplog, "smpp.generic_nack") == [
        {"to": gateway._link.where, "sequence": 4242, "command": None, "status": "0x0000000A Invalid Source Address"}
    ]
    assert smsc.sessions == 1
    assert _events(caplog, "smpp.link_lost") == []


def test_a_generic_nack_with_status_0_is_still_a_refusal(context: CapturingContext, started: list[Any]) -> None:
    """A nack never accepts: a broken peer's status 0 must not record the part accepted with no id."""

    class ZeroNack(NackingSmsc):
        def submit_response(self, sequence: int, number: int) -> bytes:
            return pdu(GENERIC_NACK, sequence)

    gateway = _gateway(ZeroNack(set()), context, started)
    message = _message()
    result = gateway.send(message)
    assert result.state is SmsState.FAILED
    assert result.detail.startswith("SMSC refused part 1/1: 0x000000FF")
    assert [e["e"] for e in _ledger(context) if e["m"] == message.message_id] == ["sent", "refused"]


def test_a_response_handler_that_raises_neither_strands_its_sender_nor_drops_the_link(
    context: CapturingContext, started: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    smsc = NackingSmsc(set())
    gateway = _gateway(smsc, context, started)
    link = gateway._link
    params: dict[str, Any] = {"source_addr": "Cartera", "destination_addr": "573001234567", "short_message": b"hola"}

    def broken(_response: Any) -> None:
        raise OSError(28, "No space left on device")

    with caplog.at_level(logging.WARNING), pytest.raises(InDoubt) as raised:
        link.submit(broken, **params)
    assert "handling the submit_sm_resp" in str(raised.value)
    assert "No space left on device" in str(raised.value)
    answered: list[Any] = []
    assert link.submit(answered.append, **params).status == 0  # the same session, still serving
    assert [r.command for r in answered] == ["submit_sm_resp"]
    assert smsc.sessions == 1
    assert _events(caplog, "smpp.link_lost") == []
    failed = [(f["command"], f["error"]) for f in _events(caplog, "smpp.response_failed")]
    assert failed == [("submit_sm_resp", "OSError(28, 'No space left on device')")]


def test_the_nacked_response_command_is_the_generic_nack(context: CapturingContext, started: list[Any]) -> None:
    """The link hands the nack itself to the sender (status kept), not a submit_sm_resp it never got."""
    gateway = _gateway(NackingSmsc({1}), context, started)
    got: list[Any] = []
    params: dict[str, Any] = {"source_addr": "Cartera", "destination_addr": "573001234567", "short_message": b"hola"}
    response = gateway._link.submit(got.append, **params)
    assert (response.command, response.status) == ("generic_nack", ESME_RINVSRCADR)
    assert got == [response]
