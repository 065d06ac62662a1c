"""The outbox file: one JSON object per line, appended atomically per message; SMS encoding rules."""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# 3GPP TS 23.038 (formerly GSM 03.38) section 6.2.1, the GSM 7 bit default alphabet, code points 0x00-0x7F
# in order; 0x1B is the escape to the extension table, so it is no character of its own.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# TS 23.038 section 6.2.1.1, the default extension table: each is sent as ESC + code, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE, _GSM7_PART = 160, 153  # septets; a concatenated part loses 7 septets to its header
_UCS2_SINGLE, _UCS2_PART = 70, 67  # UTF-16 code units


def sms_encoding(text: str) -> str:
    """``GSM-7`` when every character is in the default alphabet or its extension table, else ``UCS-2``."""
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def segment_count(text: str) -> int:
    """How many SMS the text takes: one when it fits a single message, else concatenated parts.

    Each part is decoded on its own, so an escape sequence or a surrogate pair never straddles two parts.
    """
    if sms_encoding(text) == GSM7:
        units = [2 if c in GSM7_EXTENSION else 1 for c in text]
        single, part = _GSM7_SINGLE, _GSM7_PART
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, part = _UCS2_SINGLE, _UCS2_PART
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One line of the outbox."""

    gateway_id: str
    message_id: int
    to: str
    text: str
    at: str
    encoding: str
    segments: int


class OutboxFile:
    """Appends entries to a JSON Lines file; thread-safe, each line flushed (and fsynced) before returning."""

    def __init__(self, path: Path, *, fsync: bool) -> None:
        self.path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._file is None:
                self._file = self.path.open("ab")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def probe(self) -> None:
        """Raise :class:`OSError` unless the outbox's directory can be created and the file appended to."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab"):
            pass

    def append(self, *, message_id: int, to: str, text: str, at: datetime) -> OutboxEntry:
        """Write one message as a line; it is on disk (fsynced when configured) when this returns."""
        entry = OutboxEntry(
            gateway_id=uuid.uuid4().hex,
            message_id=message_id,
            to=to,
            text=text,
            at=at.astimezone(UTC).isoformat(),
            encoding=sms_encoding(text),
            segments=segment_count(text),
        )
        line = (json.dumps(asdict(entry), ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            if self._file is None:
                raise RuntimeError(f"outbox {self.path} is not open")
            self._file.write(line)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        return entry
