"""How Asterisk says a call ended (hangup cause, dial status, originate reason) → the core's CallOutcome.

The Q.850 hangup cause of the debtor's channel is the most precise: chan_pjsip derives it from the SIP
answer (486 → 17, 404 → 1, 603 → 21, 503 → 34, 500 → 38...), while the dial status is just NOANSWER for a
rejected or failed call. The dial status and the OriginateResponse reason fill in when the cause is
unspecific (normal clearing, unknown); a specific cause this table does not name is a failure.
"""

from __future__ import annotations

from cartera.plugin import CallOutcome

CAUSE_OUTCOMES: dict[int, CallOutcome] = {
    1: CallOutcome.INVALID_NUMBER,  # unallocated number (SIP 404, 485, 604)
    3: CallOutcome.INVALID_NUMBER,  # no route to destination (420)
    22: CallOutcome.INVALID_NUMBER,  # number changed (410)
    28: CallOutcome.INVALID_NUMBER,  # invalid number format (484)
    17: CallOutcome.BUSY,  # user busy (486, 600)
    18: CallOutcome.NO_ANSWER,  # no user responding (408)
    19: CallOutcome.NO_ANSWER,  # user alerting, no answer (480; the ring timeout)
    20: CallOutcome.NO_ANSWER,  # subscriber absent
    21: CallOutcome.REJECTED,  # call rejected (403, 603)
    34: CallOutcome.CONGESTION,  # no circuit/channel available (503)
    41: CallOutcome.CONGESTION,  # temporary failure (409)
    42: CallOutcome.CONGESTION,  # switching equipment congestion
    44: CallOutcome.CONGESTION,  # requested circuit/channel not available
}

#: Causes that say nothing of why a call was not answered: the dial status or originate reason may say more.
UNSPECIFIC_CAUSES = frozenset({0, 16, 31, 127})  # unknown, normal clearing, normal unspecified, interworking

DIAL_STATUS_OUTCOMES: dict[str, CallOutcome] = {
    "BUSY": CallOutcome.BUSY,
    "NOANSWER": CallOutcome.NO_ANSWER,
    "CONGESTION": CallOutcome.CONGESTION,
}

#: OriginateResponse ``Reason``: the last control frame Asterisk saw on the channel.
ORIGINATE_REASONS: dict[str, str] = {
    "0": "not placed",
    "1": "hung up",
    "3": "ringing, not answered",
    "4": "answered",
    "5": "busy",
    "8": "congestion",
}
ORIGINATE_REASON_OUTCOMES: dict[str, CallOutcome] = {
    "3": CallOutcome.NO_ANSWER,
    "5": CallOutcome.BUSY,
    "8": CallOutcome.CONGESTION,
}


def call_outcome(
    *, answered: bool, cause: int | None, dial_status: str | None, originate_reason: str | None
) -> CallOutcome:
    """The outcome of a call from what Asterisk reported about it."""
    if answered:
        return CallOutcome.ANSWERED
    if cause is not None and cause not in UNSPECIFIC_CAUSES:
        return CAUSE_OUTCOMES.get(cause, CallOutcome.FAILED)
    if dial_status in DIAL_STATUS_OUTCOMES:
        return DIAL_STATUS_OUTCOMES[dial_status]
    if originate_reason in ORIGINATE_REASON_OUTCOMES:
        return ORIGINATE_REASON_OUTCOMES[originate_reason]
    return CallOutcome.FAILED


def raw_cause(
    *,
    cause: int | None,
    cause_text: str,
    dial_status: str | None,
    originate_response: str | None,
    originate_reason: str | None,
    note: str,
) -> str:
    """What Asterisk said about the end, e.g. ``17 User busy, dial BUSY``; the OriginateResponse only when
    neither a cause nor a dial status came (``originate Failure, reason 0 (not placed)``). Bounded whatever the
    PBX sent: each of its fields to :data:`MAX_FIELD_CHARS`, the whole to :data:`MAX_RAW_CAUSE_CHARS`."""
    parts = []
    if cause is not None:
        parts.append(f"{cause} {clip(cause_text, MAX_FIELD_CHARS)}".strip())
    if dial_status:
        parts.append(f"dial {clip(dial_status, MAX_FIELD_CHARS)}")
    if originate_reason is not None and cause is None and not dial_status:
        meaning = ORIGINATE_REASONS.get(originate_reason)
        response = clip(originate_response or "response", MAX_FIELD_CHARS)
        parts.append(
            f"originate {response}, reason {clip(originate_reason, MAX_FIELD_CHARS)}"
            + (f" ({meaning})" if meaning else "")
        )
    if note:
        parts.append(note)
    return clip(", ".join(parts), MAX_RAW_CAUSE_CHARS) or "Asterisk reported no cause"


#: Bounds on :func:`raw_cause`: an AMI field in it (Cause-txt, DialStatus, Response, Reason), and the whole.
MAX_FIELD_CHARS = 80
MAX_RAW_CAUSE_CHARS = 1200


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
