"""Pushed batches on disk: durable before the API answers, ``pending`` until core imported them.

A batch is one JSON file, ``{creditor}/pending/{received}-{batch_id}.json``, moved to ``imported/`` when core
acknowledges it, or to ``rejected/`` when core could not read it as a whole (a stored file damaged, or refused
by a newer version's checks) and set it aside; ``received`` (nanoseconds) orders deliveries. Core's rejection
report of a batch is kept as ``{creditor}/rejections/{same name}``. The file's bytes are the batch's canonical JSON,
so its sha256 (core's idempotency key) differs for every batch id and is the same on every read.

The batch's summary (its sha256 and result: creditor, portfolio, rows, rejected rows) is kept as
``{creditor}/summaries/{same name}``, written once when the batch is saved (again when core rejects it whole), so
a result is answered from it and the batch's place, never by parsing the batch; the spool's lock only covers
finding and moving files, never reading or writing a whole batch.

A batch set aside (imported or rejected) is kept ``keep_seconds`` from the moment it was set aside (its file's
modification time), then removed with its summary and rejection report (:meth:`BatchSpool.purge`): a creditor
pushing without end cannot fill the node's disk. Until then a re-push of its id answers its result as before;
after, the id is unknown: a re-push is stored and imported again (core knows its sha256 and changes nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ValidationError

from cartera.plugin import AssignmentBatch, AssignmentRow, FileRejected, RowError, fsync_dir, write_atomically
from cartera.plugins.crm_sync.http.models import BatchIn, BatchOut, RejectedRow, rows_of

PENDING, IMPORTED, REJECTED, REPORTS, SUMMARIES = "pending", "imported", "rejected", "rejections", "summaries"
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


class _Summary(BaseModel):
    """A stored batch's sha256 and result (its status is where the batch is now)."""

    sha256: str
    result: BatchOut


def _rejected_rows(errors: Iterable[AssignmentRow | RowError]) -> list[RejectedRow]:
    """The row errors among ``errors`` as the API shows them (index = line - 1)."""
    return [
        RejectedRow(index=error.line - 1, field=error.field, reason=error.reason)
        for error in errors
        if isinstance(error, RowError)
    ]


def _summary(content: bytes, batch: BatchIn, currency: str) -> _Summary:
    result = BatchOut(
        batch_id=batch.batch_id,
        creditor=batch.creditor,
        portfolio=batch.portfolio,
        status="pending",
        rows=len(batch.rows),
        rejected=_rejected_rows(rows_of(batch, currency)),
    )
    return _Summary(sha256=hashlib.sha256(content).hexdigest(), result=result)


def _status(path: Path) -> Literal["pending", "imported", "rejected"]:
    state = path.parent.name
    return "imported" if state == IMPORTED else "rejected" if state == REJECTED else "pending"


class BatchSpool:
    """The pushed batches under ``root``; safe to use from the API's and the sync job's threads at once."""

    def __init__(self, root: Path, currency: str, keep_seconds: float | None = None) -> None:
        self.root = root
        self.currency = currency
        self.keep_seconds = keep_seconds  #: how long a batch set aside is kept; None: for ever
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
        summary = _summary(content, batch, self.currency)
        directory = self.root / batch.creditor / PENDING
        directory.mkdir(parents=True, exist_ok=True)
        staged = directory.parent / f".{batch.batch_id}.{uuid.uuid4().hex}.staged"
        write_atomically(staged, _writing(content))  # the long write, before the lock
        try:
            with self._lock:
                known = self._find(batch.creditor, batch.batch_id)
                if known is None:
                    self._last_received = max(time.time_ns(), self._last_received + 1)
                    path = directory / f"{self._last_received:0{_RECEIVED_DIGITS}d}-{batch.batch_id}.json"
                    self._keep_summary(path, summary)
                    os.replace(staged, path)
                    fsync_dir(directory)
                    fsync_dir(staged.parent)
                    return summary.result, True
                stored = self._summary(known)
        finally:
            staged.unlink(missing_ok=True)
        if stored.sha256 != summary.sha256:
            raise BatchConflict(
                f"batch {batch.batch_id!r} was already received with different content; use a new batch_id"
            )
        return self._answer(known, stored), False

    def result(self, creditor: str, batch_id: str) -> BatchOut | None:
        """The batch's result, or None when the id is unknown; never torn by a concurrent move, never a parse
        of the batch (but once for a batch stored before summaries were kept)."""
        with self._lock:
            path = self._find(creditor, batch_id)
            if path is None:
                return None
            summary = self._summary(path)
        return self._answer(path, summary)

    def _answer(self, path: Path, summary: _Summary) -> BatchOut:
        """The result of the batch found at ``path``: its summary, the status of that place, and core's
        rejection report once there is one."""
        report = path.parent.parent / REPORTS / path.name
        update: dict[str, object] = {"status": _status(path)}
        try:
            errors = json.loads(report.read_bytes())
        except FileNotFoundError:  # none, or purged meanwhile
            pass
        else:
            update["rejected"] = _rejected_rows(RowError(**error) for error in errors)
        return summary.result.model_copy(update=update)

    def pending(self) -> list[Path]:
        """Batches waiting for import, in the order they were received."""
        found = self.root.glob(f"*/{PENDING}/*.json")
        return sorted(found, key=lambda path: path.name)

    def mark_imported(self, path: Path) -> bool:
        """Move a pending batch to ``imported``; False when ``path`` is not a pending batch of this spool."""
        return self._move(path, IMPORTED)

    def mark_rejected(self, path: Path) -> bool:
        """Move a pending batch to ``rejected`` and summarise it as it is stored now (unreadable: no rows);
        False when ``path`` is not a pending batch of this spool."""
        if not self._move(path, REJECTED):
            return False
        self._keep_summary(path, self._summary_of(path.parent.parent / REJECTED / path.name))
        return True

    def _move(self, path: Path, state: str) -> bool:
        if path.parent.name != PENDING or path.parent.parent.parent != self.root:
            return False
        target = path.parent.parent / state / path.name
        with self._lock:
            if not path.exists():
                return False
            target.parent.mkdir(exist_ok=True)
            os.replace(path, target)
            os.utime(target)  # set aside now: its retention counts from here
            fsync_dir(target.parent)
            fsync_dir(path.parent)
        return True

    def purge(self, now: float | None = None) -> int:
        """Remove the batches set aside (imported, rejected) more than ``keep_seconds`` ago, with their summaries
        and rejection reports; how many. Nothing when ``keep_seconds`` is None."""
        if self.keep_seconds is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.keep_seconds
        removed = 0
        for state in (IMPORTED, REJECTED):
            for path in self.root.glob(f"*/{state}/*.json"):
                try:
                    if path.stat().st_mtime > cutoff:
                        continue
                except FileNotFoundError:
                    continue
                with self._lock:  # never while a result or a save looks at it
                    for kept in (path.parent.parent / SUMMARIES / path.name, path.parent.parent / REPORTS / path.name):
                        kept.unlink(missing_ok=True)
                    path.unlink(missing_ok=True)
                removed += 1
        return removed

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

    def _summary(self, path: Path) -> _Summary:
        """The summary of the batch at ``path``, kept once if the batch was stored before summaries were."""
        kept = path.parent.parent / SUMMARIES / path.name
        try:
            return _Summary.model_validate_json(kept.read_bytes())
        except FileNotFoundError:
            summary = self._summary_of(path)
            self._keep_summary(path, summary)
            return summary

    def _summary_of(self, path: Path) -> _Summary:
        """Summarise the stored batch at ``path``; an unreadable one is what its place in the spool tells."""
        try:
            raw, batch = parse(path)
        except FileRejected:
            raw = _read(path)
            creditor, batch_id = path.parent.parent.name, path.stem.split("-", 1)[1]
            result = BatchOut(batch_id=batch_id, creditor=creditor, portfolio="", status="pending", rows=0, rejected=[])
            return _Summary(sha256=hashlib.sha256(raw).hexdigest(), result=result)
        return _summary(raw, batch, self.currency)

    def _keep_summary(self, path: Path, summary: _Summary) -> None:
        target = path.parent.parent / SUMMARIES / path.name
        target.parent.mkdir(exist_ok=True)
        write_atomically(target, _writing(summary.model_dump_json().encode()))


@dataclass(frozen=True)
class _Rows:
    """A stored batch's rows for core, parsed on each iteration."""

    raw: bytes
    path: Path
    currency: str

    def __iter__(self) -> Iterator[AssignmentRow | RowError]:
        return rows_of(_envelope(self.raw, self.path), self.currency)
