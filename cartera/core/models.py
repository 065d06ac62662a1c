"""Dataclasses and enums exchanged between core and vendor plugins.

These are the only types that cross the plugin boundary: plugins never see ORM rows or sessions.
All datetimes are timezone-aware (UTC unless stated); phone numbers are E.164 strings.

They are also where a vendor's text enters core: each text field of a report an adapter makes (a call's end, an
agent's connection, a recording, a text's submission, a receipt, a debtor's message) is made keepable when the
report is made (:func:`_keep`), so a PBX's or a gateway's NUL never costs the rest of the report its write.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from cartera.core.control_characters import keepable, unkeepable


def _keep(report: object, *fields: str) -> None:
    """Escape in ``report``'s text ``fields`` what no store keeps (:func:`~cartera.core.control_characters.keepable`:
    a NUL, a lone surrogate), visibly (``\\x00``): PostgreSQL refuses a NUL and UTF-8 a lone surrogate, so such a
    character in a hangup cause or an smsbox's answer failed the whole write (the call stayed ``placing``, the text
    ``queued``) where SQLite kept it (round 21 C-F9). The sms plugins refuse a debtor's message holding one before
    it is made a report (:func:`~cartera.core.control_characters.unkeepable`, a permanent error to the SMSC)."""
    for name in fields:
        value = getattr(report, name)
        if isinstance(value, str) and unkeepable(value) is not None:
            object.__setattr__(report, name, keepable(value))


class Channel(enum.StrEnum):
    CALL = "call"
    SMS = "sms"


# --- dialing ---------------------------------------------------------------------------------------


class CallOutcome(enum.StrEnum):
    """Final outcome of one call attempt; every dialer maps its vendor's causes onto these."""

    ANSWERED = "answered"
    #: Answered by a person, no agent free within the wait allowed (2 s, 47 CFR 64.1200(a)(7)): the dialer played
    #: the portfolio's identification message and hung up. Counts as an attempt; never as a conversation.
    ABANDONED = "abandoned"
    #: Answered by an answering machine (the dialer's answering-machine detection, Asterisk's AMD()): hung up, never
    #: offered to an agent. Counts as an attempt, never as a conversation nor as answered by a person.
    MACHINE = "machine"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    REJECTED = "rejected"
    INVALID_NUMBER = "invalid_number"
    CONGESTION = "congestion"
    FAILED = "failed"
    CANCELLED = "cancelled"  # core asked the dialer to cancel it before it was answered (Dialer.cancel)
    UNKNOWN = "unknown"  # the node stopped without the call's end and the dialer cannot tell it (Dialer.reconcile)


class DispositionCode(enum.StrEnum):
    """What the agent recorded at wrap-up of an answered call."""

    RIGHT_PARTY_CONTACT = "right_party_contact"
    PROMISE_TO_PAY = "promise_to_pay"
    REFUSED_TO_PAY = "refused_to_pay"
    WRONG_PARTY = "wrong_party"
    CALLBACK_REQUESTED = "callback_requested"


@dataclass(frozen=True, slots=True)
class Disposition:
    code: DispositionCode
    promised_amount: Decimal | None = None
    promised_date: date | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One call the compliance gate allowed. ``attempt_id`` is unique per site and is the correlation id."""

    attempt_id: int
    site: str
    phone: str
    account_ref: str | None = None
    caller_id: str | None = None
    variables: dict[str, str] = field(default_factory=dict)
    #: The agent (its identity at the dialer, as in :attr:`AgentConnected.agent`) the answered call must be connected
    #: to, not any ready agent: a callback the debtor arranged with that agent. Only for a dialer that declares
    #: :attr:`cartera.core.adapters.DialerCapabilities.targets_agents`.
    agent: str | None = None


@dataclass(frozen=True, slots=True)
class CallResult:
    """Reported exactly once per :class:`CallRequest` when the call has ended (or could not be placed)."""

    attempt_id: int
    outcome: CallOutcome
    raw_cause: str
    started_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    agent: str | None = None
    vendor_call_id: str | None = None
    disposition: Disposition | None = None

    def __post_init__(self) -> None:
        _keep(self, "raw_cause", "agent", "vendor_call_id")

    @property
    def talk_seconds(self) -> float:
        if self.answered_at is None or self.ended_at is None:
            return 0.0
        return (self.ended_at - self.answered_at).total_seconds()


@dataclass(frozen=True, slots=True)
class AgentConnected:
    """A dialer's report that the answered call of ``attempt_id`` was connected to ``agent`` (the agent's identity at
    the dialer: a queue member's interface, a simulator seat) at ``at``: the moment the agent's screen shows the
    debtor."""

    attempt_id: int
    agent: str
    at: datetime

    def __post_init__(self) -> None:
        _keep(self, "agent")


class SeatState(enum.StrEnum):
    """What one of a dialer's agents is doing, as its pacing counts it."""

    READY = "ready"  #: waiting for a call
    ON_CALL = "on_call"  #: connected to an answered call
    WRAP_UP = "wrap_up"  #: after a call, not offered one yet
    PAUSED = "paused"  #: offered no call (a break, :meth:`Dialer.pause_agent`)


@dataclass(frozen=True, slots=True)
class Seat:
    """One of a dialer's agents (``agent``: its identity at the dialer, as in :class:`AgentConnected`), in
    ``state`` since ``since`` (the time of the site's clock it entered it)."""

    agent: str
    state: SeatState
    since: datetime


@dataclass(frozen=True, slots=True)
class UnfinishedCall:
    """A call a previous run of the site's node handed to its dialer and never saw end (the node was killed)."""

    request: CallRequest
    requested_at: datetime

    def unknown(self, raw_cause: str) -> CallResult:
        """Its end as :attr:`CallOutcome.UNKNOWN`, ``raw_cause`` saying why nothing better is known."""
        return CallResult(self.request.attempt_id, CallOutcome.UNKNOWN, raw_cause, self.requested_at)


# --- recordings ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recording:
    """A finished recording file on the node's local disk, reported by a dialer (or found in the spool)."""

    path: Path
    attempt_id: int | None
    started_at: datetime
    duration_s: float
    agent: str | None = None
    vendor_call_id: str | None = None

    def __post_init__(self) -> None:
        _keep(self, "agent", "vendor_call_id")


@dataclass(frozen=True, slots=True)
class Checksums:
    md5_hex: str
    sha256_hex: str
    size: int


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What a recording store holds under ``key``: the store's own description of it."""

    key: str
    size: int
    sha256_hex: str | None
    location: str
    etag: str | None = None


# --- sms -------------------------------------------------------------------------------------------


class SmsState(enum.StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class SmsMessage:
    message_id: int
    site: str
    phone: str
    text: str
    account_ref: str | None = None


@dataclass(frozen=True, slots=True)
class SmsSubmitResult:
    message_id: int
    state: SmsState
    gateway_id: str | None
    detail: str = ""

    def __post_init__(self) -> None:
        _keep(self, "gateway_id", "detail")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A gateway's delivery receipt for message ``message_id`` (else the one with ``gateway_id``); applied only
    when ``gateway_id`` is the one the gateway's submit result gave that message (core refuses any other as
    unknown), or while the message is still being submitted."""

    state: SmsState
    gateway_id: str | None
    at: datetime
    message_id: int | None = None
    raw_status: str = ""

    def __post_init__(self) -> None:
        _keep(self, "gateway_id", "raw_status")


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A message a debtor sent to the site (MO), as the gateway received it."""

    phone: str
    text: str
    received_at: datetime
    gateway_id: str | None = None

    def __post_init__(self) -> None:
        _keep(self, "phone", "text", "gateway_id")


# --- creditor data exchange ------------------------------------------------------------------------


class AssignmentAction(enum.StrEnum):
    ASSIGN = "assign"  #: a new account, or an update of one the creditor assigned before
    UPDATE = "update"  #: an update of an account assigned before; unknown accounts are quarantined
    WITHDRAW = "withdraw"
    PAYMENT = "payment"


#: The largest amount a creditor may send, by any channel (API, CSV, SQL exchange): digits in all, and decimals.
AMOUNT_MAX_DIGITS = 16
AMOUNT_DECIMAL_PLACES = 2
#: The longest payment reference a creditor may send, by any channel (API, CSV, SQL exchange; the API's documented
#: maximum): a payment activity's outcome keeps it whole, and a payment is recognised by all of it; a longer one
#: quarantines its row.
PAYMENT_REF_MAX = 120
#: The longest agent identity at a dialer the store keeps (calls', recordings' and users' extension columns).
AGENT_MAX = 64


def storable_agent(agent: str | None) -> str | None:
    """``agent`` as a dialer reported it, or ``None`` when it is longer than the store keeps (and so than any
    user's extension): a misconfigured or hostile PBX's interface name must not cost a call's end or a recording's
    row, which PostgreSQL would refuse whole."""
    return agent if agent is None or len(agent) <= AGENT_MAX else None


@dataclass(frozen=True, slots=True)
class AssignmentRow:
    """One account as a creditor assigns it. Phones are raw strings: core normalises them to E.164."""

    line: int
    creditor: str
    portfolio: str
    account_ref: str
    debtor_name: str
    phones: tuple[str, ...]
    balance: Decimal
    currency: str
    action: AssignmentAction = AssignmentAction.ASSIGN
    country: str | None = None
    payment_amount: Decimal | None = None
    region: str | None = None  #: ISO 3166-2 subdivision of the debtor's address (``CL-AP``), when known
    timezone: str | None = None  #: IANA zone of the debtor's address (``America/Tijuana``), when known
    paid_on: date | None = None  #: payment rows: the day the debtor paid, when the creditor says
    payment_ref: str | None = None  #: payment rows: the creditor's reference of the payment, when it has one
    due_on: date | None = None  #: the day the debt fell due, when the creditor says (None: keep the stored one)
    days_past_due: int | None = None  #: or its days past due on the day the file is imported
    risk_score: float | None = None  #: the creditor's risk score of the account, when it gives one (None: keep)


@dataclass(frozen=True, slots=True)
class RowError:
    """A row a parser could not read; it is quarantined while the good rows load."""

    line: int
    field: str
    reason: str


class FileRejected(Exception):
    """The whole file is unusable (wrong header, wrong encoding): nothing of it is loaded."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DeliveryScope:
    """The creditors a crm_sync adapter may deliver assignments for, each with the portfolio codes it may
    deliver to (empty: any portfolio of that creditor). Core's import refuses a batch with a row outside it."""

    creditors: Mapping[str, frozenset[str]]

    @classmethod
    def of(cls, creditor: str, portfolio: str) -> DeliveryScope:
        """One creditor's one portfolio (an adapter configured with a creditor and a portfolio)."""
        return cls({creditor: frozenset({portfolio})})

    def refusal(self, creditor: str, portfolio: str) -> tuple[str, str] | None:
        """``(field, reason)`` when a row for ``creditor``/``portfolio`` is outside the scope, else ``None``."""
        portfolios = self.creditors.get(creditor)
        if portfolios is None:
            known = ", ".join(sorted(self.creditors)) or "none"
            return "creditor", f"{creditor!r} is not a creditor of the site's crm_sync plugin (configured: {known})"
        if portfolios and portfolio not in portfolios:
            allowed = ", ".join(sorted(portfolios))
            return (
                "portfolio",
                f"creditor {creditor!r} may not deliver to portfolio {portfolio!r} (configured: {allowed})",
            )
        return None


class Reading(abc.ABC):
    """A delivery hashed as its items are read (a file, read once per import): its sha256 and how it was read
    are known once a pass over the items reached the end."""

    @abc.abstractmethod
    def known_sha256(self) -> str | None:
        """The sha256, if a pass over the items reached the end (nothing is read for it)."""

    @abc.abstractmethod
    def sha256(self) -> str:
        """The sha256, reading the content for it unless a pass over the items reached the end."""

    @abc.abstractmethod
    def read_as(self) -> str | None:
        """How the last pass to the end read the content, for the import summary: ``windows-1252, delimiter ','``."""


@dataclass(frozen=True, slots=True)
class AssignmentBatch:
    """A unit of delivery from a creditor (a file, an API batch). ``source`` names it for operators; ``hashed``
    is the sha256 of its content, or the :class:`Reading` that learns it while the items are read."""

    source: str
    hashed: str | Reading
    items: Iterable[AssignmentRow | RowError]

    @property
    def content_sha256(self) -> str:
        """The sha256 of the content (a file no pass read to the end is read for it)."""
        return self.hashed if isinstance(self.hashed, str) else self.hashed.sha256()

    def known_sha256(self) -> str | None:
        """The sha256 if it is known without reading anything: a file's once a pass read its items to the end."""
        return self.hashed if isinstance(self.hashed, str) else self.hashed.known_sha256()

    @property
    def read_as(self) -> str | None:
        """How a file was read (once its items were read to the end), for the import summary."""
        return None if isinstance(self.hashed, str) else self.hashed.read_as()


class ActivityKind(enum.StrEnum):
    CALL_ATTEMPT = "call_attempt"
    SMS = "sms"
    PROMISE_TO_PAY = "promise_to_pay"
    PAYMENT = "payment"


@dataclass(frozen=True, slots=True)
class Activity:
    """Work done on an account, reported back to its creditor. ``seq`` increases per site, without gaps."""

    seq: int
    kind: ActivityKind
    at: datetime
    creditor: str
    portfolio: str
    account_ref: str
    phone: str | None = None
    outcome: str | None = None
    amount: Decimal | None = None
    due_date: date | None = None
    agent: str | None = None
    #: the node's id of the call (``call_attempt``, ``promise_to_pay``): a second ``call_attempt`` of the same call
    #: corrects the first's outcome (the agent's disposition replacing ``wrap_up_timeout`` / ``browser_closed``)
    attempt: int | None = None


# --- health ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A vendor's answer to ``check``: ``ok`` and one line an operator can act on."""

    ok: bool
    detail: str
