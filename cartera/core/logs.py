"""Structured logging: one line per event, ``key=value`` text or JSON, secrets masked everywhere."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Collection, Hashable
from datetime import UTC, datetime
from typing import Any, Literal

from cartera.core.control_characters import escape_controls, escape_unprintable
from cartera.core.redaction import redact

LogFormat = Literal["text", "json"]


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log event ``name`` with structured ``fields``."""
    logger.log(level, name, extra={"fields": fields})


class FirstTime:
    """Whether something (a path, a name) is seen for the first time, thread-safe: to warn about it once. A
    listing's user forgets what is no longer listed (:meth:`forget_unlisted`): kept for good, the names a server
    lists anew on every sync grew the set without end (round 23 A-F2)."""

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()
        self._lock = threading.Lock()

    def __call__(self, key: Hashable) -> bool:
        with self._lock:
            first = key not in self._seen
            self._seen.add(key)
        return first

    def warn(self, key: Hashable, logger: logging.Logger, name: str, **fields: Any) -> None:
        """:func:`event` ``name`` at WARNING with ``fields``, the first time ``key`` is seen only."""
        if self(key):
            event(logger, name, logging.WARNING, **fields)

    def forget_unlisted(self, listed: Collection[Hashable]) -> None:
        """Forget what ``listed`` no longer holds: seen again, it is new (warned about again)."""
        with self._lock:
            self._seen = {key for key in self._seen if key in listed}

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


def _text_value(value: Any) -> str:
    """``value`` as one token of the text line: quoted when it is empty or holds a space, ``=`` or a character
    that is not printable (a newline, a tab, ESC, a bidi mark), which is escaped (``\\n``, ``\\u202e``): a
    value never forges a line or a field."""
    text = redact(str(value))  # before escaping: an escaped secret is in a form redaction may not know
    if text and text.isprintable() and " " not in text and "=" not in text:
        return text
    return escape_unprintable(json.dumps(text, ensure_ascii=False))


def _redacted(value: Any) -> Any:
    """``value`` with every text in it redacted, for JSON: secrets are masked before JSON escapes them."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {redact(key) if isinstance(key, str) else key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return redact(str(value))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        # the message's arguments are a path, a peer's answer: escaped like a field's value, it forges no line
        parts = [ts, record.levelname, record.name, escape_controls(redact(record.getMessage()))]
        parts += [f"{key}={_text_value(value)}" for key, value in _fields(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        # each value redacted, then the line (a secret split across values, a form JSON gave it)
        return redact(json.dumps(_redacted(doc), default=str, ensure_ascii=False))


def configure(fmt: LogFormat = "text", level: int = logging.INFO) -> None:
    """Route every ``cartera.*`` logger (and plugins' loggers) to stderr in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("apscheduler", "botocore", "urllib3", "alembic"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
