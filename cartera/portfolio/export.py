"""Activities: the work on each account the creditor receives back, numbered by ``seq`` for export."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, joinedload

from cartera.core.adapters import CrmSync
from cartera.core.errors import CarteraError
from cartera.core.logs import event
from cartera.core.models import Activity, ActivityKind
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ActivityRow, Creditor, ExportCursor, Portfolio

log = logging.getLogger("cartera.activities")


def add_activity(
    session: Session,
    *,
    site: str,
    kind: ActivityKind,
    at: datetime,
    account: Account,
    phone: str | None = None,
    outcome: str | None = None,
    amount: Decimal | None = None,
    due_date: date | None = None,
    agent: str | None = None,
    attempt_id: int | None = None,
) -> ActivityRow:
    row = ActivityRow(
        site=site,
        kind=kind.value,
        at=at,
        account=account,
        phone=phone,
        outcome=outcome,
        amount=amount,
        due_date=due_date,
        agent=agent,
        attempt_id=attempt_id,
    )
    session.add(row)
    return row


def unexported_call_activity(session: Session, site: str, attempt_id: int, creditor: str) -> ActivityRow | None:
    """The call's ``call_attempt`` activity while the export has not reached it (its seq above the creditor's
    cursor and any batch being sent), to be changed in place; None once it was sent (or there is none)."""
    if session.get_bind().dialect.name == "postgresql":  # an export's batch waits for this transaction, or it for it
        session.execute(text("LOCK TABLE activities IN ROW EXCLUSIVE MODE"))
    row = session.scalar(
        select(ActivityRow)
        .where(ActivityRow.site == site, ActivityRow.attempt_id == attempt_id)
        .where(ActivityRow.kind == ActivityKind.CALL_ATTEMPT.value)
        .order_by(ActivityRow.seq.desc())
        .limit(1)
        .options(joinedload(ActivityRow.account).joinedload(Account.portfolio).joinedload(Portfolio.creditor))
    )
    cursor = session.get(ExportCursor, (site, creditor))
    reached = max(cursor.last_seq, cursor.pending_seq or 0) if cursor is not None else 0
    return row if row is not None and row.seq > reached else None


def to_activity(row: ActivityRow) -> Activity:
    account = row.account
    return Activity(
        seq=row.seq,
        kind=ActivityKind(row.kind),
        at=row.at,
        creditor=account.portfolio.creditor.code,
        portfolio=account.portfolio.code,
        account_ref=account.ref,
        phone=row.phone,
        outcome=row.outcome,
        amount=row.amount,
        due_date=row.due_date,
        agent=row.agent,
        attempt=row.attempt_id,
    )


def exported_activities(db: Database, site: str, creditor: str, after: int, limit: int) -> list[Activity]:
    """Up to ``limit`` of ``creditor``'s activities at ``site`` that the export has reached (its cursor, the batch
    being exported included), with seq above ``after``, in seq order."""
    with db.reading() as session:
        cursor = session.get(ExportCursor, (site, creditor))
        if cursor is None:
            return []
        rows = session.scalars(
            select(ActivityRow)
            .join(Account)
            .join(Portfolio)
            .join(Creditor)
            .where(ActivityRow.site == site, Creditor.code == creditor, ActivityRow.seq > after)
            .where(ActivityRow.seq <= max(cursor.last_seq, cursor.pending_seq or 0))
            .order_by(ActivityRow.seq)
            .limit(limit)
        ).all()
        return [to_activity(row) for row in rows]


class ExportFailed(CarteraError):
    """The delivery of one or more creditors' activities failed; the other creditors' were exported."""


class ActivityExporter:
    """Sends each creditor the activities after its cursor, in ``seq`` order, each exactly once: only the
    creditors the crm_sync adapter delivers for (:meth:`~cartera.core.adapters.CrmSync.delivers`), so one
    creditor's activities never reach another's system; the others' wait, logged ``activities.not_delivered``.

    Before a batch goes out its last seq is stored as the cursor's ``pending_seq``; the cursor moves (and the
    pending mark clears) only after the adapter's ``export`` returned. After a crash or a failed upload the
    next run sends the same activities again (the same file, which the creditor's side overwrites) before
    anything newer. On PostgreSQL the read waits for transactions still inserting activities, so a seq taken
    earlier but committed later is never skipped.
    """

    def __init__(self, site: str, db: Database, crm: CrmSync[Any], batch_size: int = 5000) -> None:
        self.site = site
        self.db = db
        self.crm = crm
        self.batch_size = batch_size

    def run_once(self, stop: Callable[[], bool] | None = None, *, stop_at_failure: bool = False) -> int:
        """Export each creditor's pending activities; one creditor's failed delivery (its webhook refusing, say)
        holds back only that creditor: the others are exported, then :class:`ExportFailed` names the failures.

        Each delivery may take a webhook's whole deadline. Once ``stop()`` is true no further batch or creditor
        is started; ``stop_at_failure`` (the export of a stopping node) starts none after a failed delivery,
        so a node's stop time does not grow with the number of failing creditors. The cursors keep the rest
        for the next run."""
        sent = 0
        failures: dict[str, CarteraError] = {}

        def stopped() -> bool:
            return (stop is not None and stop()) or (stop_at_failure and bool(failures))

        with self.db.session() as session:
            at_site = session.scalars(
                select(Creditor.code)
                .join(Portfolio)
                .where(Portfolio.site == self.site)
                .distinct()
                .order_by(Creditor.code)
            ).all()
        scope = self.crm.delivers()
        creditors = [code for code in at_site if scope is None or code in scope.creditors]
        if len(creditors) < len(at_site):  # their activities wait, never sent to another creditor's system
            others = [code for code in at_site if code not in creditors]
            event(log, "activities.not_delivered", level=logging.WARNING, creditors=others)
        for done, creditor in enumerate(creditors):
            if stopped():
                event(log, "activities.export_stopped", creditors_left=len(creditors) - done)
                break
            try:
                sent += self._export(creditor, stopped)
            except CarteraError as exc:
                failures[creditor] = exc
                event(log, "activities.export_failed", level=logging.WARNING, creditor=creditor, reason=str(exc))
        if failures:
            listed = "; ".join(f"{creditor}: {exc}" for creditor, exc in failures.items())
            raise ExportFailed(f"activity export failed for {listed}") from next(iter(failures.values()))
        return sent

    def _export(self, creditor: str, stopped: Callable[[], bool]) -> int:
        sent = 0
        while not (sent and stopped()) and (batch := self._next_batch(creditor)):
            self.crm.export(batch)
            self._advance(creditor, batch[-1].seq)
            sent += len(batch)
            event(log, "activities.exported", creditor=creditor, count=len(batch), last_seq=batch[-1].seq)
        return sent

    def _next_batch(self, creditor: str) -> list[Activity]:
        """The pending batch again when there is one, else the next ``batch_size`` activities (marked pending)."""
        with self.db.session() as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("LOCK TABLE activities IN SHARE MODE"))
            cursor = session.get(ExportCursor, (self.site, creditor))
            if cursor is None:
                cursor = ExportCursor(site=self.site, creditor=creditor, last_seq=0)
                session.add(cursor)
            query = (
                select(ActivityRow)
                .join(Account)
                .join(Portfolio)
                .join(Creditor)
                .where(ActivityRow.site == self.site, Creditor.code == creditor, ActivityRow.seq > cursor.last_seq)
                .order_by(ActivityRow.seq)
            )
            if cursor.pending_seq is not None:
                query = query.where(ActivityRow.seq <= cursor.pending_seq)
            rows = session.scalars(query.limit(self.batch_size)).all()
            batch = [to_activity(row) for row in rows]
            cursor.pending_seq = batch[-1].seq if batch else None
            if batch:
                self.db.fence(session)  # a node whose site was taken over exports nothing
            return batch

    def _advance(self, creditor: str, last_seq: int) -> None:
        with self.db.session() as session:
            cursor = session.get_one(ExportCursor, (self.site, creditor))
            cursor.last_seq, cursor.pending_seq = last_seq, None
            self.db.fence(session)

    def pending(self) -> int:
        """Activities not yet exported, over all creditors of the site."""
        last_seq = (
            select(ExportCursor.last_seq)
            .where(ExportCursor.site == self.site, ExportCursor.creditor == Creditor.code)
            .scalar_subquery()
        )
        with self.db.session() as session:
            count = session.scalar(
                select(func.count())
                .select_from(ActivityRow)
                .join(Account)
                .join(Portfolio)
                .join(Creditor)
                .where(ActivityRow.site == self.site, ActivityRow.seq > func.coalesce(last_seq, 0))
            )
        return int(count or 0)
