"""The smpp submit ledger against a restored store, a hostile or confused SMSC and a busy holder beside the node
(round 23 C-F1, C-F5, C-F6, C-F7, C-F8)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cartera.core.models import SmsMessage, SmsState
from cartera.core.testing.context import CapturingContext
from cartera.plugins.sms.smpp.ledger import SubmitLedger, UnknownSmscId, text_digest
from cartera.plugins.sms.smpp.plugin import LEDGER_FILE, NOT_IN_LEDGER, SmppGateway
from cartera.plugins.sms.smpp.text import parse_receipt
from tests.plugins.sms.test_smpp_hostile import FakeSmsc, _config, pdu

pytestmark = pytest.mark.abuse

SUBMIT_SM_RESP = 0x80000004


class CountingSmsc(FakeSmsc):
    """Gives the ``n``th submit_sm of its life the id ``id-n``, whatever session it came on."""

    def __init__(self) -> None:
        super().__init__(lambda _conn, _session: None)

    def submit_response(self, sequence: int, number: int) -> bytes:
        return pdu(SUBMIT_SM_RESP, sequence, b"id-%d\x00" % number)


@pytest.fixture
def smsc() -> Iterator[CountingSmsc]:
    smsc = CountingSmsc()
    yield smsc
    smsc.close()


def _gateway(smsc: FakeSmsc, context: CapturingContext) -> SmppGateway:
    gateway = SmppGateway(_config(smsc.port), context)
    gateway.start()
    assert gateway._link.wait_bound(15)
    return gateway


def _ledger(path: Path) -> SubmitLedger:
    ledger = SubmitLedger(path, fsync=False, retention_s=3600, log=logging.getLogger("test.ledger"))
    ledger.open()
    return ledger


def _accepted(ledger: SubmitLedger, message_id: int, number: int, total: int, smsc_id: str) -> None:
    """Record part ``number`` of ``total`` of text ``message_id`` written and accepted by the SMSC as ``smsc_id``."""
    ledger.sent(message_id, number, total)
    ledger.answered(message_id, number, total, 0, smsc_id)


# --- C-F1: a record belongs to the text it was made for ------------------------------------------------------


def test_a_new_text_with_a_reused_store_id_is_sent_not_matched_to_the_old_record(
    smsc: CountingSmsc, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a store restore (or a fresh database beside the old data_dir) the store gives message id 1 again,
    to another debtor's text: it was never sent, stored "submitted" with the first text's SMSC id, and that
    text's receipt marked it delivered. It is sent now, with its own id, and the old id's receipt finds nothing."""
    context = CapturingContext(tmp_path / "data")
    first = _gateway(smsc, context)
    ana = SmsMessage(message_id=1, site="t", phone="+573001234567", text="Texto A para Ana", account_ref="BCO-1")
    try:
        sent = first.send(ana)
    finally:
        first.stop()
    assert (sent.state, sent.gateway_id) == (SmsState.SUBMITTED, "id-1")
    luis = SmsMessage(message_id=1, site="t", phone="+573007654321", text="Texto B para Luis", account_ref="BCO-2")
    second = _gateway(smsc, context)
    try:
        with caplog.at_level(logging.WARNING):
            result = second.send(luis)
        assert (result.state, result.gateway_id) == (SmsState.SUBMITTED, "id-2")
        assert smsc.submits == 2  # Luis's text went to the SMSC
        assert "smpp.ledger_record_replaced" in caplog.text
        with pytest.raises(UnknownSmscId):  # Ana's receipt is not Luis's
            second._ledger.receipt("id-1", "DELIVRD", SmsState.DELIVERED)
        final = second._ledger.receipt("id-2", "DELIVRD", SmsState.DELIVERED)
        assert final is not None
        assert final.message_id == 1
    finally:
        second.stop()
    third = SmppGateway(_config(smsc.port), context)  # reopened (and compacted): Luis's record, not Ana's
    third._ledger.open()
    try:
        record = third._ledger.known(1)
        assert record is not None
        assert record.gateway_id == "id-2"
    finally:
        third._ledger.close()


def test_settling_a_text_with_a_reused_store_id_ignores_the_old_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A killed sender's text whose id an old record (another text's) holds is settled as not in the ledger, not
    "submitted" with the other text's SMSC id."""
    context = CapturingContext(tmp_path / "data")
    ana = SmsMessage(message_id=3, site="t", phone="+573001234567", text="Texto A para Ana")
    luis = SmsMessage(message_id=3, site="t", phone="+573007654321", text="Texto B para Luis")
    gateway = SmppGateway(_config(1), context)
    gateway._ledger.open()
    try:
        gateway._ledger.message(3, 1, text_digest(ana))
        _accepted(gateway._ledger, 3, 1, 1, "OLD-1")
        [same] = gateway.settle([ana])
        with caplog.at_level(logging.WARNING):
            [other] = gateway.settle([luis])
    finally:
        gateway._ledger.close()
    assert (same.state, same.gateway_id) == (SmsState.SUBMITTED, "OLD-1")
    assert (other.state, other.gateway_id, other.detail) == (SmsState.FAILED, None, NOT_IN_LEDGER)
    assert "smpp.ledger_record_foreign" in caplog.text


# --- C-F5: an SMSC id given twice ------------------------------------------------------------------------------


def test_an_smsc_id_given_to_two_waiting_texts_is_bound_to_neither(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An SMSC answering two texts with one id: its receipts cannot say which text they are for, so neither gets
    the other's (message 1's DELIVRD was given to message 2 and message 1 never got a report); said once."""
    path = tmp_path / LEDGER_FILE
    ledger = _ledger(path)
    with caplog.at_level(logging.WARNING):
        for message_id in (1, 2, 3):
            _accepted(ledger, message_id, 1, 1, "SAME")
    assert caplog.text.count("smpp.smsc_id_reused") == 1
    for stat, state in (("DELIVRD", SmsState.DELIVERED), ("UNDELIV", SmsState.FAILED)):
        with pytest.raises(UnknownSmscId):
            ledger.receipt("SAME", stat, state)
    assert not any(ledger.known(m).reported for m in (1, 2, 3))  # type: ignore[union-attr]
    ledger.close()
    reopened = _ledger(path)  # read back (and compacted): still bound to neither
    with pytest.raises(UnknownSmscId):
        reopened.receipt("SAME", "DELIVRD", SmsState.DELIVERED)
    reopened.close()


def test_an_smsc_id_reused_after_its_first_text_was_reported_goes_to_the_new_text(tmp_path: Path) -> None:
    """An SMSC whose counter restarted: the id's first text has its final report, so receipts are the new one's."""
    path = tmp_path / LEDGER_FILE
    ledger = _ledger(path)
    _accepted(ledger, 1, 1, 1, "7")
    assert ledger.receipt("7", "DELIVRD", SmsState.DELIVERED) is not None
    _accepted(ledger, 2, 1, 1, "7")
    final = ledger.receipt("7", "UNDELIV", SmsState.FAILED)
    assert final is not None
    assert (final.message_id, final.final_state()) == (2, SmsState.FAILED)
    ledger.close()


# --- C-F6: repeated receipts --------------------------------------------------------------------------------


def test_repeated_receipts_are_counted_not_appended_and_the_stat_is_bounded(tmp_path: Path) -> None:
    """An SMSC repeating a receipt (400 times, each stat 60,000 bytes) grew the ledger by 24 MB for one text."""
    path = tmp_path / LEDGER_FILE
    ledger = _ledger(path)
    _accepted(ledger, 1, 1, 2, "p1")
    _accepted(ledger, 1, 2, 2, "p2")
    assert ledger.receipt("p1", "ENROUTE", None) is None
    assert ledger.receipt("p1", "ACCEPTD", None) is None  # another intermediate one: nothing new to keep
    assert ledger.receipt("p1", "DELIVRD" + "X" * 60_000, SmsState.DELIVERED) is None
    size = path.stat().st_size
    assert size < 2_000
    for _ in range(100):
        assert ledger.receipt("p1", "UNDELIV", SmsState.FAILED) is None  # part 1 is final already
    assert path.stat().st_size == size
    final = ledger.receipt("p2", "DELIVRD", SmsState.DELIVERED)
    assert final is not None
    assert final.raw_status() == "DELIVRD,DELIVRD"
    size = path.stat().st_size
    for _ in range(100):
        assert ledger.receipt("p2", "DELIVRD", SmsState.DELIVERED) is None  # reported
    assert path.stat().st_size == size
    assert ledger.repeated_receipts == 201
    ledger.close()


def test_a_receipt_stat_is_cut_to_smpp_length_but_read_whole() -> None:
    receipt = parse_receipt("id:9 stat:" + "A" * 60_000, None, None)
    assert receipt is not None
    assert (receipt.stat, receipt.state) == ("AAAAAAA", None)
    longer = parse_receipt("id:9 stat:DELIVRDNOT", None, None)
    assert longer is not None
    assert (longer.stat, longer.state) == ("DELIVRD", None)  # not taken for DELIVRD


# --- C-F7: each event kind's own keys ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        '{"e":"accepted","m":7,"p":1,"n":1,"t":1}',
        '{"e":"accepted","m":7,"p":1,"n":1,"t":1,"id":{"a":1}}',
        '{"e":"refused","m":7,"p":1,"n":1,"t":1}',
        '{"e":"refused","m":7,"p":1,"n":1,"t":1,"status":"x"}',
        '{"e":"receipt","m":7,"p":1,"n":1,"t":1,"state":null}',
        '{"e":"receipt","m":7,"p":1,"n":1,"t":1,"stat":"DELIVRD"}',
        '{"e":"receipt","m":7,"p":1,"n":1,"t":1,"stat":"DELIVRD","state":"gone"}',
        '{"e":"sent","m":7,"p":1,"n":1,"t":1,"d":5}',
        '{"e":"launched","m":7,"p":1,"n":1,"t":1}',
    ],
    ids=["no-id", "id-object", "no-status", "bad-status", "no-stat", "no-state", "bad-state", "bad-digest", "kind"],
)
def test_an_event_without_its_own_keys_is_named_by_file_and_line(tmp_path: Path, line: str) -> None:
    """Such a line failed every text with a bare KeyError naming neither the file nor the line."""
    path = tmp_path / LEDGER_FILE
    path.write_text('{"e":"sent","m":7,"p":1,"n":1,"t":1}\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"{LEDGER_FILE}, line 2: not a ledger event"):
        _ledger(path)


# --- C-F8: reading what another holder appended -------------------------------------------------------------


def _count_read(ledger: SubmitLedger) -> list[int]:
    read: list[int] = []
    original = ledger._read_events

    def counted() -> Iterator[dict[str, Any]]:
        for event in original():
            read.append(1)
            yield event

    ledger._read_events = counted  # type: ignore[method-assign]
    return read


def test_a_reload_reads_only_what_another_holder_appended(tmp_path: Path) -> None:
    """Every receipt for an unknown id re-read the whole ledger (60 MB: 3.7 s in the link thread, receipts, MO and
    sends held up) whenever an ``sms`` command beside the node had appended a line."""
    path = tmp_path / LEDGER_FILE
    node = _ledger(path)
    for message_id in range(1, 501):
        _accepted(node, message_id, 1, 1, f"N{message_id}")
    command = _ledger(path)
    read = _count_read(node)
    node.sent(1000, 1, 1)  # the node's own line and the command's, interleaved
    command.sent(2000, 1, 1)
    node.answered(1000, 1, 1, 0, "N1000")
    command.answered(2000, 1, 1, 0, "C2000")
    with pytest.raises(UnknownSmscId):
        node.receipt("FOREIGN-0", "DELIVRD", SmsState.DELIVERED)
    assert len(read) <= 4  # the tail since the first foreign line, not the 1,000 lines before it
    read.clear()
    with pytest.raises(UnknownSmscId):
        node.receipt("FOREIGN-1", "DELIVRD", SmsState.DELIVERED)
    assert read == []  # nothing appended since
    _accepted(command, 2001, 1, 1, "C2001")
    final = node.receipt("C2001", "DELIVRD", SmsState.DELIVERED)
    assert final is not None
    assert final.message_id == 2001
    assert len(read) == 2
    own = node.known(1000)
    assert own is not None
    assert own.gateway_id == "N1000"
    node.reload()
    settled = node.known(2000)
    assert settled is not None
    assert settled.gateway_id == "C2000"
    command.close()
    node.close()


def test_a_ledger_that_shrank_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    node = _ledger(path)
    _accepted(node, 1, 1, 1, "N1")
    path.write_text('{"e":"sent","m":5,"p":1,"n":1,"t":1}\n{"e":"accepted","m":5,"p":1,"n":1,"t":1,"id":"X5"}\n')
    final = node.receipt("X5", "DELIVRD", SmsState.DELIVERED)
    assert final is not None
    assert final.message_id == 5
    assert node.known(1) is not None  # the node's own records stay
    node.close()
