"""SIP final responses → the core's CallOutcome, and the raw cause kept with each result."""

from __future__ import annotations

from cartera.plugin import CallOutcome

STATUS_OUTCOMES: dict[int, CallOutcome] = {
    486: CallOutcome.BUSY,  # Busy Here
    600: CallOutcome.BUSY,  # Busy Everywhere
    480: CallOutcome.NO_ANSWER,  # Temporarily Unavailable
    408: CallOutcome.NO_ANSWER,  # Request Timeout (also pjsip's own, when nothing answers the INVITE)
    603: CallOutcome.REJECTED,  # Decline
    404: CallOutcome.INVALID_NUMBER,  # Not Found
    484: CallOutcome.INVALID_NUMBER,  # Address Incomplete
    503: CallOutcome.CONGESTION,  # Service Unavailable
}


def call_outcome(*, answered: bool, status: int, ring_timed_out: bool, cancelled: bool = False) -> CallOutcome:
    """The outcome of a call from its INVITE's final status and whether the dialer gave up ringing it, or
    cancelled it for core (before the answer; it stays cancelled should the answer cross the CANCEL)."""
    if cancelled:
        return CallOutcome.CANCELLED
    if answered:
        return CallOutcome.ANSWERED
    if ring_timed_out:
        return CallOutcome.NO_ANSWER
    return STATUS_OUTCOMES.get(status, CallOutcome.FAILED)


def raw_cause(*, status: int, reason: str, notes: list[str]) -> str:
    """What the trunk said and what the dialer did, e.g. ``486 Busy Here`` or ``200 OK, REFER ... 202 Accepted``."""
    parts = [f"{status} {reason}".strip() if status else "no SIP final response", *notes]
    return ", ".join(parts)
