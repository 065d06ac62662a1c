"""The compliance gate: every call and SMS passes :meth:`ComplianceGate.decide` before it reaches a plugin.

A decision is allow or deny with reason codes and, when denied, the next instant contact would be allowed.
Every decision is written to the audit log in the caller's transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core.audit import audit
from core.config import ContactWindow
from core.models import Channel
from core.phones import time_zones


class Reason(enum.StrEnum):
    OUTSIDE_CONTACT_WINDOW = "outside_contact_window"
    ACCOUNT_NOT_ACTIVE = "account_not_active"
    DO_NOT_CONTACT = "do_not_contact"


@dataclass(frozen=True)
class Subject:
    """What a rule may look at: the contact asked for, and what the store knows of it."""

    channel: Channel
    phone: str
    account_ref: str | None = None
    account_status: str | None = None
    do_not_contact: bool = False


@dataclass(frozen=True)
class Verdict:
    reasons: tuple[Reason, ...] = ()
    next_allowed_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[Reason, ...] = ()
    next_allowed_at: datetime | None = None

    def explain(self) -> str:
        if self.allowed:
            return "allowed"
        text = "denied: " + ", ".join(self.reasons)
        if self.next_allowed_at is not None:
            text += f" (next allowed {self.next_allowed_at.isoformat(timespec='minutes')})"
        return text


class Rule(Protocol):
    def evaluate(self, subject: Subject, at: datetime) -> Verdict: ...


class AccountStatusRule:
    """No contact about an account that was withdrawn or paid off."""

    def evaluate(self, subject: Subject, at: datetime) -> Verdict:
        if subject.account_status not in (None, "active"):
            return Verdict((Reason.ACCOUNT_NOT_ACTIVE,))
        return Verdict()


class DoNotContactRule:
    def evaluate(self, subject: Subject, at: datetime) -> Verdict:
        return Verdict((Reason.DO_NOT_CONTACT,)) if subject.do_not_contact else Verdict()


class ContactWindowRule:
    """Contact only inside ``window`` in the debtor's local time.

    The zone comes from the number; a number that may ring in several zones must be inside the window in
    all of them (the most restrictive reading); an unknown zone falls back to ``fallback``.
    """

    def __init__(self, window: ContactWindow, fallback: ZoneInfo) -> None:
        self.window = window
        self.fallback = fallback
        self._days = window.weekdays

    def zones_for(self, phone: str) -> tuple[ZoneInfo, ...]:
        return time_zones(phone) or (self.fallback,)

    def evaluate(self, subject: Subject, at: datetime) -> Verdict:
        zones = self.zones_for(subject.phone)
        if all(self._open_in(zone, at) for zone in zones):
            return Verdict()
        return Verdict((Reason.OUTSIDE_CONTACT_WINDOW,), self._next_open(zones, at))

    def _open_in(self, zone: ZoneInfo, at: datetime) -> bool:
        local = at.astimezone(zone)
        return local.weekday() in self._days and self.window.start <= local.time() < self.window.end

    def _next_start(self, zone: ZoneInfo, at: datetime) -> datetime | None:
        if self._open_in(zone, at):
            return at
        local = at.astimezone(zone)
        for days in range(8):
            day = local.date() + timedelta(days=days)
            start = datetime.combine(day, self.window.start, zone)
            if day.weekday() in self._days and start > at:
                return start
        return None

    def _next_open(self, zones: Sequence[ZoneInfo], at: datetime) -> datetime | None:
        candidate = at
        for _ in range(16):
            starts = [self._next_start(zone, candidate) for zone in zones]
            if any(start is None for start in starts):
                return None
            candidate = max(start for start in starts if start is not None)
            if all(self._open_in(zone, candidate) for zone in zones):
                return candidate
        return None


class ComplianceGate:
    def __init__(self, site: str, rules: Sequence[Rule]) -> None:
        self.site = site
        self.rules = tuple(rules)

    def evaluate(self, subject: Subject, at: datetime) -> Decision:
        """The decision alone, without auditing (for previews)."""
        reasons: list[Reason] = []
        next_times: list[datetime] = []
        blocked_for_good = False
        for rule in self.rules:
            verdict = rule.evaluate(subject, at)
            reasons.extend(verdict.reasons)
            if verdict.reasons:
                if verdict.next_allowed_at is None:
                    blocked_for_good = True
                else:
                    next_times.append(verdict.next_allowed_at)
        if not reasons:
            return Decision(True)
        next_allowed = None if blocked_for_good or not next_times else max(next_times)
        return Decision(False, tuple(reasons), next_allowed)

    def decide(self, session: Session, subject: Subject, at: datetime, actor: str) -> Decision:
        """Decide and write the decision to the audit log (committed with ``session``)."""
        decision = self.evaluate(subject, at)
        audit(
            session,
            at=at,
            site=self.site,
            actor=actor,
            action="compliance.allow" if decision.allowed else "compliance.deny",
            subject=f"{subject.channel}:{subject.phone}",
            account=subject.account_ref,
            reasons=list(decision.reasons),
            next_allowed_at=decision.next_allowed_at.isoformat() if decision.next_allowed_at else None,
        )
        return decision
