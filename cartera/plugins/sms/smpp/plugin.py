"""The smpp SMS gateway adapter.

Guarantee on resubmission. Each part's submit_sm is recorded in the submit ledger (data_dir) before it is
written and again when its submit_sm_resp arrives. After a reconnect (or a restart), ``send`` of the same
message resubmits only parts with no answer: a part the SMSC accepted is never submitted again. A part whose
PDU was written but whose response was lost with the connection is *in doubt*: the SMSC may or may not have
it, and SMPP 3.4 offers no way to ask without its message id. By default such a part is not resubmitted and
``send`` returns FAILED naming it in doubt, so no message is ever submitted twice (at most once); with
``resubmit_in_doubt = true`` it is resubmitted after the rebind (at least once: a duplicate is possible in
exactly that window). A response later than ``response_timeout_s`` on a live session is no lost one: with
``resubmit_in_doubt`` it is waited for (never a copy on the same session), and ``send`` gives up at
``submit_timeout_s`` in any case. One that comes after ``send`` gave the part up in doubt and accepts the whole
text is reported to core (``submitted`` with the SMSC's id), so the text and its receipts reach the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from cartera.plugin import (
    IN_DOUBT,
    AdapterCapabilities,
    AdapterRegistry,
    CheckResult,
    DeliveryReport,
    InboundSms,
    PluginConfig,
    PluginContext,
    SmsGateway,
    SmsMessage,
    SmsState,
    SmsSubmitResult,
    event,
    hookimpl,
    unkeepable,
)
from cartera.plugins.sms.smpp.client import (
    ESME_ROK,
    ESME_RX_P_APPN,
    InDoubt,
    LinkDown,
    SmppLink,
    UnreadableDeliver,
    status_text,
)
from cartera.plugins.sms.smpp.config import SmppConfig, answer_room_s
from cartera.plugins.sms.smpp.ledger import MessageRecord, SubmitLedger, UnknownSmscId, text_digest
from cartera.plugins.sms.smpp.text import (
    ESM_DELIVERY_RECEIPT,
    ESM_TYPE_MASK,
    Part,
    decode_text,
    encode_parts,
    parse_receipt,
    split_udh,
)

_RETRY_LATER = frozenset({0x14, 0x58})  # ESME_RMSGQFUL, ESME_RTHROTTLED: the SMSC asks to slow down
LEDGER_FILE = "smpp-submits.jsonl"
#: A killed sender's text this node's ledger has no record of: no sender sharing the ledger submitted it, but one
#: with a ledger of its own (another host's node or command, on a shared PostgreSQL store) may have (round 22 C-F8)
NOT_IN_LEDGER = (
    "no record in this node's submit ledger: not submitted by a sender sharing it (another host's may have sent it): "
    "unknown whether it went"
)


class TokenBucket:
    """At most ``rate`` takes per second on average, ``burst`` back to back; ``take`` blocks until the token's turn,
    never past the caller's deadline; ``reserve`` takes the turns of several tokens at once (thread-safe)."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._stamp = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self, deadline: float) -> float | None:
        """Take a token, sleeping until its turn; ``None`` once taken. A turn later than ``deadline`` (a
        ``time.monotonic()`` value) is not waited for: nothing is taken, and the seconds until it are returned."""
        now = time.monotonic()
        turns = self.reserve(1, now, deadline)
        if isinstance(turns, float):
            return turns
        if turns[0] > now:
            time.sleep(turns[0] - now)
        return None

    def reserve(self, count: int, now: float, deadline: float) -> list[float] | float:
        """Take ``count`` tokens at once, none slept for: their turns in order (``time.monotonic()`` values, from
        ``now``, the caller's reading of it). When the last turn is later than ``deadline`` nothing is taken and
        the seconds from ``now`` until it are returned."""
        with self._lock:
            start = max(now, self._stamp)  # never before a turn another caller reckoned from
            tokens = min(self._burst, self._tokens + (start - self._stamp) * self._rate)
            turns = [start + max(0.0, (k - tokens) / self._rate) for k in range(1, count + 1)]
            self._stamp = start
            if turns and turns[-1] > deadline:
                self._tokens = tokens
                return turns[-1] - now
            self._tokens = tokens - count
            return turns

    def give_back(self, count: int) -> None:
        """Return ``count`` reserved tokens whose turns will not be used (a text failed before those parts)."""
        with self._lock:
            self._tokens = min(self._burst, self._tokens + count)


#: How long the first part of a concatenated MO waits for the others; SMSCs deliver the parts seconds apart.
MO_PARTS_TTL_S = 15 * 60
#: Incomplete concatenated MO messages kept from one sender, and from all: past either, the oldest is dropped.
MO_PARTS_PER_SENDER = 16
MO_PARTS_TOTAL = 10_000
#: Bytes the parts of incomplete MO messages may hold, from one sender and from all: past either, the oldest
#: message is dropped. The counts above do not bound memory (a message keeps up to 254 parts, each up to a 64 KiB
#: message_payload, and the sender is whatever the peer writes); these do. A part counts its text in UTF-8 (never
#: less than Python holds for it) plus :data:`MO_PART_OVERHEAD_BYTES`.
MO_PARTS_BYTES_PER_SENDER = 1024 * 1024
MO_PARTS_BYTES_TOTAL = 8 * 1024 * 1024
#: What one held part costs besides its text (the str object, its slot in the message's dict), roughly.
MO_PART_OVERHEAD_BYTES = 100
#: At most one ``smpp.mo_parts_dropped`` line per reason this often, counting the drops since the last one.
MO_PARTS_LOG_EVERY_S = 60.0


class _Concatenation:
    """Joins concatenated MO parts by (sender, reference); a message is complete when every part arrived.

    Incomplete messages are bounded in number and in bytes, so a peer sending first parts only cannot grow the
    node's memory: one is dropped (logged as ``smpp.mo_parts_dropped``) when its first part is older than
    ``ttl_s``, and the oldest goes when a sender has ``per_sender`` of them, or everyone ``total``, or when the
    parts held from a sender pass ``bytes_per_sender``, or from everyone ``bytes_total`` (the message a part just
    joined goes too if it is the oldest left: alone it is over the budget). A flood of drops is logged as one line
    per reason and :data:`MO_PARTS_LOG_EVERY_S`, with the count."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        ttl_s: float = MO_PARTS_TTL_S,
        per_sender: int = MO_PARTS_PER_SENDER,
        total: int = MO_PARTS_TOTAL,
        bytes_per_sender: int = MO_PARTS_BYTES_PER_SENDER,
        bytes_total: int = MO_PARTS_BYTES_TOTAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._ttl_s, self._per_sender, self._total, self._clock = ttl_s, per_sender, total, clock
        self._bytes_per_sender, self._bytes_total = bytes_per_sender, bytes_total
        self._parts: OrderedDict[tuple[str, int, int], tuple[float, dict[int, str]]] = OrderedDict()
        self._by_sender: dict[str, OrderedDict[tuple[str, int, int], None]] = {}
        self._bytes_of: dict[tuple[str, int, int], int] = {}  # bytes each incomplete message holds
        self._sender_bytes: dict[str, int] = {}
        self.held_bytes = 0  #: bytes the parts of every incomplete message hold, as counted by :func:`_held`
        self._unlogged: dict[str, int] = {}  # drops per reason not yet logged
        self._logged_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._parts)

    def add(self, phone: str, concat: tuple[int, int, int] | None, text: str) -> str | None:
        if concat is None or concat[1] <= 1:
            return text
        reference, total, number = concat
        if not 1 <= number <= total:
            event(self._log, "smpp.mo_part_invalid", logging.WARNING, part=number, parts=total)
            return None
        now = self._clock()
        self._expire(now)
        key = (phone, reference, total)
        if key not in self._parts:
            self._make_room(phone, now)
            self._parts[key] = (now, {})
            self._by_sender.setdefault(phone, OrderedDict())[key] = None
            self._bytes_of[key] = 0
        parts = self._parts[key][1]
        before = parts.get(number)  # a part delivered again replaces the one held
        self._count(key, _held(text) - (_held(before) if before is not None else 0))
        parts[number] = text
        if len(parts) < total:
            self._keep_within_budget(phone, now)
            return None
        self._forget(key)
        return "".join(parts[n] for n in sorted(parts))

    def _count(self, key: tuple[str, int, int], change: int) -> None:
        self._bytes_of[key] += change
        self._sender_bytes[key[0]] = self._sender_bytes.get(key[0], 0) + change
        self.held_bytes += change

    def _keep_within_budget(self, phone: str, now: float) -> None:
        while self._sender_bytes.get(phone, 0) > self._bytes_per_sender:
            self._drop(next(iter(self._by_sender[phone])), "too many bytes from this sender", now)
        while self.held_bytes > self._bytes_total:
            self._drop(next(iter(self._parts)), "too many bytes in all", now)

    def _expire(self, now: float) -> None:
        while self._parts:
            key, (first_at, _parts) = next(iter(self._parts.items()))
            if now - first_at < self._ttl_s:
                return
            self._drop(key, "expired", now)

    def _make_room(self, phone: str, now: float) -> None:
        senders = self._by_sender.get(phone)
        if senders is not None and len(senders) >= self._per_sender:
            self._drop(next(iter(senders)), "too many from this sender", now)
        if len(self._parts) >= self._total:
            self._drop(next(iter(self._parts)), "too many in all", now)

    def _drop(self, key: tuple[str, int, int], reason: str, now: float) -> None:
        parts = self._forget(key)
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        last = self._logged_at.get(reason)
        if last is not None and now - last < MO_PARTS_LOG_EVERY_S:
            return
        self._logged_at[reason] = now
        event(self._log, "smpp.mo_parts_dropped", logging.WARNING, reason=reason, dropped=self._unlogged.pop(reason),
              reference=key[1], parts=key[2], arrived=len(parts))  # fmt: skip

    def _forget(self, key: tuple[str, int, int]) -> dict[int, str]:
        _first_at, parts = self._parts.pop(key)
        held = self._bytes_of.pop(key)
        self._sender_bytes[key[0]] -= held
        self.held_bytes -= held
        senders = self._by_sender[key[0]]
        del senders[key]
        if not senders:
            del self._by_sender[key[0]]
            del self._sender_bytes[key[0]]
        return parts


def _held(text: str) -> int:
    """The bytes one held MO part counts: its text in UTF-8 (a lone surrogate as 3) and the part's overhead."""
    return len(text.encode("utf-8", "surrogatepass")) + MO_PART_OVERHEAD_BYTES


@dataclass(slots=True)
class _Attempt:
    """One submit_sm of a part; ``given_up`` once its send returned it in doubt (a response then comes late)."""

    record: MessageRecord
    number: int
    given_up: bool = False


class SmppGateway(SmsGateway[SmppConfig]):
    """Submits over one bound transceiver session; receipts and MO messages arrive on the same session."""

    name: ClassVar[str] = "smpp"
    config_model: ClassVar[type[PluginConfig]] = SmppConfig
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities()

    def __init__(self, config: SmppConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._log = context.log.getChild("smpp")
        self._ledger = SubmitLedger(
            context.data_dir / LEDGER_FILE,
            fsync=config.fsync,
            retention_s=config.ledger_retention_h * 3600,
            log=self._log,
        )
        self._bucket = TokenBucket(config.messages_per_second, config.burst)
        self._link = SmppLink(config, self._on_deliver, self._log)
        self._inbound = _Concatenation(self._log)
        self._started = False
        self._late = threading.Lock()  #: orders a send giving a part up against that part's late response

    def start(self) -> None:
        self._ledger.open()
        self._link.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._link.stop()
            self._ledger.close()
            self._started = False

    def check(self) -> CheckResult:
        if not self._started:
            return self._check_once()
        if not self._link.wait_bound(self.config.response_timeout_s):
            return CheckResult(ok=False, detail=f"SMPP {self._link.where} not bound: {self._link.last_error}")
        try:
            rtt = self._link.enquire()
        except (LinkDown, InDoubt) as exc:
            return CheckResult(ok=False, detail=f"SMPP {self._link.where}: {exc}")
        return CheckResult(ok=True, detail=f"SMPP bound to {self._link.where}; enquire_link answered in {rtt:.3f}s")

    def _check_once(self) -> CheckResult:
        """A bind and an unbind on a connection of its own (``check`` before ``start``)."""
        link = SmppLink(self.config, lambda _pdu: ESME_ROK, self._log)
        link.start()
        try:
            if not link.wait_bound(self.config.response_timeout_s):
                return CheckResult(ok=False, detail=f"SMPP {link.where} not bound: {link.last_error}")
            return CheckResult(ok=True, detail=f"SMPP bind_transceiver to {link.where} accepted")
        finally:
            link.stop()

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        try:
            parts = encode_parts(message.text, reference=message.message_id)
        except ValueError as exc:
            return SmsSubmitResult(
                message_id=message.message_id, state=SmsState.FAILED, gateway_id=None, detail=str(exc)
            )
        record = self._ledger.message(message.message_id, len(parts), text_digest(message))  # its record only
        start = time.monotonic()
        deadline = start + self.config.submit_timeout_s
        numbers: list[int] = []  # the parts to submit
        for number in range(1, len(parts) + 1):
            state = record.parts.get(number)
            if state is not None and state.accepted:
                continue  # answered before a reconnect or restart: never submitted again
            if state is not None and state.sent and not self.config.resubmit_in_doubt:
                where = f"part {number}/{len(parts)}"
                return self._failed(message, record, f"{IN_DOUBT}{where} from an earlier try, never answered")
            numbers.append(number)
        # Every part's turn, taken before the first is written: a text whose last turn leaves no time for its
        # answer before the deadline is refused whole, never cut after its first parts went (round 24 C-F4, C-F5).
        room = answer_room_s(self.config.response_timeout_s, self.config.submit_timeout_s)
        turns = self._bucket.reserve(len(numbers), start, deadline - room)
        rate = self.config.messages_per_second
        if isinstance(turns, float):
            timeout = self.config.submit_timeout_s
            none = "no part was sent" if len(numbers) == len(parts) else "no other part was sent"
            return self._failed(message, record, f"not submitted: the turn of part {numbers[-1]}/{len(parts)} under "
                                f"messages_per_second ({rate:g}) comes in {round(turns, 1):g}s, after "
                                f"submit_timeout_s ({timeout:g}s) less {room:g}s for its answer; {none}")  # fmt: skip
        # Round 25 C-F2: the reserved turns keep their spacing from the parts' actual sends. A wait (for the session,
        # after a "slow down") delays a part past its turn. Round 26 C-F3: the later parts then take fresh turns from
        # the bucket (the late part's booked at the instant it went, unless a retry took it its own), so they never go
        # with turns the bucket handed another text meanwhile or after (the stale ones are not given back: the bucket
        # counts turns, it would hand them out again before those). When the fresh turns do not fit, the reserved ones
        # are shifted by the delay, never sooner than reserved, at most to the last instant that leaves the part its
        # answer's time (it goes then rather than leave the debtor a fragment: its reserved turn keeps the rate on
        # average).
        written, dues = list[float](), list(turns)
        for index, number in enumerate(numbers):
            before = len(written)
            refusal = self._submit(message, record, number, parts[number - 1], deadline=deadline, turn=dues[index],
                                   written=written)  # fmt: skip
            if refusal:
                self._bucket.give_back(len(numbers) - index - 1)  # the turns of the parts never written
                return self._failed(message, record, refusal)
            rest = len(numbers) - index - 1
            if not written or not rest:
                continue
            late = written[-1] - dues[index]  # its last copy went then
            own = int(len(written) - before == 1)  # its first copy's turn was passed: booked now (a retry took one)
            fresh = self._bucket.reserve(rest + own, written[-1], deadline - room) if late * rate >= 0.5 else None
            if isinstance(fresh, list):  # late by half a turn or more: the rest's turns (and its own) booked now
                dues[index + 1 :] = fresh[own:]
            elif late > 0:
                dues[index + 1 :] = [max(due, min(due + late, deadline - room)) for due in dues[index + 1 :]]
        event(self._log, "sms.submitted", message_id=message.message_id, gateway_id=record.gateway_id,
              parts=len(parts), data_coding=parts[0].data_coding)  # fmt: skip
        return SmsSubmitResult(
            message_id=message.message_id,
            state=SmsState.SUBMITTED,
            gateway_id=record.gateway_id,
            detail=f"{len(parts)} part(s), data_coding {parts[0].data_coding}",
        )

    def settle(self, messages: Sequence[SmsMessage]) -> list[SmsSubmitResult]:
        """From the submit ledger, what became of texts a killed sender left being submitted: submitted (with the
        SMSC's id, so their receipts still find them) when the SMSC accepted every part; else failed, the detail
        naming the first part refused, in doubt (written, never answered: the SMSC may have it) or never written.
        None is submitted again. The ledger is read again first: a killed ``sms`` command wrote to it beside
        this node."""
        self._ledger.reload()
        return [self._settled(message) for message in messages]

    def _settled(self, message: SmsMessage) -> SmsSubmitResult:
        record = self._ledger.known(message.message_id, text_digest(message))  # not another text's of that id
        if record is None:
            return self._killed(message, None, NOT_IN_LEDGER)
        if record.final_state() is not None:  # receipts for every part: the one report core may have missed
            return SmsSubmitResult(message.message_id, record.final_state() or SmsState.FAILED, record.gateway_id,
                                   f"{record.total} part(s) receipted: {record.raw_status()}")  # fmt: skip
        for number in range(1, record.total + 1):
            answer = _answer_in(record, number)  # "" accepted, the refusal, or None: no answer
            if answer == "":
                continue
            if answer is not None:
                return self._killed(message, record, answer)
            part = record.parts.get(number)
            where = f"part {number}/{record.total}"
            if part is not None and part.sent:
                return self._killed(message, record, f"{where} in doubt: its sender was killed before the "
                                    "submit_sm_resp (the SMSC may have it); not resubmitted")  # fmt: skip
            return self._killed(message, record, f"{where} not submitted: its sender was killed before it")
        return SmsSubmitResult(
            message.message_id,
            SmsState.SUBMITTED,
            record.gateway_id,
            f"{record.total} part(s) accepted by the SMSC before its sender was killed",
        )

    def _killed(self, message: SmsMessage, record: MessageRecord | None, reason: str) -> SmsSubmitResult:
        event(self._log, "sms.settled", logging.WARNING, message_id=message.message_id, reason=reason)
        gateway_id = record.gateway_id if record is not None else None
        return SmsSubmitResult(message.message_id, SmsState.FAILED, gateway_id, reason)

    def _submit(
        self,
        message: SmsMessage,
        record: MessageRecord,
        number: int,
        part: Part,
        *,
        deadline: float,
        turn: float,
        written: list[float],
    ) -> str:
        """Submit one part until the SMSC answers it; the refusal or in-doubt reason, or "" when accepted. Never
        past ``deadline``; its first copy goes at ``turn`` (reserved under the rate), another takes a turn of its
        own; the instant each copy is written is appended to ``written``. A part in doubt is resubmitted
        (``resubmit_in_doubt``) only once its session was lost: a response later than ``response_timeout_s`` on a
        live session is waited for, not answered by a copy. One the SMSC asks to slow down for (queue full,
        throttled) is submitted again after a pause, until ``deadline``."""
        total = record.total
        where = f"part {number}/{total}"
        attempt: _Attempt | None = None
        doubt = ""  # why a copy written before is in doubt (lost with its session)
        reserved: float | None = turn
        while True:
            if attempt is not None:  # again: a response that came meanwhile settles it (not a "slow down")
                answered = _answer_in(record, number)
                if answered is not None and not _asked_to_slow_down(record, number):
                    return answered
            if (attempt is not None and time.monotonic() >= deadline) or not self._link.wait_bound(
                max(0.0, deadline - time.monotonic())
            ):
                reason = f"no SMPP session within {self.config.submit_timeout_s:g}s: {self._link.last_error}"
            elif reserved is None and (later := self._bucket.take(deadline)) is not None:  # never past the deadline
                rate, timeout = self.config.messages_per_second, self.config.submit_timeout_s
                reason = (f"{where} not submitted: its turn under messages_per_second ({rate:g}) comes in "
                          f"{round(later, 1):g}s, after submit_timeout_s ({timeout:g}s)")  # fmt: skip
            else:
                if reserved is not None and reserved > time.monotonic():  # its turn, at most the deadline
                    time.sleep(reserved - time.monotonic())
                reserved, reason = None, ""
            if reason:
                if attempt is None or not doubt:
                    return reason
                return self._give_up(attempt, f"{IN_DOUBT}{where} written, never answered ({doubt}); {reason}")
            self._ledger.sent(message.message_id, number, total)
            attempt = _Attempt(record, number)
            try:
                written.append(time.monotonic())
                left = max(0.0, deadline - written[-1])  # round 24 C-F5: its answer waited for within it
                response = self._link.submit(partial(self._answered, attempt), wait_s=left,
                                             **self._params(message.phone, part))  # fmt: skip
            except LinkDown:
                if not doubt:  # an earlier copy in doubt stays so
                    self._ledger.unsent(message.message_id, number, total)
                continue
            except InDoubt as exc:
                if not self.config.resubmit_in_doubt:
                    return self._give_up(attempt, f"{IN_DOUBT}{where} written, not resubmitted: {exc}")
                response = exc.late_response(max(0.0, deadline - time.monotonic()))
                if response is None and time.monotonic() >= deadline:
                    return self._give_up(attempt, f"{IN_DOUBT}{where} written, no submit_sm_resp within "
                                         f"submit_timeout_s ({self.config.submit_timeout_s:g}s): {exc}")  # fmt: skip
                if response is None:
                    doubt = str(exc)
                    continue  # lost with its session (or its handler failed): resubmitted once bound again
            if response.status == ESME_ROK:
                return ""
            refusal = f"SMSC refused {where}: {status_text(response.status)}"
            if response.status not in _RETRY_LATER or time.monotonic() >= deadline:
                return refusal
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                return refusal  # asked to slow down until the end

    def _give_up(self, attempt: _Attempt, reason: str) -> str:
        """``reason``, once ``attempt``'s response may only come late (:meth:`_answered` reports an acceptance
        then); "" or the refusal if it came meanwhile."""
        with self._late:
            answered = _answer_in(attempt.record, attempt.number)
            attempt.given_up = answered is None
        return reason if answered is None else answered

    def _answered(self, attempt: _Attempt, response: Any) -> None:
        """A submit_sm_resp (accepted or refused) or a generic_nack (a refusal: no message_id, never status 0). One
        that accepts the last part of a text its send gave up in doubt is reported: the text went after all."""
        record = attempt.record
        raw_id = getattr(response, "message_id", None)
        smsc_id = raw_id.decode("ascii", "replace") if raw_id else None  # none (or empty): accepted without an id
        self._ledger.answered(record.message_id, attempt.number, record.total, response.status, smsc_id)
        with self._late:
            late = attempt.given_up
        if not late or response.status != ESME_ROK:
            return
        if any(_answer_in(record, n) != "" for n in range(1, record.total + 1)):
            return  # a part still unanswered or refused: the text did not go whole
        event(self._log, "smpp.accepted_late", logging.WARNING, message_id=record.message_id,
              gateway_id=record.gateway_id)  # fmt: skip
        self.context.report_delivery(DeliveryReport(state=SmsState.SUBMITTED, gateway_id=record.gateway_id,
                                                    at=self.context.clock.now(), message_id=record.message_id,
                                                    raw_status="submit_sm_resp after the send gave it up"))  # fmt: skip

    def _params(self, phone: str, part: Part) -> dict[str, Any]:
        config = self.config
        return {
            "source_addr_ton": config.source_addr_ton,
            "source_addr_npi": config.source_addr_npi,
            "source_addr": config.source_addr,
            "dest_addr_ton": config.dest_addr_ton,
            "dest_addr_npi": config.dest_addr_npi,
            "destination_addr": phone.removeprefix("+"),
            "esm_class": part.esm_class,
            "data_coding": part.data_coding,
            "registered_delivery": 0x01,  # a receipt on final delivery or failure
            "short_message": part.short_message,
        }

    def _failed(self, message: SmsMessage, record: MessageRecord, reason: str) -> SmsSubmitResult:
        event(self._log, "sms.submit_failed", logging.WARNING, message_id=message.message_id, reason=reason)
        return SmsSubmitResult(
            message_id=message.message_id, state=SmsState.FAILED, gateway_id=record.gateway_id, detail=reason
        )

    def _on_deliver(self, pdu: Any) -> int:
        """A deliver_sm or data_sm: a delivery receipt, or a message a debtor sent. Runs in the link's thread."""
        payload = getattr(pdu, "short_message", None) or getattr(pdu, "message_payload", None) or b""
        receipted = getattr(pdu, "receipted_message_id", None)
        if pdu.esm_class & ESM_TYPE_MASK == ESM_DELIVERY_RECEIPT or receipted:
            text = payload.decode("latin-1")
            receipt_id = receipted.decode("ascii", "replace") if receipted else None
            receipt = parse_receipt(text, receipt_id, getattr(pdu, "message_state", None))
            if receipt is None:
                event(self._log, "smpp.receipt_unreadable", logging.WARNING)
                return ESME_ROK
            try:
                record = self._ledger.receipt(receipt.smsc_id, receipt.stat, receipt.state)
            except UnknownSmscId:  # another application's text on a shared account: answered, never retried
                event(self._log, "smpp.receipt_unknown", smsc_id=receipt.smsc_id[:64], stat=receipt.stat)
                return ESME_ROK
            final = record.final_state() if record else None
            if record is not None and final is not None:
                self.context.report_delivery(
                    DeliveryReport(
                        state=final,
                        gateway_id=record.gateway_id,
                        at=self.context.clock.now(),
                        message_id=record.message_id,
                        raw_status=record.raw_status(),
                    )
                )
            return ESME_ROK
        try:  # whatever reading it raises, every redelivery raises again: refused for good (round 23 C-F3)
            user_data = split_udh(payload, pdu.esm_class)
            phone = _phone(pdu.source_addr.decode("ascii", "replace"), pdu.source_addr_ton)
            part = decode_text(user_data.payload, pdu.data_coding)
        except Exception as exc:
            raise UnreadableDeliver(type(exc).__name__) from exc
        problem = unkeepable(phone) or unkeepable(part)  # the rule the Kannel MO route and the web guard apply
        if problem:
            # No store can keep it (PostgreSQL refuses a NUL, UTF-8 a lone surrogate), now or on any redelivery: a
            # permanent error, so the SMSC gives it up instead of retrying until its validity ends (round 21 C-F1).
            event(self._log, "smpp.mo_refused", logging.WARNING, reason=problem, command=pdu.command,
                  data_coding=pdu.data_coding)  # fmt: skip
            return ESME_RX_P_APPN
        text = self._inbound.add(phone, user_data.concat, part)
        if text is not None:
            self.context.report_inbound(InboundSms(phone=phone, text=text, received_at=self.context.clock.now()))
        return ESME_ROK


def _answer_in(record: MessageRecord, number: int) -> str | None:
    """What the SMSC answered part ``number`` as the ledger has it: "" accepted, the refusal, ``None`` no answer."""
    state = record.parts.get(number)
    if state is not None and state.accepted:
        return ""
    if state is not None and state.refused is not None:
        return f"SMSC refused part {number}/{record.total}: {status_text(state.refused)}"
    return None


def _asked_to_slow_down(record: MessageRecord, number: int) -> bool:
    """Whether the SMSC's last answer to part ``number`` was queue full or throttled: submitted again, not final."""
    state = record.parts.get(number)
    return state is not None and not state.accepted and state.refused in _RETRY_LATER


def _phone(address: str, ton: int) -> str:
    """An MO sender in E.164 when the SMSC marks it international (TON 1), else as the SMSC gave it."""
    digits = address.removeprefix("+")
    return f"+{digits}" if ton == 1 and digits.isdigit() else address


@hookimpl
def cartera_register_sms_gateways(register: AdapterRegistry[SmsGateway[Any]]) -> None:
    register.add(SmppGateway)
