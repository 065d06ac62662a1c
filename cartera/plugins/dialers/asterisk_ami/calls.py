"""Calls in flight, followed through AMI events by their channel's UNIQUEID (the ChannelId we originate with)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime

from cartera.plugin import CallOutcome, CallRequest, CallResult, Clock
from cartera.plugins.dialers.asterisk_ami.client import EventHandler, Message, ami_int
from cartera.plugins.dialers.asterisk_ami.outcomes import call_outcome, clip, raw_cause

UP = "6"  # ChannelState of an answered channel
#: The events the tracker reads; each names one of our channels in a ``...Uniqueid`` field.
CALL_EVENTS = ("Newchannel", "Newstate", "DialEnd", "OriginateResponse", "AgentConnect", "UserEvent", "Hangup")
#: The documented dialplan's UserEvents that settle an answered call's outcome, with what each says.
VERDICTS: dict[str, tuple[CallOutcome, str]] = {
    "CarteraAbandoned": (CallOutcome.ABANDONED, "no agent in time: identification message played"),
    "CarteraMachine": (CallOutcome.MACHINE, "answering machine"),
}
#: Bounds on a call's notes, whatever a PBX sends (a UserEvent's Detail is up to ``max_message_bytes``, and a
#: hostile or broken dialplan can send any number of them): at most this many notes, each cut to this many
#: characters, and this many characters in all; a later note past a bound is counted, not kept.
MAX_NOTES = 8
MAX_NOTE_CHARS = 160
MAX_NOTES_CHARS = 800


@dataclass
class Call:
    """What Asterisk has said so far about one attempt's channel."""

    request: CallRequest
    uniqueid: str
    started_at: datetime
    placed_at: float  # time.monotonic() when the Originate was sent
    channel: str | None = None
    seen: bool = False  # Asterisk reported the channel
    answered_at: datetime | None = None
    agent: str | None = None  # the queue member's interface the call was connected to
    connection: Future[None] | None = None  # the report of that connection, which the call's end waits for
    dial_status: str | None = None
    originate_response: str | None = None  # an OriginateResponse's Response (Success, Failure) and Reason
    originate_reason: str | None = None
    originate_failed_at: float | None = None  # time.monotonic() of a failed OriginateResponse
    cause: int | None = None
    cause_text: str = ""
    ended_at: datetime | None = None
    notes: list[str] = field(default_factory=list)  # bounded: add with :meth:`note`
    notes_dropped: int = 0  # notes past the bounds (:data:`MAX_NOTES`, :data:`MAX_NOTES_CHARS`)
    hang_up: bool = False  # the dialer asked Asterisk to hang it up
    verdict: CallOutcome | None = None  # what the dialplan made of the answered call (:data:`VERDICTS`)
    cancelled: bool = False  # ... because core cancelled it before it was answered

    def note(self, text: str) -> None:
        """Keep ``text`` (cut to :data:`MAX_NOTE_CHARS`) among the call's notes, unless it repeats one or the
        notes are full (:data:`MAX_NOTES`, :data:`MAX_NOTES_CHARS`): then it is only counted."""
        text = clip(text, MAX_NOTE_CHARS)
        if text in self.notes:
            return
        if len(self.notes) >= MAX_NOTES or sum(map(len, self.notes)) + len(text) > MAX_NOTES_CHARS:
            self.notes_dropped += 1
            return
        self.notes.append(text)

    def result(self) -> CallResult:
        answered = self.answered_at is not None
        notes = self.notes
        if self.notes_dropped:
            notes = [*notes, f"{self.notes_dropped} more notes dropped"]
        if self.cancelled:
            outcome = CallOutcome.CANCELLED
            notes = [*notes, "the debtor answered as it was hung up"] if answered else notes
        elif self.verdict is not None and self.agent is None:
            outcome = self.verdict
        else:
            outcome = call_outcome(
                answered=answered,
                cause=self.cause,
                dial_status=self.dial_status,
                originate_reason=self.originate_reason,
            )
        return CallResult(
            attempt_id=self.request.attempt_id,
            outcome=outcome,
            raw_cause=raw_cause(
                cause=self.cause,
                cause_text=self.cause_text,
                dial_status=self.dial_status,
                originate_response=self.originate_response,
                originate_reason=self.originate_reason,
                note="; ".join(notes),
            ),
            started_at=self.started_at,
            answered_at=self.answered_at if outcome is CallOutcome.ANSWERED else None,
            ended_at=self.ended_at,
            agent=self.agent,
            vendor_call_id=self.uniqueid,
        )


class CallTracker:
    """Live calls by UNIQUEID; thread-safe. ``on_end(call)`` runs exactly once per call, outside the lock;
    ``on_connect(call, at)`` once per call connected to an agent, before its end, outside the lock.

    ``hang_up(call)`` is asked again when the channel of a call the dialer wants hung up appears.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        on_end: Callable[[Call], None],
        hang_up: Callable[[Call], None],
        on_connect: Callable[[Call, datetime], None],
    ) -> None:
        self._clock = clock
        self._on_end = on_end
        self._hang_up = hang_up
        self._on_connect = on_connect
        self._changed = threading.Condition()
        self._live: dict[str, Call] = {}
        self._attempts: set[int] = set()

    @property
    def handlers(self) -> dict[str, EventHandler]:
        """A handler for each of :data:`CALL_EVENTS`."""
        handlers = (
            self.on_new_channel,
            self.on_new_state,
            self.on_dial_end,
            self.on_originate_response,
            self.on_agent_connect,
            self.on_user_event,
            self.on_hangup,
        )
        return dict(zip(CALL_EVENTS, handlers, strict=True))

    def admit(self, request: CallRequest, uniqueid: str, started_at: datetime | None = None) -> Call | None:
        """Take the attempt; ``None`` when this dialer already took it (a call is never placed twice)."""
        with self._changed:
            if request.attempt_id in self._attempts:
                return None
            self._attempts.add(request.attempt_id)
            call = Call(request, uniqueid, started_at=started_at or self._clock.now(), placed_at=time.monotonic())
            self._live[uniqueid] = call
            return call

    def adopt(self, request: CallRequest, channel: Message, started_at: datetime) -> Call | None:
        """Follow to its end a call a killed run of the node placed, whose channel Asterisk still carries (a
        ``CoreShowChannel`` entry); ``None`` when this dialer already follows the attempt."""
        call = self.admit(request, channel.get("Uniqueid", ""), started_at)
        if call is not None:
            call.note("taken over from a killed run")
            self.resume(call, channel)
        return call

    def forget(self, call: Call) -> bool:
        """Stop following ``call`` without reporting it; ``False`` when it ended meanwhile (and was reported)."""
        with self._changed:
            if self._live.get(call.uniqueid) is not call:
                return False
            del self._live[call.uniqueid]
            self._changed.notify_all()
            return True

    @property
    def in_flight(self) -> int:
        return len(self._live)

    def live(self) -> list[Call]:
        with self._changed:
            return list(self._live.values())

    def wait_until_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: not self._live, timeout)

    def cancel(self, attempt_id: int) -> Call | None:
        """Mark the attempt's call to be hung up as cancelled: the call, unless it is unknown, answered or already
        being hung up for another reason (the dialer stopping)."""
        with self._changed:
            call = next((call for call in self._live.values() if call.request.attempt_id == attempt_id), None)
            if call is None or call.answered_at is not None or (call.hang_up and not call.cancelled):
                return None
            if not call.cancelled:
                call.cancelled = call.hang_up = True
                call.note("cancelled by the dialer before the answer")
            return call

    def end(self, call: Call, note: str = "") -> None:
        """The call is over (its Hangup, a refused Originate, or its channel is gone): report it once."""
        with self._changed:
            if self._live.get(call.uniqueid) is not call:
                return
            del self._live[call.uniqueid]
            call.ended_at = self._clock.now()
            if note:
                call.note(note)
            self._changed.notify_all()
        self._on_end(call)

    def resume(self, call: Call, channel: Message) -> None:
        """The call's channel is alive after a reconnection (a ``CoreShowChannel`` entry)."""
        with self._changed:
            call.seen = True
            call.channel = channel.get("Channel", call.channel)
            if channel.get("ChannelState") == UP and call.answered_at is None:
                call.answered_at = self._clock.now()
                call.note("answer time taken at reconnection")
                if call.cancelled:  # answered before the cancel's Hangup could be sent: an answered call stays up
                    call.cancelled = call.hang_up = False
                    call.note("answered while the AMI connection was down: not cancelled")

    # --- events (on the AMI reader thread) ----------------------------------------------------------

    def on_new_channel(self, event: Message) -> None:
        call = self._live.get(event.get("Uniqueid", ""))
        if call is None:
            return
        with self._changed:
            call.seen = True
            call.channel = event.get("Channel")
        if call.hang_up:
            self._hang_up(call)

    def on_new_state(self, event: Message) -> None:
        call = self._live.get(event.get("Uniqueid", ""))
        if call is not None and event.get("ChannelState") == UP:
            self._answered(call)

    def on_dial_end(self, event: Message) -> None:
        caller = self._live.get(event.get("Uniqueid", ""))
        if caller is not None:
            self._dialled(caller, event)
        call = self._live.get(event.get("DestUniqueid", ""))  # the Originate's dial
        if call is None:
            return
        with self._changed:
            call.dial_status = event.get("DialStatus") or call.dial_status
        if call.dial_status == "ANSWER":
            self._answered(call)

    def on_originate_response(self, event: Message) -> None:
        call = self._live.get(event.get("Uniqueid", "")) or self._live.get(event.get("ActionID", ""))
        if call is None:
            return
        with self._changed:
            call.originate_response, call.originate_reason = event.get("Response"), event.get("Reason")
            if event.get("Response") != "Success" and not call.seen:
                call.originate_failed_at = time.monotonic()  # its channel's events may still be on their way
        if event.get("Response") == "Success":
            self._answered(call)

    def on_agent_connect(self, event: Message) -> None:
        """The queue connected our channel (the caller, by the UNIQUEID set at Originate) to a member: the agent is
        the member's interface, the identity an agent's workspace extension names."""
        call = self._live.get(event.get("Uniqueid", ""))
        agent = event.get("Interface") or event.get("MemberName")
        if call is not None and agent:
            self._connected(call, agent)

    def on_user_event(self, event: Message) -> None:
        """The dialplan's word on our answered channel: abandoned (no agent within ``CARTERA_ABANDON_AFTER``) or
        an answering machine (AMD()); other UserEvents are the operator's own."""
        call = self._live.get(event.get("Uniqueid", ""))
        verdict = VERDICTS.get(event.get("UserEvent", ""))
        if call is None or verdict is None:
            return
        outcome, note = verdict
        detail = event.get("Detail", "")
        with self._changed:
            if call.verdict is not outcome:  # one note per verdict: a repeated UserEvent adds nothing
                call.verdict = outcome
                call.note(f"{note} ({detail})" if detail else note)
        self._answered(call)

    def _dialled(self, call: Call, event: Message) -> None:
        """Our channel, the caller, dialled someone (a DialEnd): a call placed for one agent dials that agent's
        interface (``CARTERA_AGENT``, from the dialplan's ``agent_context``), connected once it answers. The
        queue's dials are left to AgentConnect, which names the member that took the call."""
        if call.request.agent is not None and event.get("DialStatus") == "ANSWER":
            self._connected(call, call.request.agent)

    def _connected(self, call: Call, agent: str) -> None:
        self._answered(call)
        with self._changed:
            first = call.agent is None
            if first:  # a later AgentConnect (another member) does not change the agent already reported
                call.agent = agent
            at = self._clock.now()
        if first:
            self._on_connect(call, at)

    def on_hangup(self, event: Message) -> None:
        call = self._live.get(event.get("Uniqueid", ""))
        if call is None:
            return
        cause = ami_int(event.get("Cause", ""))
        with self._changed:
            call.seen = True
            call.cause = cause
            call.cause_text = event.get("Cause-txt", "")
        self.end(call)

    def _answered(self, call: Call) -> None:
        with self._changed:
            call.seen = True
            if call.answered_at is None:
                call.answered_at = self._clock.now()
