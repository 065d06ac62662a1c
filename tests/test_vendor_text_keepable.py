"""Text a vendor sends (a PBX's Hangup Cause-txt, an smsbox's answer) holding what no store keeps, a NUL or a lone
surrogate: it reaches the store escaped (``\\x00``), the rest of the report with it (round 21 C-F9: PostgreSQL
refused the whole write, an answered call stayed ``placing`` and was settled ``unknown`` at the next run, a sent
text stayed ``queued`` with no activity; SQLite kept the NUL)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from cartera.core.control_characters import keepable, unkeepable
from cartera.core.models import CallOutcome, CallResult, DeliveryReport, InboundSms, SmsState, SmsSubmitResult
from cartera.core.store.schema import ActivityRow, ContactAttempt, SmsRow
from cartera.node import Node
from tests.conftest import write_portfolio, write_sites
from tests.plugins.dialers.test_asterisk_ami import FakeAmi, _ami_message

pytestmark = pytest.mark.abuse


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres_url") if request.param == "postgresql" else None


def test_keepable_escapes_what_no_store_keeps_and_nothing_else() -> None:
    assert keepable("16 Normal\x00Clearing") == "16 Normal\\x00Clearing"
    assert keepable("caf\udce9 \ud800") == "caf\\udce9 \\ud800"
    assert keepable("Número\tok \U0001f600 \x1b") == "Número\tok \U0001f600 \x1b"  # only what unkeepable names
    for text in ("a\x00", "\udcff", "x\x00\ud83d"):
        assert unkeepable(keepable(text)) is None


def test_every_report_an_adapter_makes_is_keepable() -> None:
    """The models adapters report with are where vendor text enters core: each text field is made keepable."""
    at = datetime.now(UTC)
    call = CallResult(1, CallOutcome.ANSWERED, "16 a\x00b", at, agent="PJSIP/\udcff", vendor_call_id="u\x00")
    assert (call.raw_cause, call.agent, call.vendor_call_id) == ("16 a\\x00b", "PJSIP/\\udcff", "u\\x00")
    submitted = SmsSubmitResult(1, SmsState.SUBMITTED, "id\x00", "smsbox: 0: Accepted\x00junk")
    assert (submitted.gateway_id, submitted.detail) == ("id\\x00", "smsbox: 0: Accepted\\x00junk")
    report = DeliveryReport(SmsState.DELIVERED, "id\x00", at, 1, "stat\x00")
    assert (report.gateway_id, report.raw_status) == ("id\\x00", "stat\\x00")
    inbound = InboundSms("+57\x00", "hola\udcff", at, "g\x00")
    assert (inbound.phone, inbound.text, inbound.gateway_id) == ("+57\\x00", "hola\\udcff", "g\\x00")


class NulCauseAmi(FakeAmi):
    """A PBX whose Hangup's Cause-txt holds a NUL (the AMI framer keeps 0x00)."""

    def _call(self, uniqueid: str, send: Callable[[bytes], None]) -> None:
        channel = f"PJSIP/carrier-{uniqueid[-6:]}"
        send(_ami_message(Event="Newchannel", Channel=channel, ChannelState="0", Uniqueid=uniqueid))
        send(_ami_message(Event="OriginateResponse", ActionID=uniqueid, Response="Success", Uniqueid=uniqueid))
        send(_ami_message(Event="Newstate", Channel=channel, ChannelState="6", Uniqueid=uniqueid))
        hangup = {"Cause": "16", "Cause-txt": "Normal\x00Clearing"}
        send(_ami_message(Event="Hangup", Channel=channel, Uniqueid=uniqueid, **hangup))


@pytest.fixture
def nul_ami() -> Iterator[NulCauseAmi]:
    server = NulCauseAmi()
    yield server
    server.close()


class _NulSmsbox(http.server.BaseHTTPRequestHandler):
    """An smsbox taking every text, its answer's body holding a NUL."""

    def do_GET(self) -> None:
        body = b"0: Accepted for delivery\x00junk"
        self.send_response(202)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def nul_smsbox() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NulSmsbox)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def _site(tmp_path: Path, store: str | None, ami_port: int, smsbox_port: int) -> Path:
    path = write_sites(tmp_path, database=store)
    text = path.read_text()
    simulator = 'plugin = "simulator"\nseed = 7\nring_seconds = [1, 10]\ntalk_seconds = [5, 30]\n'
    ami = (
        f'plugin = "asterisk_ami"\nhost = "127.0.0.1"\nport = {ami_port}\nusername = "cartera"\n'
        f'secret = "s3cret-value"\nqueue = "cobranza"\nspool_dir = "{tmp_path / "spool"}"\n'
    )
    outbox = 'plugin = "outbox"\npath = "sms/outbox.jsonl"\n'
    kannel = (
        f'plugin = "kannel"\nsmsbox_url = "http://127.0.0.1:{smsbox_port}"\n'
        'username = "cartera"\npassword = "kannel-pass"\n'
    )
    assert simulator in text
    assert outbox in text
    path.write_text(text.replace(simulator, ami).replace(outbox, kannel))
    (tmp_path / "spool").mkdir()
    write_portfolio(tmp_path / "inbox", ["BCO-1;Ana Gómez;300 123 4567;;1.250.000,00;COP"])
    return path


def test_a_pbxs_nul_does_not_cost_the_calls_end(
    tmp_path: Path, store: str | None, nul_ami: NulCauseAmi, nul_smsbox: int, open_node: Callable[..., Node]
) -> None:
    node = open_node(_site(tmp_path, store, nul_ami.port, nul_smsbox))
    node.creditor_sync().run_once()
    request = node.calls.place_call(phone=None, account="BCO-1", actor="test")
    result = node.calls.wait_for_call(request.attempt_id, timeout=30)
    assert result is not None
    with node.db.session() as session:
        attempt = session.get_one(ContactAttempt, request.attempt_id)
        assert (attempt.state, attempt.outcome) == ("finished", "answered")  # its real end, not placing/unknown
        assert attempt.raw_cause == "16 Normal\\x00Clearing"  # visible, on both stores


def test_an_smsbox_answers_nul_does_not_cost_the_texts_submission(
    tmp_path: Path, store: str | None, nul_ami: NulCauseAmi, nul_smsbox: int, open_node: Callable[..., Node]
) -> None:
    node = open_node(_site(tmp_path, store, nul_ami.port, nul_smsbox))
    node.creditor_sync().run_once()
    sent = node.texts.send_sms(phone=None, text="Hola", account="BCO-1", actor="test")
    assert sent.state is SmsState.SUBMITTED
    with node.db.session() as session:
        row = session.get_one(SmsRow, sent.message_id)
        assert row.state == "submitted"  # not queued for ever
        assert row.detail is not None
        assert row.detail.endswith("smsbox: 0: Accepted for delivery\\x00junk")
        outcomes = session.scalars(select(ActivityRow.outcome).where(ActivityRow.kind == "sms")).all()
        assert outcomes == ["submitted"]  # the creditor's export gets it
