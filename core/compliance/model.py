"""What the engine decides on (:class:`Subject`, its :class:`History`) and what it answers (:class:`Decision`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from core.models import Channel


class Reason(enum.StrEnum):
    """Why a contact is refused. Each denial names the rule that raised it as well."""

    OUTSIDE_CONTACT_WINDOW = "outside_contact_window"
    PUBLIC_HOLIDAY = "public_holiday"
    ACCOUNT_WITHDRAWN = "account_withdrawn"
    ACCOUNT_PAID = "account_paid"
    ACCOUNT_NOT_ACTIVE = "account_not_active"
    DEBTOR_OPT_OUT = "debtor_opt_out"
    CHANNEL_NOT_AUTHORISED = "channel_not_authorised"
    FREQUENCY_CAP = "frequency_cap"
    QUIET_AFTER_CONVERSATION = "quiet_after_conversation"
    ONE_CHANNEL_AFTER_CONTACT = "one_channel_after_contact"
    MIN_INTERVAL = "min_interval"
    PROMISE_TO_PAY_PENDING = "promise_to_pay_pending"
    OPT_OUT_NOTICE_MISSING = "opt_out_notice_missing"
    NO_LAW_PACK = "no_law_pack"


class Purpose(enum.StrEnum):
    """Why core contacts the debtor. A promise confirmation is not a collection contact (no moratorium)."""

    COLLECTION = "collection"
    PROMISE_CONFIRMATION = "promise_confirmation"


class Contact(NamedTuple):
    """One stored call attempt or text, as the rules count it."""

    ts: float  #: POSIX seconds of the request
    channel: Channel
    phone: str
    same_account: bool  #: made about the subject's account
    conversation: bool  #: an answered call with the right party (Reg F's "telephone conversation")


@dataclass(frozen=True, slots=True)
class History:
    """What the store knows of past contacts, loaded once per decision (:func:`core.compliance.history.load`)."""

    contacts: tuple[Contact, ...] = ()  #: newest first, back to the policy's horizon
    last_conversation: float | None = None  #: POSIX seconds of the latest conversation, ever
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
