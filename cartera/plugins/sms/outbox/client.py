"""The outbox file: one JSON object per line, appended atomically per message."""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cartera.plugin import LineAppender, segment_count, sms_encoding


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
    """Appends entries to a JSON Lines file; thread-safe, each line written whole (and fsynced) before returning,
    or not at all: a line whose write failed (disk full) is cut off, never written later nor left torn."""

    def __init__(self, path: Path, *, fsync: bool) -> None:
        self.path = path
        self._fsync = fsync
        self._lock = threading.Lock()
        self._file: LineAppender | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._file is None:
                self._file = LineAppender(self.path)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def probe(self) -> None:
        """Raise :class:`OSError` unless the outbox's directory can be created and the file appended to (a regular
        file: a FIFO, device or socket is refused at once, see :class:`LineAppender`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        LineAppender(self.path).close()

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
            self._file.append(line)
            if self._fsync:
                os.fsync(self._file.fileno())
        return entry
