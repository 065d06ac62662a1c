"""The smpp SMS gateway against a real Jasmin SMS gateway (tests/peers/jasmin.py), plus its encoding rules,
receipts and submit ledger on their own."""

from __future__ import annotations

import itertools
import logging
import select
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

from cartera.contact.compliance.model import Reason
from cartera.contact.smstext import GSM7_BASIC, GSM7_EXTENSION, segment_count, sms_encoding
from cartera.contact.targets import Denied
from cartera.core.models import SmsMessage, SmsState, SmsSubmitResult
from cartera.core.registry import AdapterCatalog
from cartera.core.store.schema import InboundSmsRow, Phone, SmsOptOut
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.sms import LONG, SPANISH, SmsConformance
from cartera.node import Node
from cartera.plugins.sms.smpp import plugin
from cartera.plugins.sms.smpp.config import SmppConfig
from cartera.plugins.sms.smpp.ledger import SubmitLedger, UnknownSmscId
from cartera.plugins.sms.smpp.plugin import LEDGER_FILE, SmppGateway
from cartera.plugins.sms.smpp.text import (
    DATA_CODING_GSM7,
    DATA_CODING_UCS2,
    GSM7_ESCAPES,
    GSM7_TABLE,
    decode_text,
    encode_parts,
    parse_receipt,
    split_udh,
)
from tests.conftest import write_portfolio, write_sites
from tests.peers.jasmin import RECEIPT_DELAY_S, Jasmin, Submitted, running_jasmin
from tests.peers.net import free_port, wait_until
from tests.plugins.sms import sms_row

PHONE = "+573001234567"
PASSWORD = "s3cr3t"
_users = itertools.count(1)
_message_ids = itertools.count(5_000_000)


@pytest.fixture(scope="module")
def jasmin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jasmin]:
    with running_jasmin(tmp_path_factory.mktemp("jasmin")) as peer:
        yield peer


@pytest.fixture
def account(jasmin: Jasmin) -> str:
    """A fresh SMPP account per test, so no receipt meant for another test's session reaches this one."""
    uid = f"cartera{next(_users):02d}"
    jasmin.add_user(uid, PASSWORD)
    return uid


def _config(port: int, account: str, **overrides: Any) -> SmppConfig:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "system_id": account,
        "password": PASSWORD,
        "source_addr": "Cartera",
        "messages_per_second": 200,
        "fsync": False,
        **overrides,
    }
    return SmppConfig.model_validate(values)


def _message(text: str, phone: str = PHONE) -> SmsMessage:
    return SmsMessage(message_id=next(_message_ids), site="test", phone=phone, text=text)


def _started(config: SmppConfig, context: CapturingContext) -> SmppGateway:
    gateway = SmppGateway(config, context)
    gateway.start()
    return gateway


def _texts(submitted: list[Submitted]) -> list[str]:
    """The carrier's submit_sm back to texts: concatenated parts joined by their header."""
    texts: list[str] = []
    pending: dict[tuple[str, int], dict[int, str]] = {}
    for sent in submitted:
        data = split_udh(sent.short_message, sent.esm_class)
        text = decode_text(data.payload, sent.data_coding)
        if data.concat is None:
            texts.append(text)
            continue
        reference, total, number = data.concat
        parts = pending.setdefault((sent.destination, reference), {})
        parts[number] = text
        if len(parts) == total:
            texts.append("".join(parts[n] for n in range(1, total + 1)))
    return texts


@pytest.mark.smpp
class TestSmppConformance(SmsConformance):
    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data")

    @pytest.fixture
    def gateway(self, context: CapturingContext, jasmin: Jasmin, account: str) -> Iterator[SmppGateway]:
        gateway = _started(_config(jasmin.smpp_port, account), context)
        yield gateway
        gateway.stop()

    @pytest.fixture
    def phone(self) -> str:
        return PHONE


# --- through Jasmin ---------------------------------------------------------------------------------------


@pytest.fixture
def context(tmp_path: Path) -> CapturingContext:
    return CapturingContext(tmp_path / "data")


@pytest.mark.smpp
def test_encoding_and_parts_on_the_wire(jasmin: Jasmin, account: str, context: CapturingContext) -> None:
    """GSM 03.38 or UCS-2 per message, long texts as concatenated parts the carrier can join back."""
    gateway = _started(_config(jasmin.smpp_port, account), context)
    texts = ["¡Señor Muñoz! ¿Nos llama hoy?", "¿Pagará hoy? Atención", "Cuota vencida: 120 € {ref}", SPANISH, LONG]
    texts.append("Le recordamos su cuota ñ ¿hoy? " * 8)  # GSM-7 over 160 septets
    before = len(jasmin.carrier.submitted)
    try:
        results = [gateway.send(_message(text)) for text in texts]
    finally:
        gateway.stop()
    assert [r.state for r in results] == [SmsState.SUBMITTED] * len(texts)
    parts = sum(segment_count(text) for text in texts)
    submitted = jasmin.carrier.wait_submitted(before + parts)[before:]
    assert len(submitted) == parts
    assert _texts(submitted) == texts
    codings = [DATA_CODING_GSM7 if sms_encoding(t) == "GSM-7" else DATA_CODING_UCS2 for t in texts]
    assert [s.data_coding for s in submitted] == [c for t, c in zip(texts, codings, strict=True) for _ in
                                                  range(segment_count(t))]  # fmt: skip
    assert codings == [DATA_CODING_GSM7, DATA_CODING_UCS2, DATA_CODING_GSM7, DATA_CODING_UCS2, DATA_CODING_UCS2,
                       DATA_CODING_GSM7]  # fmt: skip
    for sent in submitted:
        limit = 140 if sent.data_coding == DATA_CODING_UCS2 else 160
        assert len(sent.short_message) <= limit
        assert sent.registered_delivery & 0x01


@pytest.mark.smpp
@pytest.mark.parametrize(
    ("stat", "state"),
    [("UNDELIV", SmsState.FAILED), ("EXPIRED", SmsState.EXPIRED), ("REJECTD", SmsState.FAILED)],
)
def test_failed_receipts_map_to_states(
    jasmin: Jasmin, account: str, context: CapturingContext, stat: str, state: SmsState
) -> None:
    phone = f"+5730099{next(_users):05d}"
    jasmin.carrier.outcomes[phone.removeprefix("+")] = stat
    gateway = _started(_config(jasmin.smpp_port, account), context)
    try:
        result = gateway.send(_message("Aviso de pago", phone))
        [report] = context.wait_for_deliveries(1)
    finally:
        gateway.stop()
    assert (report.message_id, report.gateway_id, report.state) == (result.message_id, result.gateway_id, state)
    assert report.raw_status == stat


@pytest.mark.smpp
def test_inbound_messages_reach_core(jasmin: Jasmin, account: str, context: CapturingContext) -> None:
    """MO texts from the carrier, through Jasmin's MO router: GSM, UCS-2 and a concatenated one."""
    jasmin.route_mo_to(account)
    gateway = _started(_config(jasmin.smpp_port, account), context)
    texts = ["BAJA", "alto, ¿por qué me escriben?", "Ya pagué la cuota número 4 en el banco, " * 5]
    try:
        for text in texts:
            jasmin.carrier.mo("+573005550001", text)
            context.wait_for_inbound(texts.index(text) + 1)
    finally:
        gateway.stop()
    assert [(m.phone, m.text) for m in context.inbound] == [("+573005550001", t) for t in texts]
    assert all(m.received_at.tzinfo is not None for m in context.inbound)


@pytest.mark.smpp
def test_throughput_is_throttled_to_the_agreed_rate(jasmin: Jasmin, account: str, context: CapturingContext) -> None:
    gateway = _started(_config(jasmin.smpp_port, account, messages_per_second=8), context)
    try:
        assert gateway.check().ok
        started = time.monotonic()
        results = [gateway.send(_message(f"Aviso {n}")) for n in range(17)]
        elapsed = time.monotonic() - started
    finally:
        gateway.stop()
    assert all(r.state is SmsState.SUBMITTED for r in results)
    assert elapsed >= 16 / 8 * 0.95  # one token at start, then one per 1/8 s


@pytest.mark.smpp
def test_check_fails_on_a_bad_password_without_showing_it(
    jasmin: Jasmin, account: str, context: CapturingContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = _config(jasmin.smpp_port, account, password="wr0ngpw", response_timeout_s=2, reconnect_min_s=0.2)
    result = SmppGateway(config, context).check()
    assert not result.ok
    assert "bind failed" in result.detail
    assert "wr0ngpw" not in result.detail
    assert "wr0ngpw" not in caplog.text
    assert "wr0ngpw" not in repr(config)


@pytest.mark.smpp
def test_a_receipt_after_a_restart_finds_its_message(jasmin: Jasmin, account: str, context: CapturingContext) -> None:
    """The ledger in data_dir maps the SMSC's id back to the message across a stop and start."""
    config = _config(jasmin.smpp_port, account)
    jasmin.carrier.receipt_delay_s = 2.0
    try:
        first = _started(config, context)
        message = _message(f"Recordatorio {next(_users)}")
        result = first.send(message)
        first.stop()
        second = _started(config, context)
        try:
            [report] = context.wait_for_deliveries(1)
            again = second.send(message)  # the same message again: answered before, never resubmitted
        finally:
            second.stop()
    finally:
        jasmin.carrier.receipt_delay_s = RECEIPT_DELAY_S
    assert (report.message_id, report.gateway_id, report.state) == (message.message_id, result.gateway_id,
                                                                     SmsState.DELIVERED)  # fmt: skip
    assert (again.state, again.gateway_id) == (SmsState.SUBMITTED, result.gateway_id)
    assert _texts(jasmin.carrier.submitted).count(message.text) == 1


@pytest.mark.smpp
def test_a_part_in_doubt_from_a_crash_is_not_resubmitted(
    jasmin: Jasmin, account: str, context: CapturingContext
) -> None:
    """A crash between writing a submit_sm and its response leaves the part recorded as sent only: after the
    restart, sending that message again fails it as in doubt and nothing reaches the carrier."""
    message = _message(f"Aviso tras un corte {next(_users)}")
    ledger = SubmitLedger(context.data_dir / LEDGER_FILE, fsync=True, retention_s=3600)
    ledger.open()
    ledger.sent(message.message_id, 1, 1)
    ledger.close()
    gateway = _started(_config(jasmin.smpp_port, account), context)
    try:
        result = gateway.send(message)
        fresh = gateway.send(_message("Otro aviso"))
    finally:
        gateway.stop()
    assert (result.state, result.gateway_id) == (SmsState.FAILED, None)
    assert "in doubt" in result.detail
    assert fresh.state is SmsState.SUBMITTED
    time.sleep(0.5)
    assert message.text not in _texts(jasmin.carrier.submitted)


def test_a_text_over_255_parts_fails_without_raising(context: CapturingContext) -> None:
    gateway = SmppGateway(_config(free_port(), "cartera99"), context)
    result = gateway.send(_message("a" * 153 * 256))
    assert result.state is SmsState.FAILED
    assert "255" in result.detail


# --- disconnects: a proxy between the plugin and Jasmin that can drop the connection ------------------------


class CuttingProxy:
    """A TCP relay to Jasmin's SMPP port. ``cut_after_next_submit`` relays the plugin's next submit_sm to Jasmin,
    waits for ``taken`` (Jasmin passed the message on), then drops the connection before any answer comes
    back: the window where the SMSC has the PDU and the response is lost. ``blackhole`` relays nothing back
    any more (an SMSC that stopped answering)."""

    def __init__(self, target: int) -> None:
        self.port = free_port()
        self._target = target
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._cut_after: Callable[[], object] | None = None
        self._silent: set[socket.socket] = set()
        self.connections = 0
        self.requests: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_after_next_submit(self, taken: Callable[[], object]) -> None:
        self._cut_after = taken

    def blackhole(self) -> None:
        with self._lock:
            self._silent.update(client for client, _ in self._pairs)

    def close(self) -> None:
        self._server.close()
        with self._lock:
            for pair in self._pairs:
                self._drop(pair)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._pairs.append((client, upstream))
                self.connections += 1
            threading.Thread(target=self._relay, args=(client, upstream), daemon=True).start()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        while True:
            try:
                readable, _, _ = select.select([client, upstream], [], [], 0.5)
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if source is client:
                        commands = self._record(data)
                        upstream.sendall(data)
                        if self._cut_after is not None and "submit_sm" in commands:
                            taken, self._cut_after = self._cut_after, None
                            taken()  # Jasmin has the PDU and answers; the answer is dropped here
                            raise OSError("cut")
                    elif client not in self._silent:
                        client.sendall(data)
            except (OSError, ValueError, AssertionError):
                self._drop((client, upstream))
                return

    def _record(self, data: bytes) -> list[str]:
        commands = []
        while len(data) >= 8:
            length, command_id = struct.unpack(">LL", data[:8])
            commands.append({0x04: "submit_sm", 0x15: "enquire_link", 0x09: "bind_transceiver"}.get(
                command_id, hex(command_id)))  # fmt: skip
            data = data[length:]
        self.requests.extend(commands)
        return commands

    def _drop(self, pair: tuple[socket.socket, socket.socket]) -> None:
        for sock in pair:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


@pytest.fixture
def proxy(jasmin: Jasmin) -> Iterator[CuttingProxy]:
    relay = CuttingProxy(jasmin.smpp_port)
    yield relay
    relay.close()


def _batch_with_a_cut(
    jasmin: Jasmin, proxy: CuttingProxy, gateway: SmppGateway, context: CapturingContext, marker: str
) -> tuple[list[SmsSubmitResult], list[str]]:
    """12 messages; the connection is cut right after message 5 went out. Receipts of the first 5 are awaited
    before the cut: Jasmin redelivers a receipt caught in a dropped connection only after its response timer."""
    before = len(jasmin.carrier.submitted)
    results = []
    for n in range(12):
        if n == 5:
            context.wait_for_deliveries(5)
            proxy.cut_after_next_submit(lambda: jasmin.carrier.wait_submitted(before + 6))
        results.append(gateway.send(_message(f"{marker} aviso {n}")))
    time.sleep(1.0)  # whatever Jasmin got reaches the carrier
    return results, [t for t in _texts(jasmin.carrier.submitted[before:]) if t.startswith(marker)]


@pytest.mark.smpp
def test_disconnect_mid_batch_submits_nothing_twice(
    jasmin: Jasmin, account: str, context: CapturingContext, proxy: CuttingProxy
) -> None:
    """The connection drops after Jasmin took message 5 but before its submit_sm_resp: the plugin rebinds
    and sends the rest; message 5 is reported in doubt, not resubmitted; the carrier got every message once."""
    gateway = _started(_config(proxy.port, account, reconnect_min_s=0.2, response_timeout_s=3), context)
    try:
        results, carried = _batch_with_a_cut(jasmin, proxy, gateway, context, "lote-a")
        submitted = [r for r in results if r.state is SmsState.SUBMITTED]
        context.wait_until(lambda: len(context.deliveries) >= len(submitted), 10, "receipts of the batch")
    finally:
        gateway.stop()
    assert [r.state for r in results] == [SmsState.SUBMITTED] * 5 + [SmsState.FAILED] + [SmsState.SUBMITTED] * 6
    assert "in doubt" in results[5].detail
    assert results[5].gateway_id is None
    assert sorted(carried) == sorted(f"lote-a aviso {n}" for n in range(12))  # each exactly once, 5 included
    assert proxy.connections == 2
    assert proxy.requests.count("bind_transceiver") == 2
    assert proxy.requests.count("submit_sm") == 12
    assert sorted(r.message_id or 0 for r in context.deliveries) == sorted(r.message_id for r in submitted)


@pytest.mark.smpp
def test_resubmit_in_doubt_trades_a_possible_duplicate_for_delivery(
    jasmin: Jasmin, account: str, context: CapturingContext, proxy: CuttingProxy
) -> None:
    """With resubmit_in_doubt, the in-doubt message goes again after the rebind: every send succeeds, and the
    carrier gets that one message twice (the at-least-once window the default avoids)."""
    config = _config(proxy.port, account, reconnect_min_s=0.2, response_timeout_s=3, resubmit_in_doubt=True)
    gateway = _started(config, context)
    try:
        results, carried = _batch_with_a_cut(jasmin, proxy, gateway, context, "lote-b")
    finally:
        gateway.stop()
    assert [r.state for r in results] == [SmsState.SUBMITTED] * 12
    assert sorted(carried) == sorted([f"lote-b aviso {n}" for n in range(12)] + ["lote-b aviso 5"])
    assert proxy.requests.count("submit_sm") == 13


@pytest.mark.smpp
def test_keepalive_detects_a_silent_smsc_and_rebinds(
    account: str, context: CapturingContext, proxy: CuttingProxy
) -> None:
    config = _config(proxy.port, account, enquire_link_s=1, response_timeout_s=1, reconnect_min_s=0.2)  # the least
    gateway = _started(config, context)
    try:
        assert gateway.check().ok
        wait_until(lambda: proxy.requests.count("enquire_link") >= 2, "two keepalives on the idle link (answered)")
        proxy.blackhole()
        deadline = time.monotonic() + 10
        while proxy.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.connections == 2
        assert gateway.check().ok
        assert gateway.send(_message("después de reconectar")).state is SmsState.SUBMITTED
    finally:
        gateway.stop()


# --- through the node -------------------------------------------------------------------------------------


def _smpp_site(tmp_path: Path, jasmin: Jasmin, account: str) -> Path:
    """Site ``t`` texting through Jasmin as ``account`` (password from $SMPP_PASSWORD), no campaign."""
    path = write_sites(tmp_path)
    sms = f'plugin = "smpp"\nhost = "127.0.0.1"\nport = {jasmin.smpp_port}\nsystem_id = "{account}"\n'
    sms += 'password = "${SMPP_PASSWORD}"\nsource_addr = "85432"\nsource_addr_ton = 3\n'
    text = path.read_text().replace('plugin = "outbox"\npath = "sms/outbox.jsonl"\n', sms)
    path.write_text(text.replace("tick_seconds = 0.2", "enabled = false\ntick_seconds = 0.2"))
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.000,00;COP"])
    return path


@pytest.fixture
def node_on_jasmin(
    jasmin: Jasmin, account: str, tmp_path: Path, open_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Node]:
    """A running node (``run``) whose SMS gateway is bound to Jasmin, MO routed to it."""
    monkeypatch.setenv("SMPP_PASSWORD", PASSWORD)
    jasmin.route_mo_to(account)
    node = open_node(_smpp_site(tmp_path, jasmin, account))
    node.creditor_sync().run_once()
    runner = threading.Thread(target=node.run, kwargs={"duration": 120})
    runner.start()
    try:
        yield node
    finally:
        node.stop()
        runner.join(30)


@pytest.mark.smpp
def test_the_nodes_text_is_delivered_and_its_receipt_reaches_the_store(
    jasmin: Jasmin, node_on_jasmin: Node, caplog: pytest.LogCaptureFixture
) -> None:
    node = node_on_jasmin
    caplog.set_level(logging.DEBUG)
    before = len(jasmin.carrier.submitted)
    result = node.texts.send_sms(phone=None, text=LONG, account="BCO-1", actor="test")
    assert result.state is SmsState.SUBMITTED, result.detail
    wait_until(lambda: sms_row(node, result.message_id).state == SmsState.DELIVERED, "the receipt to reach the store")
    row = sms_row(node, result.message_id)
    assert (row.phone, row.gateway_id, row.text) == (PHONE, result.gateway_id, LONG)
    assert _texts(jasmin.carrier.wait_submitted(before + segment_count(LONG))[before:]) == [LONG]
    check = {line.what: line.result for line in node.check()}
    assert check["sms smpp"].ok, check
    assert PASSWORD not in caplog.text


@pytest.mark.smpp
def test_baja_from_the_carrier_opts_the_phone_out_at_once(jasmin: Jasmin, node_on_jasmin: Node) -> None:
    node = node_on_jasmin
    wait_until(lambda: {line.what: line.result for line in node.check()}["sms smpp"].ok, "the gateway to bind")
    jasmin.carrier.mo(PHONE, "Baja")
    wait_until(lambda: _opted_out(node), "the opt-out to reach the store")
    with node.db.session() as session:
        inbound = session.scalars(sa.select(InboundSmsRow)).one()
        assert (inbound.phone, inbound.text, inbound.opt_out) == (PHONE, "Baja", "BAJA")
        assert session.get(SmsOptOut, PHONE) is not None
    before = len(jasmin.carrier.submitted)
    with pytest.raises(Denied) as denied:
        node.texts.send_sms(phone=None, text="Recordatorio", account="BCO-1", actor="test")
    assert Reason.DEBTOR_OPT_OUT in denied.value.decision.reasons
    time.sleep(1)
    assert len(jasmin.carrier.submitted) == before, "a text reached the carrier after the opt-out"


def _opted_out(node: Node) -> bool:
    with node.db.session() as session:
        return bool(session.scalar(sa.select(Phone.do_not_text).where(Phone.e164 == PHONE)))


# --- without a peer ---------------------------------------------------------------------------------------


def test_registers_under_its_name() -> None:
    catalog = AdapterCatalog.empty()
    plugin.cartera_register_sms_gateways(catalog.sms_gateways)
    assert catalog.sms_gateways.get("smpp") is SmppGateway


def test_the_wire_table_is_the_standard_alphabet() -> None:
    assert len(GSM7_TABLE) == 128
    assert set(GSM7_TABLE) - {"\x1b"} == GSM7_BASIC
    assert set(GSM7_ESCAPES) == GSM7_EXTENSION


@pytest.mark.parametrize(
    "text",
    ["", "a" * 160, "a" * 161, "€" + "a" * 159, "a" * 152 + "€" + "a" * 152, "á" * 70, "á" * 71, "😀" * 36,
     "a" * 66 + "😀" + "a" * 66, SPANISH, LONG, "{}[]~|\\\f^€ ñÑ¿¡"],
)  # fmt: skip
def test_parts_match_the_segment_count_and_join_back(text: str) -> None:
    parts = encode_parts(text, reference=300)
    assert len(parts) == segment_count(text)
    joined = ""
    for number, part in enumerate(parts, start=1):
        data = split_udh(part.short_message, part.esm_class)
        if len(parts) > 1:
            assert data.concat == (300 % 256, len(parts), number)
        assert len(part.short_message) <= (140 if part.data_coding == DATA_CODING_UCS2 else 160)
        joined += decode_text(data.payload, part.data_coding)
    assert joined == text


def test_receipts_read_from_tlvs_or_text() -> None:
    text = "id:abc-1 sub:001 dlvrd:000 submit date:2611231530 done date:2611231531 stat:UNDELIV err:001 text:"
    assert parse_receipt(text, None, None) == parse_receipt("", "abc-1", 5)
    receipt = parse_receipt(text, None, None)
    assert receipt is not None
    assert (receipt.smsc_id, receipt.stat, receipt.state) == ("abc-1", "UNDELIV", SmsState.FAILED)
    enroute = parse_receipt("id:7 stat:ENROUTE", None, None)
    assert enroute is not None
    assert enroute.state is None
    assert parse_receipt("hola", None, None) is None


def test_ledger_survives_a_torn_line_and_a_restart(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    ledger = SubmitLedger(path, fsync=True, retention_s=3600)
    ledger.open()
    ledger.sent(1, 1, 2)
    ledger.answered(1, 1, 2, 0, "s-1")
    ledger.sent(1, 2, 2)
    ledger.close()
    with path.open("ab") as torn:
        torn.write(b'{"e":"accepted","m":1,"p":2')
    reopened = SubmitLedger(path, fsync=True, retention_s=3600)
    reopened.open()
    record = reopened.message(1, 2)
    assert record.parts[1].smsc_id == "s-1"
    assert record.parts[2].sent
    assert record.parts[2].smsc_id is None  # in doubt: the torn acceptance never happened
    assert reopened.receipt("s-1", "DELIVRD", SmsState.DELIVERED) is None  # part 2 has no receipt
    reopened.close()
    assert path.read_bytes().endswith(b"\n")


def test_a_ledger_opened_beside_another_holder_keeps_its_appends_and_reads_them_back(tmp_path: Path) -> None:
    """An ``sms`` command and the node hold one ledger: the second to open it must not replace the file under the
    first (whose appends would go to the replaced file, lost), and the node's settling reads the command's events.
    Alone, a holder still compacts: expired messages dropped."""
    path = tmp_path / LEDGER_FILE
    path.write_text('{"e":"sent","m":9,"p":1,"n":1,"t":1.0}\n')  # expired long ago
    command = SubmitLedger(path, fsync=True, retention_s=3600)
    command.open()
    assert command.known(9) is None  # alone: compacted away
    command.sent(1, 1, 1)
    node = SubmitLedger(path, fsync=True, retention_s=0)  # would drop every message if it compacted
    node.open()
    known = node.known(1)
    assert known is not None
    assert known.parts[1].sent
    command.answered(1, 1, 1, 0, "s-1")  # after the node opened: same file, not a replaced one
    command.close()
    live = node.message(7, 1)  # a send of the node's own under way holds its record
    node.sent(7, 1, 1)
    node.reload()
    assert node.message(7, 1) is live  # read again onto it, not replaced: the send sees its answers
    node.answered(7, 1, 1, 0, "s-7")
    assert live.gateway_id == "s-7"
    settled = node.known(1)
    assert settled is not None
    assert settled.gateway_id == "s-1"
    node.close()
    assert '"id":"s-1"' in path.read_text()


def test_a_receipt_for_a_text_another_holder_submitted_is_found_and_an_unknown_id_is_said_so(tmp_path: Path) -> None:
    """Round 22 C-F5: the receipt of a text an ``sms`` command sent beside the node reaches the node's session; the
    node's view of the ledger did not have its SMSC id, and the receipt was acknowledged and dropped silently. An id
    no holder recorded is :class:`UnknownSmscId`, and the file is read again only when another holder wrote."""
    path = tmp_path / LEDGER_FILE
    node = SubmitLedger(path, fsync=True, retention_s=3600)
    node.open()
    command = SubmitLedger(path, fsync=True, retention_s=3600)
    command.open()
    command.sent(4, 1, 1)
    command.answered(4, 1, 1, 0, "ID1")
    command.close()
    final = node.receipt("ID1", "DELIVRD", SmsState.DELIVERED)
    assert final is not None
    assert (final.message_id, final.final_state()) == (4, SmsState.DELIVERED)
    reads = []
    original = node._read_events

    def counted() -> Iterator[dict[str, Any]]:
        reads.append(1)
        return original()

    node._read_events = counted  # type: ignore[method-assign]
    for _ in range(3):
        with pytest.raises(UnknownSmscId):
            node.receipt("ID-of-another-application", "DELIVRD", SmsState.DELIVERED)
    assert reads == []  # nothing new in the file: not read again for each unknown receipt
    node.close()


def test_a_damaged_ledger_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / LEDGER_FILE
    path.write_text('{"e":"sent","m":1,"p":1,"n":1,"t":1.0}\nnot json\n')
    with pytest.raises(ValueError, match=rf"{LEDGER_FILE}, line 2: not a ledger event"):
        SubmitLedger(path, fsync=False, retention_s=3600).open()
    assert path.read_text().endswith("not json\n")  # left as it was for the operator
