"""The smpp plugin against a hostile SMSC on 127.0.0.1 (round 18, I2/I6/I8): PDUs with an unknown command id,
shorter than their header or cut short, a data_sm MO, and a flood of first parts that never complete."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cartera.core.models import SmsMessage, SmsState
from cartera.core.store.schema import InboundSmsRow, SmsOptOut
from cartera.core.testing.context import CapturingContext
from cartera.node import Node
from cartera.plugins.sms.smpp.config import SmppConfig
from cartera.plugins.sms.smpp.plugin import SmppGateway, _Concatenation
from cartera.plugins.sms.smpp.text import ESM_UDHI, decode_text, split_udh
from tests.conftest import write_sites
from tests.peers.jasmin import _recv
from tests.peers.net import wait_until

pytestmark = pytest.mark.abuse

BIND_TRX, SUBMIT_SM, ENQUIRE_LINK, UNBIND, DELIVER_SM, DATA_SM = 0x09, 0x04, 0x15, 0x06, 0x05, 0x103
GENERIC_NACK, RESPONSE = 0x80000000, 0x80000000
ESME_RINVCMDID = 0x03

Hostile = Callable[[socket.socket, int], None]


def pdu(command_id: int, sequence: int, body: bytes = b"", status: int = 0) -> bytes:
    return struct.pack(">LLLL", 16 + len(body), command_id, status, sequence) + body


class FakeSmsc:
    """Binds anyone, accepts every submit_sm (or leaves each unanswered), answers enquire_link and unbind. After
    each bind, ``after_bind(conn, session)`` may misbehave (session counts from 1). Responses it gets are recorded."""

    def __init__(self, after_bind: Hostile, *, answer_submits: bool = True) -> None:
        self._after_bind = after_bind
        self.answer_submits = answer_submits  #: False: every submit_sm is counted and left unanswered
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.sessions = 0
        self.responses: list[tuple[int, int, int]] = []  # (command_id, status, sequence) of responses received
        self.submits = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.sessions += 1
                self._conns.append(conn)
                session = self.sessions
            threading.Thread(target=self._serve, args=(conn, session), daemon=True).start()

    def _serve(self, conn: socket.socket, session: int) -> None:
        with suppress(OSError), conn:
            while (header := _recv(conn, 16)) is not None:
                length, command_id, status, sequence = struct.unpack(">LLLL", header)
                if _recv(conn, length - 16) is None:
                    return
                if command_id & RESPONSE:
                    with self._lock:
                        self.responses.append((command_id, status, sequence))
                elif command_id == BIND_TRX:
                    conn.sendall(pdu(BIND_TRX | RESPONSE, sequence, b"SMSC\x00"))
                    self._after_bind(conn, session)
                elif command_id == SUBMIT_SM:
                    with self._lock:
                        self.submits += 1
                        number = self.submits
                    if self.answer_submits:
                        conn.sendall(self.submit_response(sequence, number))
                elif command_id == ENQUIRE_LINK:
                    conn.sendall(pdu(ENQUIRE_LINK | RESPONSE, sequence))
                elif command_id == UNBIND:
                    conn.sendall(pdu(UNBIND | RESPONSE, sequence))
                    return

    def submit_response(self, sequence: int, number: int) -> bytes:
        """What answers the ``number``th submit_sm (from 1): its submit_sm_resp, the SMSC's id ``msgSEQUENCE``."""
        del number
        return pdu(SUBMIT_SM | RESPONSE, sequence, b"msg%d\x00" % sequence)

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for conn in self._conns:
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                conn.close()


def _config(port: int, **overrides: Any) -> SmppConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "system_id": "acct",
        "password": "pw",
        "source_addr": "Cartera",
        "fsync": False,
        "submit_timeout_s": 10,
        "response_timeout_s": 2,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
        **overrides,
    }
    return SmppConfig.model_validate(values)


@pytest.fixture
def context(tmp_path: Path) -> CapturingContext:
    return CapturingContext(tmp_path / "data")


@pytest.fixture
def smsc_with() -> Iterator[Callable[[Hostile], FakeSmsc]]:
    made: list[FakeSmsc] = []

    def make(after_bind: Hostile) -> FakeSmsc:
        made.append(FakeSmsc(after_bind))
        return made[-1]

    yield make
    for smsc in made:
        smsc.close()


@pytest.fixture
def gateways() -> Iterator[Callable[[SmppConfig, CapturingContext], SmppGateway]]:
    started: list[SmppGateway] = []

    def start(config: SmppConfig, context: CapturingContext, pending_cap: int | None = None) -> SmppGateway:
        gateway = SmppGateway(config, context)
        if pending_cap is not None:  # the cap in all, made small for the test
            gateway._inbound = _Concatenation(logging.getLogger("test.smpp"), total=pending_cap)
        gateway.start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


def _on_first_session(data: bytes) -> Hostile:
    def after_bind(conn: socket.socket, session: int) -> None:
        if session == 1:
            conn.sendall(data)

    return after_bind


def _message(text: str = "hola") -> SmsMessage:
    return SmsMessage(message_id=int(time.monotonic_ns() % 2**31), site="test", phone="+573001234567", text=text)


def test_an_unknown_command_id_is_answered_generic_nack_and_the_session_goes_on(
    smsc_with: Callable[[Hostile], FakeSmsc], gateways: Any, context: CapturingContext
) -> None:
    smsc = smsc_with(_on_first_session(pdu(0x00000999, 77)))
    gateway = gateways(_config(smsc.port), context)
    wait_until(lambda: (GENERIC_NACK, ESME_RINVCMDID, 77) in smsc.responses, "the generic_nack of sequence 77")
    result = gateway.send(_message())
    assert result.state is SmsState.SUBMITTED, result.detail
    assert smsc.sessions == 1  # no rebind: the session went on
    assert gateway.check().ok


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (struct.pack(">L", 2), "command_length 2"),  # shorter than its own header
        (struct.pack(">L", 0xFFFFFFF0), "command_length 4294967280"),  # would have the node read 4 GiB
        (pdu(DELIVER_SM, 79, b"\x00\x01\x01"), "malformed deliver_sm"),  # mandatory fields cut short
    ],
    ids=["short", "huge", "truncated-body"],
)
def test_a_malformed_pdu_drops_the_connection_and_the_link_rebinds(  # noqa: PLR0917 (fixtures and parameters)
    smsc_with: Callable[[Hostile], FakeSmsc],
    gateways: Any,
    context: CapturingContext,
    caplog: pytest.LogCaptureFixture,
    data: bytes,
    reason: str,
) -> None:
    smsc = smsc_with(_on_first_session(data))
    with caplog.at_level(logging.WARNING):
        gateway = gateways(_config(smsc.port), context)
        wait_until(lambda: smsc.sessions >= 2, "a second session")
        result = gateway.send(_message())
    assert result.state is SmsState.SUBMITTED, result.detail
    lost = [r.fields["error"] for r in caplog.records if r.getMessage() == "smpp.link_lost"]  # type: ignore[attr-defined]
    assert len(lost) == 1, caplog.text
    assert reason in lost[0]
    assert gateway._link._thread is not None
    assert gateway._link._thread.is_alive()


def test_check_names_the_reason_the_link_is_down(
    smsc_with: Callable[[Hostile], FakeSmsc], gateways: Any, context: CapturingContext
) -> None:
    """An SMSC that breaks every session: the link waits before rebinding, and check says why it is down."""
    smsc = smsc_with(lambda conn, _session: conn.sendall(struct.pack(">L", 2)))
    gateway = gateways(_config(smsc.port, reconnect_min_s=60, reconnect_max_s=60, response_timeout_s=0.5), context)
    wait_until(lambda: "malformed" in gateway._link.last_error, "the link to drop")
    check = gateway.check()
    assert not check.ok
    assert "connection lost: malformed PDU: command_length 2" in check.detail
    assert smsc.sessions == 1  # not rebound in a tight loop


def test_a_request_the_link_does_not_handle_is_nacked(
    smsc_with: Callable[[Hostile], FakeSmsc], gateways: Any, context: CapturingContext
) -> None:
    """query_sm is a request an ESME is never sent: generic_nack, not silence that fills the SMSC's window."""
    smsc = smsc_with(_on_first_session(pdu(0x00000003, 91, b"id\x00\x00\x00\x00")))
    gateway = gateways(_config(smsc.port), context)
    wait_until(lambda: (GENERIC_NACK, ESME_RINVCMDID, 91) in smsc.responses, "the generic_nack of sequence 91")
    assert gateway.send(_message()).state is SmsState.SUBMITTED
    assert smsc.sessions == 1


def _data_sm(sender: bytes, payload: bytes, sequence: int) -> bytes:
    # service_type, source ton/npi/addr, dest ton/npi/addr, esm_class, registered_delivery, data_coding,
    # then the message_payload TLV (0x0424)
    body = b"\x00\x01\x01" + sender + b"\x00\x01\x01Cartera\x00\x00\x00\x00"
    return pdu(DATA_SM, sequence, body + struct.pack(">HH", 0x0424, len(payload)) + payload)


def test_a_data_sm_mo_is_answered_and_reaches_core(
    smsc_with: Callable[[Hostile], FakeSmsc], gateways: Any, context: CapturingContext
) -> None:
    smsc = smsc_with(_on_first_session(_data_sm(b"573001234567", b"BAJA", 81)))
    gateways(_config(smsc.port), context)
    wait_until(lambda: any(r[2] == 81 for r in smsc.responses), "the data_sm_resp of sequence 81")
    assert (DATA_SM | RESPONSE, 0, 81) in smsc.responses
    wait_until(lambda: bool(context.inbound), "the MO")
    assert [(m.phone, m.text) for m in context.inbound] == [("+573001234567", "BAJA")]


def _first_part(sender: bytes, reference: int, sequence: int) -> bytes:
    udh = bytes([0x05, 0x00, 0x03, reference, 0x02, 0x01])
    body = b"\x00\x01\x01" + sender + b"\x00\x01\x01Cartera\x00\x40" + bytes(8)
    short = udh + b"hola"
    return pdu(DELIVER_SM, sequence, body + bytes([len(short)]) + short)


def test_a_flood_of_first_parts_is_bounded(
    smsc_with: Callable[[Hostile], FakeSmsc], gateways: Any, context: CapturingContext
) -> None:
    """The red team's flood (part 1 of 2, each from another sender), cut down: pending parts stay under the cap."""
    count = 300
    flood = b"".join(_first_part(b"5730%08d" % n, 2, 1000 + n) for n in range(count))
    smsc = smsc_with(_on_first_session(flood))
    gateway = gateways(_config(smsc.port), context, pending_cap=50)
    wait_until(
        lambda: sum(1 for r in smsc.responses if r[0] == DELIVER_SM | RESPONSE) == count, "every deliver_sm_resp"
    )
    assert len(gateway._inbound) == 50
    assert context.inbound == []


def _concatenation(**limits: Any) -> tuple[_Concatenation, list[float]]:
    now = [0.0]
    return _Concatenation(logging.getLogger("test.smpp"), clock=lambda: now[0], **limits), now


def test_incomplete_parts_expire(caplog: pytest.LogCaptureFixture) -> None:
    joiner, now = _concatenation(ttl_s=600)
    assert joiner.add("+573001", (7, 2, 1), "ho") is None
    now[0] = 599
    assert joiner.add("+573002", (8, 2, 1), "ad") is None
    now[0] = 601
    with caplog.at_level(logging.WARNING):
        assert joiner.add("+573001", (7, 2, 2), "la") is None  # its first part was dropped at 600 s
    dropped = [r.fields for r in caplog.records if r.getMessage() == "smpp.mo_parts_dropped"]  # type: ignore[attr-defined]
    assert dropped == [{"reason": "expired", "dropped": 1, "reference": 7, "parts": 2, "arrived": 1}]
    assert joiner.add("+573002", (8, 2, 2), "ios") == "adios"  # the younger one is still complete
    assert len(joiner) == 1  # the late second part of 7, waiting for a first part that will not come


def test_pending_parts_are_capped_per_sender_and_in_all() -> None:
    joiner, _now = _concatenation(per_sender=3, total=5)
    for reference in range(4):
        assert joiner.add("+573001", (reference, 2, 1), f"a{reference}") is None
    assert len(joiner) == 3  # the sender's oldest (reference 0) went
    assert joiner.add("+573001", (0, 2, 2), "b") is None  # a new pending message, not a completion
    for sender in ("+573002", "+573003", "+573004"):
        joiner.add(sender, (1, 2, 1), "x")
    assert len(joiner) == 5
    assert joiner.add("+573001", (3, 2, 2), "z") == "a3z"  # the newest of the first sender survived


def test_a_part_number_outside_its_total_is_dropped() -> None:
    joiner, _now = _concatenation()
    assert joiner.add("+573001", (5, 2, 0), "x") is None
    assert joiner.add("+573001", (5, 2, 3), "x") is None
    assert len(joiner) == 0


def test_a_flood_of_drops_is_one_log_line_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    joiner, now = _concatenation(total=10)
    with caplog.at_level(logging.WARNING):
        for n in range(1000):
            joiner.add(f"+57300{n:05d}", (1, 2, 1), "x")
        now[0] = 61
        joiner.add("+573009", (1, 2, 1), "x")
    dropped = [r.fields for r in caplog.records if r.getMessage() == "smpp.mo_parts_dropped"]  # type: ignore[attr-defined]
    assert [(d["reason"], d["dropped"]) for d in dropped] == [("too many in all", 1), ("too many in all", 990)]


# --- MO text no store can keep (round 21 C-F1) ------------------------------------------------------------

ESME_RX_P_APPN = 0x65  # "permanent application error": the SMSC does not redeliver
SENDER = b"573001112222"


def _deliver_sm(sender: bytes, data_coding: int, short: bytes, sequence: int) -> bytes:
    # service_type, source ton/npi/addr, dest ton/npi/addr, esm_class, protocol_id, priority, schedule,
    # validity, registered_delivery, replace_if_present, data_coding, sm_default_msg_id, sm_length
    body = b"\x00\x01\x01" + sender + b"\x00\x01\x01Cartera\x00" + b"\x00\x00\x00\x00\x00\x00\x00"
    return pdu(DELIVER_SM, sequence, body + bytes([data_coding, 0, len(short)]) + short)


#: The red team's three texts holding a NUL once decoded (UCS-2 ``00 00``, 8-bit and Latin-1 ``0x00``), by sequence.
UNKEEPABLE = {
    501: (0x08, "BAJA".encode("utf-16-be") + b"\x00\x00"),
    502: (0x04, b"BAJA\x00"),
    503: (0x03, b"BAJA\x00x"),
}
KEPT = 504  # a plain "Baja" after them, taken


def _mo_with_nuls() -> bytes:
    refused = b"".join(_deliver_sm(SENDER, coding, short, sequence) for sequence, (coding, short) in UNKEEPABLE.items())
    return refused + _deliver_sm(SENDER, 0x00, b"Baja", KEPT)


def _statuses(smsc: FakeSmsc) -> dict[int, int]:
    return {sequence: status for command, status, sequence in smsc.responses if command == DELIVER_SM | RESPONSE}


def test_an_mo_holding_a_nul_is_refused_for_good_and_logged_once(
    smsc_with: Callable[[Hostile], FakeSmsc], gateways: Any, context: CapturingContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A NUL no store keeps (PostgreSQL refuses it): answered a permanent error, never "temporary, retry later"."""
    smsc = smsc_with(_on_first_session(_mo_with_nuls()))
    with caplog.at_level(logging.WARNING):
        gateways(_config(smsc.port), context)
        wait_until(lambda: len(_statuses(smsc)) == len(UNKEEPABLE) + 1, "every deliver_sm_resp")
    assert _statuses(smsc) == {**dict.fromkeys(UNKEEPABLE, ESME_RX_P_APPN), KEPT: 0}
    assert [(m.phone, m.text) for m in context.inbound] == [("+573001112222", "Baja")]
    refused = [r.fields for r in caplog.records if r.getMessage() == "smpp.mo_refused"]  # type: ignore[attr-defined]
    assert [r["reason"] for r in refused] == ["a NUL character"] * len(UNKEEPABLE)
    assert "smpp.deliver_failed" not in caplog.text
    assert "BAJA" not in caplog.text  # a debtor's text is never logged


#: The environment variable and value of the password ``smpp_site`` gives its gateway.
SMPP_SECRET = ("SMPP_PASSWORD", "smpp-pw1")  # SMPP 3.4 carries at most 8 characters


def smpp_site(directory: Path, port: int, database: str | None = None) -> Path:
    """Site ``t`` (no campaign) texting through the SMSC at 127.0.0.1:``port``, its password from $SMPP_PASSWORD."""
    site = write_sites(directory, database=database)
    sms = f'plugin = "smpp"\nhost = "127.0.0.1"\nport = {port}\nsystem_id = "acct"\n'
    sms += 'password = "${SMPP_PASSWORD}"\nsource_addr = "85432"\nfsync = false\nresponse_timeout_s = 60\n'
    text = site.read_text().replace('plugin = "outbox"\npath = "sms/outbox.jsonl"\n', sms)
    site.write_text(text.replace("tick_seconds = 0.2", "enabled = false\ntick_seconds = 0.2"))
    return site


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


def test_a_node_refuses_the_same_mo_on_either_store(
    smsc_with: Callable[[Hostile], FakeSmsc],
    store: str | None,
    tmp_path: Path,
    open_node: Callable[..., Node],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through a node: SQLite stored the NUL, PostgreSQL refused it and the SMSC was told to retry for ever; on
    both the text is now refused for good and the plain one after it opts the phone out."""
    smsc = smsc_with(_on_first_session(_mo_with_nuls()))
    monkeypatch.setenv(*SMPP_SECRET)
    node = open_node(smpp_site(tmp_path, smsc.port, store))
    runner = threading.Thread(target=node.run, kwargs={"duration": 60})
    runner.start()
    try:
        wait_until(lambda: len(_statuses(smsc)) == len(UNKEEPABLE) + 1, "every deliver_sm_resp")
    finally:
        node.stop()
        runner.join(30)
    assert _statuses(smsc) == {**dict.fromkeys(UNKEEPABLE, ESME_RX_P_APPN), KEPT: 0}
    with node.db.session() as session:
        inbound = [(row.phone, row.text, row.opt_out) for row in session.scalars(sa.select(InboundSmsRow))]
        opted_out = session.get(SmsOptOut, "+573001112222") is not None
    assert inbound == [("+573001112222", "Baja", "BAJA")]
    assert opted_out


# --- MO whose user data header is cut short (round 23 C-F3) ------------------------------------------------

ESME_RX_T_APPN = 0x64  # "temporary application error": the SMSC redelivers later


def _deliver_udh(short: bytes, sequence: int, esm_class: int = 0x40) -> bytes:
    """A deliver_sm from SENDER, GSM 03.38, its esm_class given (0x40: UDHI, the text starts with a header)."""
    body = b"\x00\x01\x01" + SENDER + b"\x00\x01\x01Cartera\x00" + bytes([esm_class]) + b"\x00\x00\x00\x00\x00\x00"
    return pdu(DELIVER_SM, sequence, body + bytes([0, 0, len(short)]) + short)


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"\x03\x00\x03\x01", b""),  # the red team's: IEI 0 declares 3 octets, 1 is there
        (b"\x03\x00\x03\x01Hola", b"Hola"),
        (b"\x04\x08\x04\x01\x02Hola", b"Hola"),  # 16-bit reference, 2 of 4 octets
        (b"\x05\x00\x03\x01\x02", b""),  # the header declares 5 octets, the payload ends after 4
    ],
    ids=["8-bit-empty", "8-bit", "16-bit", "header-past-the-end"],
)
def test_a_cut_concatenation_element_reads_as_not_concatenated(payload: bytes, text: bytes) -> None:
    user_data = split_udh(payload, ESM_UDHI)
    assert (user_data.payload, user_data.concat) == (text, None)


def test_an_mo_with_a_cut_udh_element_is_taken_not_retried_for_ever(
    smsc_with: Callable[[Hostile], FakeSmsc], gateways: Any, context: CapturingContext, caplog: pytest.LogCaptureFixture
) -> None:
    """It raised IndexError, answered ESME_RX_T_APPN: the SMSC redelivered it until its validity ended, an ERROR
    each time. Now it is an ordinary single-part text."""
    cut = _deliver_udh(b"\x03\x00\x03\x01", 900) + _deliver_udh(b"\x03\x00\x03\x01Hola", 901)
    smsc = smsc_with(_on_first_session(cut + _deliver_udh(b"BAJA", 950, esm_class=0)))
    with caplog.at_level(logging.WARNING):
        gateways(_config(smsc.port), context)
        wait_until(lambda: len(_statuses(smsc)) == 3, "every deliver_sm_resp")
    assert _statuses(smsc) == {900: 0, 901: 0, 950: 0}
    assert [m.text for m in context.inbound] == ["", "Hola", "BAJA"]
    assert "smpp.deliver_failed" not in caplog.text


def test_an_mo_that_cannot_be_read_is_refused_for_good_a_store_failure_is_retried(
    smsc_with: Callable[[Hostile], FakeSmsc],
    gateways: Any,
    context: CapturingContext,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever reading a deliver_sm raises is the same on every redelivery: a permanent error, logged once as a
    warning. A failure to keep a text that was read (the store down, a full disk) stays temporary: the SMSC
    redelivers it later."""
    real_report = context.report_inbound

    def decode(payload: bytes, data_coding: int) -> str:
        if payload == b"XXXX":  # reading the text fails, as a cut header did
            raise IndexError("index out of range")
        return decode_text(payload, data_coding)

    def report(message: Any) -> None:
        if message.text == "STORE":
            raise OSError(28, "No space left on device")
        real_report(message)

    monkeypatch.setattr("cartera.plugins.sms.smpp.plugin.decode_text", decode)
    monkeypatch.setattr(context, "report_inbound", report)
    mos = _deliver_udh(b"XXXX", 700, esm_class=0) + _deliver_udh(b"STORE", 701, esm_class=0)
    smsc = smsc_with(_on_first_session(mos + _deliver_udh(b"BAJA", 702, esm_class=0)))
    with caplog.at_level(logging.WARNING):
        gateways(_config(smsc.port), context)
        wait_until(lambda: len(_statuses(smsc)) == 3, "every deliver_sm_resp")
    assert _statuses(smsc) == {700: ESME_RX_P_APPN, 701: ESME_RX_T_APPN, 702: 0}
    assert [m.text for m in context.inbound] == ["BAJA"]
    unreadable = [r for r in caplog.records if r.getMessage() == "smpp.mo_unreadable"]
    assert [(r.levelno, r.fields["error"]) for r in unreadable] == [(logging.WARNING, "IndexError")]  # type: ignore[attr-defined]
    failed = [r for r in caplog.records if r.getMessage() == "smpp.deliver_failed"]
    assert len(failed) == 1
    assert "XXXX" not in caplog.text  # a debtor's text is never logged
