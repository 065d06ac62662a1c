"""What the engine decides on (:class:`Subject`, its :class:`History`) and what it answers (:class:`Decision`)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import NamedTuple

from cartera.contact.compliance.packs import Hours
from cartera.core.models import Channel


class Reason(enum.StrEnum):
    """Why a contact is refused. Each denial names the rule that raised it as well."""

    OUTSIDE_CONTACT_WINDOW = "outside_contact_window"
    OUTSIDE_REQUESTED_HOURS = "outside_requested_hours"
    PUBLIC_HOLIDAY = "public_holiday"
    ACCOUNT_WITHDRAWN = "account_withdrawn"
    ACCOUNT_PAID = "account_paid"
    ACCOUNT_NOT_ACTIVE = "account_not_active"
    CEASE_CONTACT_REQUESTED = "cease_contact_requested"
    ACCOUNT_DISPUTED = "account_disputed"
    DEBTOR_DECEASED = "debtor_deceased"
    DEBTOR_OPT_OUT = "debtor_opt_out"
    CHANNEL_NOT_AUTHORISED = "channel_not_authorised"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_AFTER_CONVERSATION = "quiet_after_conversation"
    ONE_CHANNEL_AFTER_CONTACT = "one_channel_after_contact"
    MIN_INTERVAL = "min_interval"
    ABANDONED_RECENTLY = "abandoned_recently"
    PROMISE_TO_PAY_PENDING = "promise_to_pay_pending"
    OPT_OUT_NOTICE_MISSING = "opt_out_notice_missing"
    NO_LAW_PACK = "no_law_pack"


class Purpose(enum.StrEnum):
    """Why core contacts the debtor. A promise confirmation is not a collection contact (no moratorium)."""

    COLLECTION = "collection"
    PROMISE_CONFIRMATION = "promise_confirmation"


class LineType(enum.StrEnum):
    """What a phone number is to the debtor, as the creditor or an operator states it (940 CMR 7.04(1)(f))."""

    PERSONAL = "personal"  #: residence, cell, or a number the debtor gave as personal
    WORK = "work"  #: any other number (a workplace...)
    UNKNOWN = "unknown"  #: not stated: rules treat it as either, whichever is stricter


@dataclass(frozen=True, slots=True)
class DebtorHours:
    """Local hours the debtor asked to be contacted in, and the instrument that records the request (needed
    for a request to replace the law's hours where the law allows it: Ley 2300 art. 3)."""

    hours: tuple[tuple[str, str], ...]  #: ``(("mon-fri", "18:00-20:00"),)`` as stored
    week: tuple[Hours | None, ...]  #: seven entries, Monday first; ``None``: not that day
    instrument: str | None = None

    def describe(self) -> str:
        text = ", ".join(f"{days} {interval}" for days, interval in self.hours)
        return text + (f" (instrument: {self.instrument})" if self.instrument else " (no instrument on file)")


class Contact(NamedTuple):
    """One stored call attempt or text, as the rules count it."""

    ts: float  #: POSIX seconds of the request
    channel: Channel
    phone: str
    same_account: bool  #: made about the subject's debt: its account, or the creditor's same account at another site
    conversation: bool  #: an answered call with the right party (Reg F's "telephone conversation")
    site: str | None = None  #: the site that made it (the store may be shared by several)
    abandoned: bool = False  #: a call a person answered that no agent took in time


@dataclass(frozen=True, slots=True)
class History:
    """What the store knows of past contacts, loaded once per decision (:func:`.history.load`)."""

    contacts: tuple[Contact, ...] = ()  #: newest first, back to the policy's horizon
    last_conversation: float | None = None  #: POSIX seconds of the debtor's latest conversation, ever
    promise_due: date | None = None  #: date of the latest promise to pay


@dataclass(frozen=True, slots=True)
class Subject:
    """One contact asked for, with everything a rule may look at."""

    channel: Channel
    phone: str
    account_ref: str | None = None
    account_status: str | None = None
    portfolio: str | None = None  #: ``CREDITOR/PORTFOLIO``: selects the law pack
    country: str | None = None  #: the portfolio's country
    opted_out: frozenset[Channel] = frozenset()  #: channels the debtor opted out of on this number
    timezone: str | None = None  #: the debtor's zone from the creditor's address data
    region: str | None = None  #: ISO 3166-2 subdivision of the debtor's address (regional holidays)
    history: History = History()
    text: str | None = None  #: the message of a text (``None``: not known yet, e.g. when scheduling)
    purpose: Purpose = Purpose.COLLECTION
    requested_hours: DebtorHours | None = None  #: the hours the debtor asked for, on the account
    line_types: Mapping[str, LineType] = field(default_factory=dict)  #: the debtor's numbers by line type

    @property
    def line_type(self) -> LineType:
        return self.line_types.get(self.phone, LineType.UNKNOWN)


class Violation(NamedTuple):
    reason: Reason
    rule: str  #: the id of the rule (law pack rules cite their source)


@dataclass(frozen=True, slots=True)
class Decision:
    """Allow or deny. ``next_allowed_at``: ``at`` itself when allowed; when denied, the first instant every rule
    allows (assuming no other contact meanwhile), or ``None`` when no time will (opt-out, withdrawn account...)."""

    allowed: bool
    violations: tuple[Violation, ...] = ()
    next_allowed_at: datetime | None = None
    pack: str | None = None
    test_number: bool = False

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return tuple(dict.fromkeys(v.reason for v in self.violations))

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(v.rule for v in self.violations)

    def explain(self) -> str:
        if self.allowed:
            return "allowed (test number)" if self.test_number else "allowed"
        text = "denied: " + ", ".join(self.reasons)
        if self.next_allowed_at is not None:
            text += f" (next allowed {self.next_allowed_at.isoformat(timespec='minutes')})"
        return text
