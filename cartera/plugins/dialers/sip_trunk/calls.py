"""One attempt's call: the pjsua2 Call whose callbacks snapshot what happened, and what the dialer knows of it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pjsua2 as pj

from cartera.plugin import CallRequest, CallResult
from cartera.plugins.dialers.sip_trunk.outcomes import call_outcome, raw_cause

#: A message/sipfrag status line after a blank line (RFC 3515), found without a ``\s*`` tried from every newline
#: of a long run of them (quadratic: a NOTIFY of 40 KB of newlines held the GIL for seconds).
_BLANK_LINE = re.compile(r"\r?\n\r?\n")
_WHITESPACE = re.compile(r"\s*")
_SIPFRAG_STATUS = re.compile(r"SIP/2\.0 (\d{3})([^\r\n]*)")


def sipfrag_status(message: str) -> tuple[int, str] | None:
    """The status code and reason of the first sipfrag status line after a blank line of ``message``
    (whitespace before it skipped), ``None`` when there is none. Linear in the message's length."""
    at = 0
    while (blank := _BLANK_LINE.search(message, at)) is not None:
        at = _WHITESPACE.match(message, blank.end()).end()  # type: ignore[union-attr]  # \s* always matches
        status = _SIPFRAG_STATUS.match(message, at)
        if status is not None:
            return int(status[1]), status[2].strip()
    return None


@dataclass(frozen=True)
class StateChange:
    """The INVITE session moved to ``state`` (pjsua's InvState name), with the last SIP status seen."""

    token: str
    state: str
    status: int
    reason: str
    sip_call_id: str


@dataclass(frozen=True)
class TransferNews:
    """The REFER's final response (``notify=False``) or a NOTIFY's sipfrag status line (``notify=True``)."""

    token: str
    notify: bool
    status: int
    reason: str


CallEvent = StateChange | TransferNews


class TrunkCall(pj.Call):
    """A pjsua2 Call kept alive by the engine until DISCONNECTED; its callbacks (pjsip's worker thread) only take
    a snapshot, hand it to ``deliver`` and, at DISCONNECTED, ``release`` the Call."""

    def __init__(
        self,
        account: pj.Account,
        token: str,
        deliver: Callable[[CallEvent], None],
        release: Callable[[pj.Call], None],
    ) -> None:
        super().__init__(account)
        self.token = token
        self._deliver = deliver
        self._release = release

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.info
        state = info.state.name
        self._deliver(StateChange(self.token, state, int(info.lastStatusCode), info.lastReason, info.callIdString))
        if state == "DISCONNECTED":
            self._release(self)

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        if prm.e.type != pj.EventId.TSX_STATE:
            return
        tsx_event = prm.e.body.tsxState
        tsx = tsx_event.tsx
        if tsx.method == "REFER" and tsx.role == pj.Role.UAC and tsx.statusCode >= 200:
            if tsx.state == pj.TsxState.COMPLETED:
                self._deliver(TransferNews(self.token, False, tsx.statusCode, tsx.statusText))
        elif tsx.method == "NOTIFY" and tsx.role == pj.Role.UAS and tsx.state == pj.TsxState.TRYING:
            frag = sipfrag_status(tsx_event.src.rdata.wholeMsg)
            if frag is not None:
                self._deliver(TransferNews(self.token, True, *frag))


@dataclass
class Attempt:
    """What the dialer knows about one attempt, from place_call to its report (owner thread only, but ``ended``)."""

    request: CallRequest
    token: str
    started_at: datetime
    placed_at: float = field(default_factory=time.monotonic)
    call_id: int = -1  # pjsua's call slot while the call is live
    sip_call_id: str | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    status: int = 0  # the INVITE's final status (200 once answered)
    reason: str = ""
    ring_timed_out: bool = False
    referred: bool = False  # the REFER was answered
    transferred: bool = False  # the queue took the call (final NOTIFY 2xx)
    cancelled: bool = False  # core cancelled it before it was answered
    notes: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def result(self) -> CallResult:
        return CallResult(
            attempt_id=self.request.attempt_id,
            outcome=call_outcome(
                answered=self.answered, status=self.status, ring_timed_out=self.ring_timed_out, cancelled=self.cancelled
            ),
            raw_cause=raw_cause(status=self.status, reason=self.reason, notes=self.notes),
            started_at=self.started_at,
            answered_at=self.answered_at,
            ended_at=self.ended_at,
            vendor_call_id=self.sip_call_id,
        )
