"""The outbox SMS gateway: conformance plus the outbox file's format and SMS encoding rules."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cartera.contact.smstext import GSM7_BASIC, GSM7_EXTENSION, segment_count, sms_encoding
from cartera.core.durable import NotARegularFile
from cartera.core.models import CheckResult, SmsMessage, SmsState
from cartera.core.registry import AdapterCatalog
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.sms import SmsConformance
from cartera.plugins.sms.outbox import plugin
from cartera.plugins.sms.outbox.config import OutboxConfig
from cartera.plugins.sms.outbox.plugin import OutboxGateway

FIELDS = {"gateway_id", "message_id", "to", "text", "at", "encoding", "segments"}


def _lines(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    return [json.loads(line) for line in raw.decode("utf-8").split("\n")[:-1]]


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "spool" / "sms" / "outbox.jsonl"


class TestOutboxConformance(SmsConformance):
    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "data")

    @pytest.fixture
    def gateway(self, context: CapturingContext, outbox_path: Path) -> Iterator[OutboxGateway]:
        gateway = OutboxGateway(OutboxConfig(path=outbox_path), context)
        gateway.start()
        yield gateway
        gateway.stop()

    @pytest.fixture
    def phone(self) -> str:
        return "+34600123456"


@pytest.fixture
def context(tmp_path: Path) -> CapturingContext:
    return CapturingContext(tmp_path / "data")


@pytest.fixture
def gateway(context: CapturingContext, outbox_path: Path) -> Iterator[OutboxGateway]:
    gateway = OutboxGateway(OutboxConfig(path=outbox_path, fsync=False), context)
    gateway.start()
    yield gateway
    gateway.stop()


def test_registers_under_its_name() -> None:
    catalog = AdapterCatalog.empty()
    plugin.cartera_register_sms_gateways(catalog.sms_gateways)
    assert catalog.sms_gateways.get("outbox") is OutboxGateway


def test_relative_path_is_taken_from_the_sites_directory(tmp_path: Path) -> None:
    config = OutboxConfig.model_validate({"path": "var/outbox.jsonl"}, context={"base_dir": tmp_path})
    assert config.path == tmp_path / "var" / "outbox.jsonl"
    assert config.fsync is True


def test_every_line_is_a_json_object_with_the_fields(
    gateway: OutboxGateway, context: CapturingContext, outbox_path: Path
) -> None:
    before = datetime.now(UTC)
    texts = ["Pague hoy", "¿Señora Muñoz? ¡Llame hoy!", "Cuota vencida: 120 €", "Está pendiente 😀"]
    results = [
        gateway.send(SmsMessage(message_id=i, site="test", phone="+34600123456", text=t))
        for i, t in enumerate(texts, start=1)
    ]
    lines = _lines(outbox_path)
    assert [set(line) for line in lines] == [FIELDS] * len(texts)
    assert [line["text"] for line in lines] == texts
    assert [line["message_id"] for line in lines] == [1, 2, 3, 4]
    assert [line["gateway_id"] for line in lines] == [r.gateway_id for r in results]
    assert {line["to"] for line in lines} == {"+34600123456"}
    assert [line["encoding"] for line in lines] == ["GSM-7", "GSM-7", "GSM-7", "UCS-2"]
    assert [line["segments"] for line in lines] == [1, 1, 1, 1]
    for line in lines:
        at = datetime.fromisoformat(line["at"])
        assert at.utcoffset() is not None
        assert at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
        assert before <= at <= datetime.now(UTC)
        assert len(line["gateway_id"]) == 32
        int(line["gateway_id"], 16)
    assert all(r.state is SmsState.SUBMITTED for r in results)
    reports = context.wait_for_deliveries(len(texts))
    assert [(r.message_id, r.gateway_id, r.state, r.raw_status) for r in reports] == [
        (r.message_id, r.gateway_id, SmsState.DELIVERED, "written to outbox") for r in results
    ]


def test_the_standard_tables_have_their_sizes() -> None:
    assert len(GSM7_BASIC) == 127  # 128 code points less the escape
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("", "GSM-7", 1),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),
        ("€" + "a" * 159, "GSM-7", 2),
        ("^" + "a" * 158, "GSM-7", 1),
        ("a" * 152 + "€" + "a" * 10, "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # without splitting it would fit 2 x 153
        ("{}[]~|\\\f", "GSM-7", 1),
        ("ñÑ¿¡ üÜ é É à", "GSM-7", 1),
        ("¡Señor Muñoz! ¿Nos llama hoy?", "GSM-7", 1),
        ("¿Pagará?", "UCS-2", 1),
        ("á", "UCS-2", 1),
        ("í ó ú Á", "UCS-2", 1),
        ("ç", "UCS-2", 1),  # only the capital Ç is in the table
        ("`", "UCS-2", 1),
        ("á" * 70, "UCS-2", 1),
        ("á" * 71, "UCS-2", 2),
        ("á" * 134, "UCS-2", 2),
        ("á" * 135, "UCS-2", 3),
        ("😀" * 35, "UCS-2", 1),
        ("😀" * 36, "UCS-2", 2),
        ("a" * 68 + "😀", "UCS-2", 1),
        ("a" * 69 + "😀", "UCS-2", 2),
        ("a" * 66 + "😀" + "a" * 66, "UCS-2", 3),  # the pair does not straddle parts: 66 + 68 units
    ],
)
def test_encoding_and_segments(text: str, encoding: str, segments: int) -> None:
    assert sms_encoding(text) == encoding
    assert segment_count(text) == segments


def test_concurrent_senders_leave_whole_lines(outbox_path: Path, context: CapturingContext) -> None:
    gateway = OutboxGateway(OutboxConfig(path=outbox_path), context)
    gateway.start()
    text = "Aviso de pago, ¿podría llamarnos? " * 8
    start = threading.Barrier(8)

    def worker(thread: int) -> None:
        start.wait()
        for n in range(25):
            gateway.send(SmsMessage(message_id=thread * 100 + n, site="test", phone="+34600123456", text=text))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    gateway.stop()
    lines = _lines(outbox_path)
    assert len(lines) == 200
    assert all(set(line) == FIELDS and line["text"] == text for line in lines)
    assert sorted(line["message_id"] for line in lines) == sorted(t * 100 + n for t in range(8) for n in range(25))
    assert len({line["gateway_id"] for line in lines}) == 200
    assert len(context.deliveries) == 200


def test_restart_appends_to_the_existing_outbox(outbox_path: Path, context: CapturingContext) -> None:
    for message_id in (1, 2):
        gateway = OutboxGateway(OutboxConfig(path=outbox_path), context)
        gateway.start()
        gateway.send(SmsMessage(message_id=message_id, site="test", phone="+34600123456", text="Hola"))
        gateway.stop()
    assert [line["message_id"] for line in _lines(outbox_path)] == [1, 2]


def test_check_creates_the_directory_and_names_the_path(outbox_path: Path, context: CapturingContext) -> None:
    result = OutboxGateway(OutboxConfig(path=outbox_path), context).check()
    assert result.ok
    assert str(outbox_path) in result.detail
    assert outbox_path.parent.is_dir()


def test_check_fails_when_the_directory_cannot_be_made(tmp_path: Path, context: CapturingContext) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    path = blocker / "outbox.jsonl"
    result = OutboxGateway(OutboxConfig(path=path), context).check()
    assert not result.ok
    assert str(path) in result.detail


def test_check_fails_when_the_path_is_a_directory(tmp_path: Path, context: CapturingContext) -> None:
    result = OutboxGateway(OutboxConfig(path=tmp_path), context).check()
    assert not result.ok
    assert str(tmp_path) in result.detail


def test_send_after_stop_raises(gateway: OutboxGateway) -> None:
    gateway.stop()
    with pytest.raises(RuntimeError, match="not open"):
        gateway.send(SmsMessage(message_id=1, site="test", phone="+34600123456", text="Hola"))


@pytest.mark.abuse
@pytest.mark.parametrize("reader", [False, True], ids=["no reader", "a reader"])
def test_an_outbox_that_is_a_fifo_is_refused_at_once(tmp_path: Path, context: CapturingContext, reader: bool) -> None:
    """Round 21 C-F8: a FIFO as the outbox path made check (and start) block for ever in open(), silently."""
    fifo = tmp_path / "outbox.jsonl"
    os.mkfifo(fifo)
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK) if reader else None  # then open() would not block: taken
    gateway = OutboxGateway(OutboxConfig(path=fifo), context)
    answers: list[object] = []

    def attempt() -> None:
        answers.append(gateway.check())
        try:
            gateway.start()
        except OSError as exc:
            answers.append(exc)
        else:
            answers.append("started")
            gateway.stop()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(60)  # only so that a hang fails this test instead of the run: a refusal takes no wait
    if worker.is_alive():
        unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # let the blocked open()s through
        worker.join()
        os.close(unblock)
        pytest.fail(f"check/start blocked on a FIFO: {answers}")
    if held is not None:
        os.close(held)
    checked, started = answers
    assert isinstance(checked, CheckResult)
    assert not checked.ok
    assert checked.detail == f"outbox {fifo}: not a regular file (a FIFO)"
    assert isinstance(started, NotARegularFile)
    assert str(started) == f"{fifo}: not a regular file (a FIFO)"
