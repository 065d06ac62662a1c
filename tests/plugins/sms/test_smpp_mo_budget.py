"""Incomplete concatenated MO parts are bounded in bytes, per sender and in all (round 21 C-F7): the caps on how
many messages wait did not bound what each holds (254 parts of up to 64 KiB each, ~160 GB in all). Bytes are
counted by the reassembler's own accounting, checked here against what it really holds."""

from __future__ import annotations

import logging
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from cartera.core.testing.context import CapturingContext
from cartera.plugins.sms.smpp.plugin import (
    MO_PART_OVERHEAD_BYTES,
    MO_PARTS_BYTES_TOTAL,
    SmppGateway,
    _Concatenation,
)
from tests.peers.net import wait_until
from tests.plugins.sms.test_smpp_hostile import DATA_SM, RESPONSE, FakeSmsc, _config, pdu

pytestmark = pytest.mark.abuse


def _joiner(**limits: Any) -> tuple[_Concatenation, list[float]]:
    now = [0.0]
    return _Concatenation(logging.getLogger("test.smpp"), clock=lambda: now[0], **limits), now


def _really_held(joiner: _Concatenation) -> int:
    """What the joiner holds, counted from its parts: each part's text in UTF-8 and its overhead."""
    return sum(
        len(text.encode("utf-8", "surrogatepass")) + MO_PART_OVERHEAD_BYTES
        for _first_at, parts in joiner._parts.values()
        for text in parts.values()
    )


def _dropped(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    records = [r.fields for r in caplog.records if r.getMessage() == "smpp.mo_parts_dropped"]  # type: ignore[attr-defined]
    return [(r["reason"], r["reference"]) for r in records]


def _size(text: str) -> int:
    return len(text.encode()) + MO_PART_OVERHEAD_BYTES


def test_a_sender_over_its_byte_budget_loses_its_oldest_message(caplog: pytest.LogCaptureFixture) -> None:
    text = "x" * 2900  # 3,000 bytes a part with its overhead
    assert _size(text) == 3000
    joiner, _now = _joiner(bytes_per_sender=10_000, bytes_total=100_000)
    with caplog.at_level(logging.WARNING):
        for reference in range(4):
            assert joiner.add("+573001", (reference, 2, 1), text) is None
        joiner.add("+573002", (0, 2, 1), text)  # another sender's budget is its own
    assert joiner.held_bytes == _really_held(joiner) == 4 * 3000
    assert _dropped(caplog) == [("too many bytes from this sender", 0)]
    assert joiner.add("+573001", (0, 2, 2), "b") is None  # its first part was dropped
    assert joiner.add("+573001", (3, 2, 2), "z") == text + "z"  # the newest survived
    assert joiner.add("+573002", (0, 2, 2), "y") == text + "y"


def test_everyone_over_the_byte_budget_loses_the_oldest_message(caplog: pytest.LogCaptureFixture) -> None:
    """The red team's shape: the sender is whatever the peer writes, so the budget in all is what binds."""
    text = "Ω" * 1450  # 2 bytes a character in UTF-8: 3,000 a part with its overhead
    joiner, _now = _joiner(bytes_per_sender=100_000, bytes_total=10_000)
    with caplog.at_level(logging.WARNING):
        for n in range(50):
            joiner.add(f"+57300{n:04d}", (n % 256, 255, 1 + n % 254), text)
    assert joiner.held_bytes == _really_held(joiner) == 3 * 3000
    assert len(_dropped(caplog)) == 1  # one line a minute per reason, counting the others
    assert _dropped(caplog)[0] == ("too many bytes in all", 0)


def test_one_message_growing_past_the_budget_drops_older_ones_first_then_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = "x" * 2900
    joiner, now = _joiner(bytes_per_sender=10_000, bytes_total=100_000)
    with caplog.at_level(logging.WARNING):
        joiner.add("+573001", (1, 2, 1), text)
        now[0] = 1
        assert joiner.add("+573001", (2, 255, 1), text) is None
        assert joiner.add("+573001", (2, 255, 2), text) is None
        assert joiner.held_bytes == 9000
        now[0] = 61
        assert joiner.add("+573001", (2, 255, 3), text) is None  # 12,000: the older message goes
        assert joiner.held_bytes == _really_held(joiner) == 9000
        now[0] = 122
        assert joiner.add("+573001", (2, 255, 4), text) is None  # 12,000 again, itself the oldest: it goes
    assert joiner.held_bytes == _really_held(joiner) == 0
    assert len(joiner) == 0
    assert _dropped(caplog) == [("too many bytes from this sender", 1), ("too many bytes from this sender", 2)]


def test_held_bytes_follow_completions_expiries_and_parts_sent_again() -> None:
    joiner, now = _joiner(ttl_s=600)
    joiner.add("+573001", (1, 3, 1), "uno ")
    joiner.add("+573001", (1, 3, 1), "UNO ")  # the SMSC delivered part 1 again: it replaces, not adds
    joiner.add("+573002", (7, 2, 1), "ñandú")
    assert joiner.held_bytes == _really_held(joiner) == _size("UNO ") + _size("ñandú")
    joiner.add("+573001", (1, 3, 3), "tres")
    assert joiner.add("+573001", (1, 3, 2), "dos ") == "UNO dos tres"
    assert joiner.held_bytes == _really_held(joiner) == _size("ñandú")
    now[0] = 601
    joiner.add("+573003", (9, 2, 1), "\ud800")  # a lone surrogate is counted, not an error
    assert joiner.held_bytes == _really_held(joiner) == 3 + MO_PART_OVERHEAD_BYTES  # ED A0 80
    joiner.add("+573003", (9, 2, 2), "x")
    assert joiner.held_bytes == 0


def _flood_part(sender: bytes, reference: int, number: int, sequence: int) -> bytes:
    """The red team's data_sm: esm_class 0x40, UCS-2, a message_payload of a concat UDH and 30,000 x Ω (60 KB)."""
    payload = bytes([5, 0, 3, reference, 255, number]) + ("Ω" * 30_000).encode("utf-16-be")
    body = b"\x00\x01\x01" + sender + b"\x00\x01\x01Cartera\x00" + bytes([0x40, 0, 8])
    return pdu(DATA_SM, sequence, body + struct.pack(">HH", 0x0424, len(payload)) + payload)


def test_the_red_team_flood_through_the_link_stays_within_the_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 senders x 10 first parts of 255, 60 KB each (12 MB; 600 KB a sender, under its budget): what waits
    stays within the budget in all."""
    flood = [_flood_part(b"5730%08d" % s, s, n, 1000 + 10 * s + n) for s in range(20) for n in range(1, 11)]

    def after_bind(conn: socket.socket, session: int) -> None:
        if session == 1:
            for data in flood:
                conn.sendall(data)

    smsc = FakeSmsc(after_bind)
    gateway = SmppGateway(_config(smsc.port), CapturingContext(tmp_path / "data"))
    try:
        with caplog.at_level(logging.WARNING):
            gateway.start()
            wait_until(
                lambda: sum(1 for r in smsc.responses if r[0] == DATA_SM | RESPONSE) == len(flood), "every data_sm_resp"
            )
        assert {r[1] for r in smsc.responses if r[0] == DATA_SM | RESPONSE} == {0}
        held = gateway._inbound.held_bytes
        assert held == _really_held(gateway._inbound)
        one_message = 10 * (60_000 + MO_PART_OVERHEAD_BYTES)  # whole messages go, the oldest first
        assert MO_PARTS_BYTES_TOTAL - one_message < held <= MO_PARTS_BYTES_TOTAL
        assert ("too many bytes in all", 0) in _dropped(caplog)
    finally:
        gateway.stop()
        smsc.close()
