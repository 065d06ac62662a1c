"""Pushed batches on disk: durable before the API answers, ``pending`` until core imported them.

A batch is one JSON file, ``{creditor}/pending/{received}-{batch_id}.json``, moved to ``imported/`` when core
acknowledges it, or to ``rejected/`` when core could not read it as a whole (a stored file damaged, or refused
by a newer version's checks) and set it aside; ``received`` (nanoseconds) orders deliveries. Core's rejection
report of a batch is kept as ``{creditor}/rejections/{same name}``. The file's bytes are the batch's canonical JSON,
so its sha256 (core's idempotency key) differs for every batch id and is the same on every read.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Literal

from pydantic import ValidationError

from cartera.plugin import AssignmentBatch, AssignmentRow, FileRejected, RowError, fsync_dir, write_atomically
from cartera.plugins.crm_sync.http.models import BatchIn, BatchOut, RejectedRow, rows_of

PENDING, IMPORTED, REJECTED, REPORTS = "pending", "imported", "rejected", "rejections"
_SET_ASIDE = (PENDING, IMPORTED, REJECTED)
_RECEIVED_DIGITS = 20


class BatchConflict(Exception):
    """The batch id was used before for different content."""


def canonical(batch: BatchIn) -> bytes:
    """The bytes a batch is stored as: sorted keys, one value per line, UTF-8."""
    document = {
        "batch_id": batch.batch_id,
        "creditor": batch.creditor,
        "portfolio": batch.portfolio,
        "rows": batch.rows,
    }
    return (json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1) + "\n").encode()


def _writing(content: bytes) -> Callable[[IO[bytes]], None]:
    def write(sink: IO[bytes]) -> None:
        sink.write(content)

    return write


def parse(path: Path) -> tuple[bytes, BatchIn]:
    """A batch file's bytes and envelope; :class:`FileRejected` names the file and what is wrong with it."""
    raw = _read(path)
    return raw, _envelope(raw, path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FileRejected(str(path), f"cannot read: {exc.strerror or exc}") from None


def _envelope(raw: bytes, path: Path) -> BatchIn:
    try:
        document = json.loads(raw, parse_float=Decimal)
    except ValueError as exc:
        raise FileRejected(str(path), f"not a JSON batch: {exc}") from None
    try:
        return BatchIn.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise FileRejected(str(path), f"not a valid batch: {problems}") from None


class BatchSpool:
    """The pushed batches under ``root``; safe to use from the API's and the sync job's threads at once."""

    def __init__(self, root: Path, currency: str) -> None:
        self.root = root
        self.currency = currency
        self._lock = threading.Lock()
        self._last_received = 0

    def read(self, path: Path) -> AssignmentBatch:
        """The batch at ``path``; its envelope is checked when its items are read (:class:`FileRejected`)."""
        raw = _read(path)
        return AssignmentBatch(str(path), hashlib.sha256(raw).hexdigest(), _Rows(raw, path, self.currency))

    def save(self, batch: BatchIn) -> tuple[BatchOut, bool]:
        """Store ``batch`` durably unless its id is known: (its result, whether it was stored now).

        Raises :class:`BatchConflict` when the id was used for different content.
        """
        content = canonical(batch)
        with self._lock:
            known = self._find(batch.creditor, batch.batch_id)
            if known is not None:
                if known.read_bytes() != content:
                    raise BatchConflict(
                        f"batch {batch.batch_id!r} was already received with different content; use a new batch_id"
                    )
                return self._result(known), False
            self._last_received = max(time.time_ns(), self._last_received + 1)
            directory = self.root / batch.creditor / PENDING
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{self._last_received:0{_RECEIVED_DIGITS}d}-{batch.batch_id}.json"
            write_atomically(path, _writing(content))
            return self._result(path), True

    def result(self, creditor: str, batch_id: str) -> BatchOut | None:
        """The batch's result, or None when the id is unknown; never torn by a concurrent move."""
        with self._lock:
            path = self._find(creditor, batch_id)
            return None if path is None else self._result(path)

    def pending(self) -> list[Path]:
        """Batches waiting for import, in the order they were received."""
        found = self.root.glob(f"*/{PENDING}/*.json")
        return sorted(found, key=lambda path: path.name)

    def mark_imported(self, path: Path) -> bool:
        """Move a pending batch to ``imported``; False when ``path`` is not a pending batch of this spool."""
        return self._move(path, IMPORTED)

    def mark_rejected(self, path: Path) -> bool:
        """Move a pending batch to ``rejected``; False when ``path`` is not a pending batch of this spool."""
        return self._move(path, REJECTED)

    def _move(self, path: Path, state: str) -> bool:
        if path.parent.name != PENDING or path.parent.parent.parent != self.root:
            return False
        target = path.parent.parent / state / path.name
        with self._lock:
            if not path.exists():
                return False
            target.parent.mkdir(exist_ok=True)
            os.replace(path, target)
            fsync_dir(target.parent)
            fsync_dir(path.parent)
        return True

    def record_rejections(self, path: Path, errors: Sequence[RowError]) -> bool:
        """Keep core's rejection report of the batch at ``path``; False when it is not a batch of this spool."""
        if path.parent.name not in _SET_ASIDE or path.parent.parent.parent != self.root:
            return False
        report = [{"line": error.line, "field": error.field, "reason": error.reason} for error in errors]
        target = path.parent.parent / REPORTS / path.name
        target.parent.mkdir(exist_ok=True)
        write_atomically(target, _writing(json.dumps(report, ensure_ascii=False).encode()))
        return True

    def _find(self, creditor: str, batch_id: str) -> Path | None:
        pattern = "?" * _RECEIVED_DIGITS + f"-{batch_id}.json"
        for state in _SET_ASIDE:
            for path in (self.root / creditor / state).glob(pattern):
                return path
        return None

    def _result(self, path: Path) -> BatchOut:
        state = path.parent.name
        try:
            _, batch = parse(path)
        except FileRejected:
            if state != REJECTED:
                raise
            batch = None
        status: Literal["pending", "imported", "rejected"] = (
            "imported" if state == IMPORTED else "rejected" if state == REJECTED else "pending"
        )
        report = path.parent.parent / REPORTS / path.name
        if report.exists():
            errors = [RowError(**error) for error in json.loads(report.read_bytes())]
        elif batch is not None:
            errors = [item for item in rows_of(batch, self.currency) if isinstance(item, RowError)]
        else:
            errors = []
        rejected = [RejectedRow(index=error.line - 1, field=error.field, reason=error.reason) for error in errors]
        if batch is None:  # unreadable: what its place in the spool tells
            creditor, batch_id = path.parent.parent.name, path.stem.split("-", 1)[1]
            return BatchOut(
                batch_id=batch_id, creditor=creditor, portfolio="", status=status, rows=0, rejected=rejected
            )
        return BatchOut(
            batch_id=batch.batch_id,
            creditor=batch.creditor,
            portfolio=batch.portfolio,
            status=status,
            rows=len(batch.rows),
            rejected=rejected,
        )


@dataclass(frozen=True)
class _Rows:
    """A stored batch's rows for core, parsed on each iteration."""

    raw: bytes
    path: Path
    currency: str

    def __iter__(self) -> Iterator[AssignmentRow | RowError]:
        return rows_of(_envelope(self.raw, self.path), self.currency)
