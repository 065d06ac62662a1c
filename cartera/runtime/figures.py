"""What a site's store holds, counted: accounts, imports, calls, the gate's decisions, promises, texts and
recordings (the end-of-run summary prints them)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from cartera.contact.abandonment import AbandonmentRate, abandonment_rate
from cartera.core.clock import Clock
from cartera.core.config import AbandonmentConfig
from cartera.core.store.database import Database
from cartera.core.store.schema import (
    Account,
    ActivityRow,
    AuditEntry,
    ContactAttempt,
    ImportBatch,
    Portfolio,
    RecordingRow,
    SmsRow,
)


@dataclass(frozen=True)
class Figures:
    """One site's counts, read in one session."""

    accounts: Counter[str]  #: by status
    batches: list[tuple[str, dict[str, int]]]  #: each import's source and counts, in order
    outcomes: Counter[str]  #: finished calls by outcome
    reconciled: Counter[str]  #: calls a killed run left in flight, by the outcome they were given
    texts_reconciled: Counter[str]  #: texts a killed sender left queued, by the state they were given
    abandonment: AbandonmentRate
    decisions: list[tuple[str, dict[str, Any]]]  #: the gate's audited decisions: action and details
    promises: int
    promised: dict[str, Decimal]  #: the promises' total amount by currency (ISO 4217 code), never summed across
    sms: Counter[str]  #: by state
    recordings: Counter[str]  #: by state
    archived_bytes: int  #: of the verified recordings
    example: tuple[int, str] | None  #: the longest verified recording's id and its account's ref


class SiteFigures:
    """Counts a site's store; ``abandonment`` is the site's campaign's measure of abandoned calls."""

    def __init__(self, site: str, db: Database, clock: Clock, abandonment: AbandonmentConfig) -> None:
        self._site = site
        self._db = db
        self._clock = clock
        self._abandonment = abandonment

    def read(self) -> Figures:
        site = self._site
        with self._db.session() as session:
            accounts = _count_by(
                session, select(Account.status, func.count()).join(Portfolio).where(Portfolio.site == site)
            )
            batches = session.execute(
                select(ImportBatch.source, ImportBatch.counts).where(ImportBatch.site == site).order_by(ImportBatch.id)
            ).all()
            outcomes = _count_by(
                session,
                select(ContactAttempt.outcome, func.count()).where(
                    ContactAttempt.site == site, ContactAttempt.state == "finished"
                ),
            )
            reconciled = _count_by(
                session,
                select(ContactAttempt.outcome, func.count()).where(
                    ContactAttempt.id.in_(
                        select(AuditEntry.details["attempt"].as_integer()).where(
                            AuditEntry.site == site, AuditEntry.action == "call.reconcile"
                        )
                    )
                ),
            )
            texts_reconciled = _count_by(
                session,
                select(SmsRow.state, func.count()).where(
                    SmsRow.id.in_(
                        select(AuditEntry.details["message"].as_integer()).where(
                            AuditEntry.site == site, AuditEntry.action == "sms.reconcile"
                        )
                    )
                ),
            )
            abandonment = abandonment_rate(session, site, self._clock.now(), self._abandonment)
            decisions = session.execute(
                select(AuditEntry.action, AuditEntry.details).where(
                    AuditEntry.site == site, AuditEntry.action.in_(("compliance.allow", "compliance.deny"))
                )
            ).all()
            promises = session.execute(
                select(Account.currency, func.count(), func.coalesce(func.sum(ActivityRow.amount), 0))
                .join(Account, ActivityRow.account_id == Account.id)
                .where(ActivityRow.site == site, ActivityRow.kind == "promise_to_pay")
                .group_by(Account.currency)
            ).all()
            sms = _count_by(session, select(SmsRow.state, func.count()).where(SmsRow.site == site))
            recordings = _count_by(session, select(RecordingRow.state, func.count()).where(RecordingRow.site == site))
            archived_bytes = int(  # PostgreSQL's sum of a bigint is a numeric (a Decimal), not to divide by a float
                session.scalar(
                    select(func.coalesce(func.sum(RecordingRow.size), 0)).where(
                        RecordingRow.site == site, RecordingRow.state == "verified"
                    )
                )
                or 0
            )
            example = session.execute(
                select(RecordingRow.id, Account.ref)
                .join(ContactAttempt, RecordingRow.attempt_id == ContactAttempt.id)
                .join(Account, ContactAttempt.account_id == Account.id)
                .where(RecordingRow.site == site, RecordingRow.state == "verified")
                .order_by(RecordingRow.duration_s.desc())
                .limit(1)
            ).first()
        return Figures(
            accounts=accounts,
            batches=[(source, counts) for source, counts in batches],
            outcomes=outcomes,
            reconciled=reconciled,
            texts_reconciled=texts_reconciled,
            abandonment=abandonment,
            decisions=[(action, details) for action, details in decisions],
            promises=sum(count for _, count, _ in promises),
            promised={currency: Decimal(total or 0) for currency, _, total in promises},
            sms=sms,
            recordings=recordings,
            archived_bytes=archived_bytes,
            example=(example[0], example[1]) if example else None,
        )


def _count_by(session: Session, query: Select[Any, int]) -> Counter[str]:
    """Run ``SELECT key, count(*) ... GROUP BY key`` and return the counts by key."""
    return Counter({str(key): count for key, count in session.execute(query.group_by(query.selected_columns[0]))})
