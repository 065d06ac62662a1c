"""The submit ledger: a durable record of each message part's submit_sm and what became of it.

A JSON Lines file, one event per line: ``sent`` is written and fsynced before the PDU goes to the socket,
``accepted`` (with the SMSC's message id) when the submit_sm_resp arrives, ``unsent`` when the PDU never
left, ``refused`` for an error response, ``receipt`` per delivery receipt and ``reported`` once the message's
final report went to core. So after a reconnect or a restart, a part that was answered is never submitted
again, a part ``sent`` but never answered is known to be in doubt, and receipts still find their message.
Only ``sent`` waits for its fsync; the other events are flushed and made durable by the next fsync (the next
``sent``, or closing): a crash can lose the last of them, which leaves that part in doubt, never resubmitted
by default. Opening the ledger drops messages older than the retention and rewrites the file, unless another
process (an ``sms`` command beside the node, or the node beside it) has it open: every holder keeps a shared lock
of ``<ledger>.lock``, and only one that gets it exclusively rewrites, so no holder is left appending to a file
replaced under it. :meth:`SubmitLedger.reload` reads what such another process appended since.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartera.plugin import LineAppender, SmsState, write_atomically


class UnknownSmscId(LookupError):
    """A receipt for an SMSC id no holder of the ledger recorded (another application's, on a shared account)."""


@dataclass(slots=True)
class PartRecord:
    sent: bool = False
    smsc_id: str | None = None
    refused: int | None = None
    stat: str | None = None
    state: SmsState | None = None


@dataclass(slots=True)
class MessageRecord:
    message_id: int
    total: int
    updated: float
    parts: dict[int, PartRecord] = field(default_factory=dict)
    reported: bool = False

    def part(self, number: int) -> PartRecord:
        return self.parts.setdefault(number, PartRecord())

    @property
    def gateway_id(self) -> str | None:
        """The SMSC's id of the first part: the message's gateway id."""
        first = self.parts.get(1)
        return first.smsc_id if first else None

    def final_state(self) -> SmsState | None:
        """DELIVERED when every part was, FAILED or EXPIRED as soon as every part has a final receipt."""
        states = [self.parts[n].state if n in self.parts else None for n in range(1, self.total + 1)]
        if any(state is None for state in states):
            return None
        if all(state is SmsState.DELIVERED for state in states):
            return SmsState.DELIVERED
        return SmsState.FAILED if SmsState.FAILED in states else SmsState.EXPIRED

    def raw_status(self) -> str:
        return ",".join(self.parts[n].stat or "?" for n in range(1, self.total + 1) if n in self.parts)


class SubmitLedger:
    """Thread-safe; every mutation is one appended line, written to the OS on return (``sent`` also fsynced
    when configured)."""

    def __init__(self, path: Path, *, fsync: bool, retention_s: float) -> None:
        self.path = path
        self._fsync = fsync
        self._retention_s = retention_s
        self._lock = threading.Lock()
        self._file: LineAppender | None = None
        self._holder: int | None = None  #: descriptor of ``<ledger>.lock``, locked shared while open
        self._messages: dict[int, MessageRecord] = {}
        self._by_smsc_id: dict[str, tuple[int, int]] = {}
        self._read_size = 0  #: bytes of the file read or written by this holder

    def open(self) -> None:
        """Load the file (a torn last line is ignored); alone with it, drop expired messages and rewrite it
        compacted."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            holder = os.open(self.path.with_name(f"{self.path.name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            try:
                alone = _flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not alone:
                    fcntl.flock(holder, fcntl.LOCK_SH)
                self._load()
                if alone:
                    horizon = time.time() - self._retention_s
                    self._messages = {m: r for m, r in self._messages.items() if r.updated >= horizon}
                    self._index()
                    records = list(self._messages.values())
                    write_atomically(
                        self.path, lambda out: out.writelines(_line(e) for r in records for e in _events_of(r))
                    )
                    self._read_size = self.path.stat().st_size
                    fcntl.flock(holder, fcntl.LOCK_SH)  # others may open it now, appending beside this one
                self._file = LineAppender(self.path)
            except BaseException:
                os.close(holder)
                raise
            self._holder = holder

    def reload(self) -> None:
        """Read the file again: the events another process holding it appended since this one opened it."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        """Apply every event of the file, in order, onto the records held: a record a live send holds stays the
        same object (replaying its own events leaves it as it was), others' events are added."""
        self._read_size = 0
        for event in self._read_events():
            self._apply(event)
        self._index()

    def _grown(self) -> bool:
        """Whether another holder appended since this one last read the file (its own lines are counted as it
        writes them): only then can a lookup find more by reading it again."""
        try:
            return os.stat(self.path).st_size != self._read_size
        except FileNotFoundError:
            return False

    def _index(self) -> None:
        self._by_smsc_id = {
            part.smsc_id: (record.message_id, number)
            for record in self._messages.values()
            for number, part in record.parts.items()
            if part.smsc_id
        }

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                if self._fsync:
                    os.fsync(self._file.fileno())
                self._file.close()
                self._file = None
            if self._holder is not None:
                os.close(self._holder)
                self._holder = None

    def message(self, message_id: int, total: int) -> MessageRecord:
        """The record of ``message_id`` (a copy-free view: read it, change it only through this ledger)."""
        with self._lock:
            record = self._messages.get(message_id)
            if record is None or record.total != total:
                record = self._messages[message_id] = MessageRecord(message_id, total, time.time())
            return record

    def known(self, message_id: int) -> MessageRecord | None:
        """The record of ``message_id`` if any of its parts was recorded (a view, as :meth:`message`'s)."""
        with self._lock:
            return self._messages.get(message_id)

    def sent(self, message_id: int, number: int, total: int) -> None:
        """On disk (fsynced when configured) on return: only then may the PDU be written."""
        self._record({"e": "sent", "m": message_id, "p": number, "n": total}, durable=True)

    def unsent(self, message_id: int, number: int, total: int) -> None:
        self._record({"e": "unsent", "m": message_id, "p": number, "n": total})

    def answered(self, message_id: int, number: int, total: int, status: int, smsc_id: str) -> None:
        """A submit_sm_resp: ``accepted`` with the SMSC's id when ``status`` is 0, else ``refused``."""
        if status == 0:
            self._record({"e": "accepted", "m": message_id, "p": number, "n": total, "id": smsc_id})
        else:
            self._record({"e": "refused", "m": message_id, "p": number, "n": total, "status": status})

    def receipt(self, smsc_id: str, stat: str, state: SmsState | None) -> MessageRecord | None:
        """Record a receipt for the part the SMSC calls ``smsc_id``; return the message's record when this
        receipt made it final (then it is marked reported), else ``None``. An id this holder does not know is
        looked for in the file again (an ``sms`` command beside the node submitted it: its receipt reaches the
        node's session); still unknown, :class:`UnknownSmscId`."""
        with self._lock:
            known = self._by_smsc_id.get(smsc_id)
            if known is None and self._grown():
                self._load()
                known = self._by_smsc_id.get(smsc_id)
            if known is None:
                raise UnknownSmscId(smsc_id)
            message_id, number = known
            record = self._messages[message_id]
            base = {"m": message_id, "p": number, "n": record.total}
            self._append({**base, "e": "receipt", "stat": stat, "state": state.value if state else None})
            if record.reported or record.final_state() is None:
                return None
            self._append({**base, "e": "reported"})
            return record

    def _record(self, event: dict[str, Any], durable: bool = False) -> None:
        with self._lock:
            fileno = self._append(event)
        if durable and self._fsync:
            os.fsync(fileno)  # outside the lock: concurrent senders share fsyncs, receipts are not held up

    def _append(self, event: dict[str, Any]) -> int:
        if self._file is None:
            raise RuntimeError(f"submit ledger {self.path} is not open")
        event["t"] = time.time()
        line = _line(event)
        self._file.append(line)  # whole, or cut off again on failure
        self._read_size += len(line)
        self._apply(event)
        return self._file.fileno()

    def _apply(self, event: dict[str, Any]) -> None:
        message_id, number, total = int(event["m"]), int(event["p"]), int(event["n"])
        record = self._messages.get(message_id)
        if record is None or record.total != total:
            record = self._messages[message_id] = MessageRecord(message_id, total, float(event["t"]))
        record.updated = float(event["t"])
        part = record.part(number)
        kind = event["e"]
        if kind == "sent":
            part.sent, part.refused = True, None
        elif kind == "unsent":
            part.sent = False
        elif kind == "accepted":
            part.smsc_id = str(event["id"])
            self._by_smsc_id[part.smsc_id] = (message_id, number)
        elif kind == "refused":
            part.sent, part.refused = False, int(event["status"])
        elif kind == "receipt":
            part.stat = str(event["stat"])
            part.state = SmsState(event["state"]) if event["state"] else None
        elif kind == "reported":
            record.reported = True

    def _read_events(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as source:
            for line, raw in enumerate(source, start=1):
                if not raw.endswith(b"\n"):
                    return  # torn by a crash mid-write: the event it held never took effect
                try:
                    event = json.loads(raw)
                    int(event["m"]), int(event["p"]), int(event["n"]), str(event["e"]), float(event["t"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"submit ledger {self.path}, line {line}: not a ledger event ({exc})") from exc
                self._read_size += len(raw)
                yield event


def _flock(descriptor: int, operation: int) -> bool:
    """Whether ``operation`` (non-blocking) took the lock."""
    try:
        fcntl.flock(descriptor, operation)
    except BlockingIOError:
        return False
    return True


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def _events_of(record: MessageRecord) -> Iterator[dict[str, Any]]:
    base = {"m": record.message_id, "n": record.total, "t": record.updated}
    for number, part in sorted(record.parts.items()):
        if part.sent:
            yield {**base, "p": number, "e": "sent"}
        if part.smsc_id:
            yield {**base, "p": number, "e": "accepted", "id": part.smsc_id}
        if part.refused is not None:
            yield {**base, "p": number, "e": "refused", "status": part.refused}
        if part.stat:
            yield {**base, "p": number, "e": "receipt", "stat": part.stat, "state": part.state}
    if record.reported:
        yield {**base, "p": 1, "e": "reported"}
