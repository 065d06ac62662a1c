"""The submit ledger: a durable record of each message part's submit_sm and what became of it.

A JSON Lines file, one event per line: ``sent`` is written and fsynced before the PDU goes to the socket,
``accepted`` (with the SMSC's message id, ``null`` when it gave none) when the submit_sm_resp arrives, ``unsent``
when the PDU never left, ``refused`` for an error response, ``receipt`` per delivery receipt and ``reported``
once the message's final report went to core. So after a reconnect or a restart, a part that was answered is
never submitted again, a part ``sent`` but never answered is known to be in doubt, and receipts still find their
message. Only ``sent`` waits for its fsync; the other events are flushed and made durable by the next fsync (the next
``sent``, or closing): a crash can lose the last of them, which leaves that part in doubt, never resubmitted
by default. Opening the ledger drops messages older than the retention and rewrites the file, unless another
process (an ``sms`` command beside the node, or the node beside it) has it open: every holder keeps a shared lock
of ``<ledger>.lock``, and only one that gets it exclusively rewrites, so no holder is left appending to a file
replaced under it. :meth:`SubmitLedger.reload` reads what such another process appended since: only the lines
after those already read (the file is only appended to while held), from its start again only if it shrank.

A record is tied to the text it was made for by a digest of that text (:func:`text_digest`), written in its
``sent`` events: the store's message id alone does not identify it (a store restored from a backup, or a new
database beside the old data_dir, gives the same id to another text). A record made for another text is ignored
and replaced, never taken for the new text's (round 23 C-F1). An SMSC id two texts still waiting for receipts
were both given is bound to neither (round 23 C-F5); receipts that change nothing (a part already final, a message
already reported, a second intermediate one) are counted, not appended (round 23 C-F6).

An SMSC may accept a part without a message id (an empty one): the part is accepted, never submitted again, but no
receipt can find it. Versions before that was written as ``"id":null`` wrote ``"id":""``; both are read as such an
acceptance, so a ledger an earlier version wrote never stops the node (round 24 C-F2).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cartera.plugin import LineAppender, SmsMessage, SmsState, write_atomically
from cartera.plugin import event as log_event
from cartera.plugins.sms.smpp.text import RECEIPT_STAT_MAX

#: The events of the file and the keys each needs besides ``e``, ``m``, ``p``, ``n`` and ``t``.
_EVENT_KEYS: dict[str, tuple[str, ...]] = {
    "sent": (),
    "unsent": (),
    "accepted": ("id",),
    "refused": ("status",),
    "receipt": ("stat", "state"),
    "reported": (),
}


class UnknownSmscId(LookupError):
    """A receipt for an SMSC id no holder of the ledger recorded (another application's, on a shared account),
    or one the SMSC gave to two texts that still wait for receipts (which of them it is for cannot be told)."""


def text_digest(message: SmsMessage) -> str:
    """What ties a ledger record to the text it was made for: its site, phone, text and account."""
    identity = json.dumps([message.site, message.phone, message.text, message.account_ref])
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(slots=True)
class PartRecord:
    sent: bool = False
    accepted: bool = False  #: the SMSC accepted it (with ``smsc_id``, or without an id: then no receipt finds it)
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
    digest: str | None = None  #: :func:`text_digest` of its text; None in a record written before there was one

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

    def __init__(self, path: Path, *, fsync: bool, retention_s: float, log: logging.Logger | None = None) -> None:
        self.path = path
        self._fsync = fsync
        self._retention_s = retention_s
        self._log = log or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._file: LineAppender | None = None
        self._holder: int | None = None  #: descriptor of ``<ledger>.lock``, locked shared while open
        self._messages: dict[int, MessageRecord] = {}
        self._by_smsc_id: dict[str, tuple[int, int]] = {}
        self._reused: set[str] = set()  #: SMSC ids given to two texts still waiting for receipts: bound to neither
        self._offset = 0  #: bytes at the start of the file whose events were applied (this holder's and others')
        self._lines = 0  #: the lines in those bytes
        self.repeated_receipts = 0  #: receipts that changed nothing, not appended

    def open(self) -> None:
        """Load the file (a torn last line is ignored); alone with it, drop expired messages and rewrite it
        compacted."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_path = self.path.with_name(f"{self.path.name}.lock")  # the owner's only, never executable
            holder = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                alone = _flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not alone:
                    fcntl.flock(holder, fcntl.LOCK_SH)
                self._read_tail()
                if alone:
                    horizon = time.time() - self._retention_s
                    self._messages = {m: r for m, r in self._messages.items() if r.updated >= horizon}
                    self._index()
                    lines = [_line(e) for r in self._messages.values() for e in _events_of(r)]
                    write_atomically(self.path, lambda out: out.writelines(lines))
                    self._offset, self._lines = self.path.stat().st_size, len(lines)
                    fcntl.flock(holder, fcntl.LOCK_SH)  # others may open it now, appending beside this one
                self._file = LineAppender(self.path)
            except BaseException:
                os.close(holder)
                raise
            self._holder = holder

    def reload(self) -> None:
        """Read what another process holding the file appended since this one last read it."""
        with self._lock:
            self._read_tail()

    def _read_tail(self) -> None:
        """Apply the events after those already read, in order, onto the records held (the whole file, the first
        time or if it shrank): a record a live send holds stays the same object (replaying its own events, which
        the tail may hold among others', leaves it as it was), others' events are added. What is read costs what
        was appended since, not the file's size (round 23 C-F8)."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size < self._offset:  # cut or rewritten by hand (never compacted while held): read it all again
            self._offset = self._lines = 0
        for event in self._read_events():
            self._apply(event)

    def _grown(self) -> bool:
        """Whether another holder appended since this one last read the file (its own lines are counted as it
        writes them, when no other's came between): only then can a lookup find more by reading it again."""
        try:
            return os.stat(self.path).st_size != self._offset
        except FileNotFoundError:
            return False

    def _index(self) -> None:
        """Bind every SMSC id to the part holding it (after records were dropped): of several holders, the one
        still waiting for receipts; two or more waiting, none."""
        holders: dict[str, list[tuple[int, int]]] = {}
        for record in self._messages.values():
            for number, part in record.parts.items():
                if part.smsc_id:
                    holders.setdefault(part.smsc_id, []).append((record.message_id, number))
        self._by_smsc_id, self._reused = {}, set()
        for smsc_id, held in holders.items():
            waiting = [holder for holder in held if not self._messages[holder[0]].reported]
            if len(waiting) > 1:
                self._reused.add(smsc_id)
            else:
                self._by_smsc_id[smsc_id] = (waiting or held)[-1]

    def _bind(self, smsc_id: str, message_id: int, number: int) -> None:
        """The SMSC accepted part ``number`` of ``message_id`` as ``smsc_id``: its receipts are that part's,
        unless another text still waiting for receipts was given the same id (then they are neither's: which one
        a receipt is for cannot be told; said once)."""
        if smsc_id in self._reused:
            return
        holder = self._by_smsc_id.get(smsc_id)
        if holder is not None and holder != (message_id, number):
            other = self._messages.get(holder[0])
            part = other.parts.get(holder[1]) if other is not None else None
            if other is not None and not other.reported and part is not None and part.smsc_id == smsc_id:
                del self._by_smsc_id[smsc_id]
                self._reused.add(smsc_id)
                log_event(self._log, "smpp.smsc_id_reused", logging.WARNING, smsc_id=smsc_id[:64],
                      messages=[holder[0], message_id], detail="receipts for it are applied to neither")  # fmt: skip
                return
        self._by_smsc_id[smsc_id] = (message_id, number)

    def _replace(self, message_id: int, total: int, at: float, digest: str | None) -> MessageRecord:
        """A new record for ``message_id``; the SMSC ids of the one it replaces no longer find it."""
        old = self._messages.get(message_id)
        if old is not None:
            for number, part in old.parts.items():
                if part.smsc_id and self._by_smsc_id.get(part.smsc_id) == (message_id, number):
                    del self._by_smsc_id[part.smsc_id]
        record = self._messages[message_id] = MessageRecord(message_id, total, at, digest=digest)
        return record

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

    def message(self, message_id: int, total: int, digest: str | None = None) -> MessageRecord:
        """The record of ``message_id`` for the text whose :func:`text_digest` is ``digest`` (a copy-free view:
        read it, change it only through this ledger); a record made for another text is replaced (warned)."""
        with self._lock:
            record = self._messages.get(message_id)
            if record is not None and _foreign(record, digest):
                self._warn_foreign("smpp.ledger_record_replaced", message_id)
                record = None
            if record is None or record.total != total:
                record = self._replace(message_id, total, time.time(), digest)
            elif record.digest is None:
                record.digest = digest
            return record

    def known(self, message_id: int, digest: str | None = None) -> MessageRecord | None:
        """The record of ``message_id`` if any of its parts was recorded (a view, as :meth:`message`'s), unless
        it was made for another text than the one whose :func:`text_digest` is ``digest`` (warned)."""
        with self._lock:
            record = self._messages.get(message_id)
            if record is not None and _foreign(record, digest):
                self._warn_foreign("smpp.ledger_record_foreign", message_id)
                return None
            return record

    def _warn_foreign(self, name: str, message_id: int) -> None:
        log_event(self._log, name, logging.WARNING, message_id=message_id,
              reason="the ledger's record of this id was made for another text (a store restored or recreated "
              "beside this data_dir gave the id again): not taken for this one")  # fmt: skip

    def sent(self, message_id: int, number: int, total: int) -> None:
        """On disk (fsynced when configured) on return: only then may the PDU be written. Carries the digest of
        the text :meth:`message` was given."""
        sent: dict[str, Any] = {"e": "sent", "m": message_id, "p": number, "n": total}
        with self._lock:
            record = self._messages.get(message_id)
            if record is not None and record.digest:
                sent["d"] = record.digest
        self._record(sent, durable=True)

    def unsent(self, message_id: int, number: int, total: int) -> None:
        self._record({"e": "unsent", "m": message_id, "p": number, "n": total})

    def answered(self, message_id: int, number: int, total: int, status: int, smsc_id: str | None) -> None:
        """A submit_sm_resp: ``accepted`` with the SMSC's id when ``status`` is 0 (``null`` when it gave none or
        an empty one: accepted, but no receipt can be matched to it), else ``refused``."""
        if status == 0:
            self._record({"e": "accepted", "m": message_id, "p": number, "n": total, "id": smsc_id or None})
        else:
            self._record({"e": "refused", "m": message_id, "p": number, "n": total, "status": status})

    def receipt(self, smsc_id: str, stat: str, state: SmsState | None) -> MessageRecord | None:
        """Record a receipt for the part the SMSC calls ``smsc_id``; return the message's record when this
        receipt made it final (then it is marked reported), else ``None``. An id this holder does not know is
        looked for in what was appended since it last read the file (an ``sms`` command beside the node
        submitted it: its receipt reaches the node's session); still unknown, or given to two texts still
        waiting, :class:`UnknownSmscId`. A receipt that changes nothing (its part is final already, or its
        message reported, or it is a second intermediate one) is counted in :attr:`repeated_receipts` and not
        written. ``stat`` is kept to SMPP's length."""
        with self._lock:
            known = self._by_smsc_id.get(smsc_id)
            if known is None and smsc_id not in self._reused and self._grown():
                self._read_tail()
                known = self._by_smsc_id.get(smsc_id)
            if known is None:
                raise UnknownSmscId(smsc_id)
            message_id, number = known
            record = self._messages[message_id]
            part = record.part(number)
            if record.reported or part.state is not None or (state is None and part.stat is not None):
                self.repeated_receipts += 1
                return None
            stat = stat[:RECEIPT_STAT_MAX]
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
        if os.fstat(self._file.fileno()).st_size == self._offset + len(line):
            self._offset, self._lines = self._offset + len(line), self._lines + 1
        # else another holder's lines came before it: the next read goes over them and this one again
        self._apply(event)
        return self._file.fileno()

    def _apply(self, event: dict[str, Any]) -> None:
        message_id, number, total = int(event["m"]), int(event["p"]), int(event["n"])
        digest = event.get("d")
        record = self._messages.get(message_id)
        if record is None or record.total != total or _foreign(record, digest):
            record = self._replace(message_id, total, float(event["t"]), digest)
        elif record.digest is None:
            record.digest = digest
        record.updated = float(event["t"])
        part = record.part(number)
        kind = event["e"]
        if kind == "sent":
            part.sent, part.refused = True, None
        elif kind == "unsent":
            part.sent = False
        elif kind == "accepted":
            part.accepted, part.smsc_id = True, event["id"] or None  # "" (written before round 24): none
            if part.smsc_id:
                self._bind(part.smsc_id, message_id, number)
        elif kind == "refused":
            part.sent, part.refused = False, int(event["status"])
        elif kind == "receipt":
            part.stat = event["stat"][:RECEIPT_STAT_MAX]
            part.state = SmsState(event["state"]) if event["state"] else None
        elif kind == "reported":
            record.reported = True

    def _read_events(self) -> Iterator[dict[str, Any]]:
        """The events after the first :attr:`_offset` bytes, each checked whole (its kind's own keys too) before
        it is given; a line that is not one is named by file and line."""
        try:
            source = self.path.open("rb")
        except FileNotFoundError:
            return
        with source:
            source.seek(self._offset)
            for raw in source:
                if not raw.endswith(b"\n"):
                    return  # torn by a crash mid-write (or being written): the event it held never took effect
                try:
                    event = _checked(json.loads(raw))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(
                        f"submit ledger {self.path}, line {self._lines + 1}: not a ledger event ({exc})"
                    ) from exc
                self._offset += len(raw)
                self._lines += 1
                yield event


def _checked(event: Any) -> dict[str, Any]:
    """``event`` if it is a whole ledger event: the common keys and those of its kind, of their types."""
    int(event["m"]), int(event["p"]), int(event["n"]), float(event["t"])
    kind = event["e"]
    if kind not in _EVENT_KEYS:
        raise ValueError(f"unknown event {kind!r}")
    missing = [key for key in _EVENT_KEYS[kind] if key not in event]
    if missing:
        raise ValueError(f"a {kind} event without {', '.join(missing)}")
    if not isinstance(event.get("d", ""), str):
        raise TypeError("d is not a string")
    if kind == "accepted" and not (event["id"] is None or isinstance(event["id"], str)):
        raise TypeError("id is not a string")  # null or "" (an earlier version's): accepted without an id
    if kind == "refused" and (isinstance(event["status"], bool) or not isinstance(event["status"], int)):
        raise TypeError("status is not a number")
    if kind == "receipt":
        if not isinstance(event["stat"], str):
            raise TypeError("stat is not a string")
        if event["state"] is not None:
            SmsState(event["state"])
    return event  # type: ignore[no-any-return]


def _foreign(record: MessageRecord, digest: str | None) -> bool:
    """Whether ``record`` was made for another text than the one whose digest is ``digest`` (a record or text
    without one cannot tell: it is taken as the same)."""
    return bool(digest and record.digest and digest != record.digest)


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
    base: dict[str, Any] = {"m": record.message_id, "n": record.total, "t": record.updated}
    if record.digest:
        base["d"] = record.digest
    for number, part in sorted(record.parts.items()):
        if part.sent:
            yield {**base, "p": number, "e": "sent"}
        if part.accepted:
            yield {**base, "p": number, "e": "accepted", "id": part.smsc_id}
        if part.refused is not None:
            yield {**base, "p": number, "e": "refused", "status": part.refused}
        if part.stat:
            yield {**base, "p": number, "e": "receipt", "stat": part.stat, "state": part.state}
    if record.reported:
        yield {**base, "p": 1, "e": "reported"}
