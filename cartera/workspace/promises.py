"""Promises to pay: a single amount and date or a plan of instalments, checked against the balance and the
portfolio's horizon; then ``pending`` until the creditor's reported payments keep or break them (with grace days).
A broken promise puts its account at the front of the next day's list."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from cartera.core.audit import audit
from cartera.core.store.schema import AccountStop, ImportBatch, PromiseRow, ReportedPayment
from cartera.portfolio.identity import qualified
from cartera.workspace.errors import WorkspaceError
from cartera.workspace.settings import PortfolioRules

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Instalment:
    amount: Decimal
    due: date


class PromiseState(enum.StrEnum):
    PENDING = "pending"
    KEPT = "kept"
    BROKEN = "broken"


@dataclass(frozen=True)
class PromiseView:
    """A promise as the agent's screen and the API show it."""

    id: int
    account_ref: str
    state: PromiseState
    total: Decimal
    currency: str
    instalments: tuple[Instalment, ...]
    made_at: datetime
    agent: str
    settled_at: datetime | None


def view(row: PromiseRow) -> PromiseView:
    return PromiseView(
        id=row.id,
        account_ref=row.account.ref,
        state=PromiseState(row.state),
        total=row.total,
        currency=row.currency,
        instalments=tuple(Instalment(i.amount, i.due) for i in row.instalments),
        made_at=row.made_at,
        agent=row.agent,
        settled_at=row.settled_at,
    )


def _field(plan: Sequence[Instalment], position: int, name: str) -> str:
    """The input field of instalment ``position``: ``promise.amount`` for a single promise, else indexed."""
    if len(plan) == 1:
        return f"promise.{'date' if name == 'due' else name}"
    return f"promise.instalments[{position}].{name}"


def check_plan(plan: Sequence[Instalment], *, balance: Decimal, today: date, rules: PortfolioRules) -> None:
    """Refuse a plan (raising :class:`WorkspaceError` naming the field) that is empty or too long, has an amount
    not positive or finer than cents, a date in the past, beyond the portfolio's horizon or not after the previous
    one, or promises more than the balance."""
    if not plan:
        raise WorkspaceError("promise", "a promise to pay needs an amount and a date")
    if len(plan) > rules.max_instalments:
        raise WorkspaceError(
            "promise.instalments", f"{len(plan)} instalments, more than this portfolio's {rules.max_instalments}"
        )
    last_day = today + timedelta(days=rules.promise_horizon_days)
    previous: date | None = None
    for position, instalment in enumerate(plan):
        amount = instalment.amount
        if not amount.is_finite() or amount <= 0:
            raise WorkspaceError(_field(plan, position, "amount"), "not a positive amount")
        if amount != amount.quantize(CENT):
            raise WorkspaceError(_field(plan, position, "amount"), "more decimals than cents")
        due = instalment.due
        where = _field(plan, position, "due")
        if due < today:
            raise WorkspaceError(where, f"in the past (today is {today})")
        if due > last_day:
            raise WorkspaceError(
                where, f"beyond this portfolio's {rules.promise_horizon_days}-day horizon (at most {last_day})"
            )
        if previous is not None and due <= previous:
            raise WorkspaceError(where, "not after the previous instalment's date")
        previous = due
    total = sum((i.amount for i in plan), Decimal(0))
    if total > balance:
        field = "promise.amount" if len(plan) == 1 else "promise.instalments"
        raise WorkspaceError(field, f"more than the balance {balance}")


def judge(
    plan: Sequence[Instalment], payments: Sequence[tuple[date, Decimal]], today: date, grace: int
) -> PromiseState:
    """Broken once an instalment's date plus ``grace`` days passed with less paid by then than due by then; kept
    once the whole was paid; else pending. ``payments``: (day, amount) made since the promise; one dated after
    ``today`` (a creditor's typo) counts from its day, not before."""
    payments = [(day, amount) for day, amount in payments if day <= today]
    due_so_far = Decimal(0)
    for instalment in plan:
        due_so_far += instalment.amount
        deadline = instalment.due + timedelta(days=grace)
        if today > deadline and sum((a for day, a in payments if day <= deadline), Decimal(0)) < due_so_far:
            return PromiseState.BROKEN
    if sum((amount for _, amount in payments), Decimal(0)) >= due_so_far:
        return PromiseState.KEPT
    return PromiseState.PENDING


def review(session: Session, *, site: str, zone: ZoneInfo, now: datetime, grace: int) -> list[PromiseView]:
    """Settle the site's pending promises from the payments reported since each was made (a payment without a
    date counts on the day its file was imported); each settled promise is audited, and a broken one's account,
    if still active and not stopped, is due at the start of the next local day. Returns the settled ones."""
    today = now.astimezone(zone).date()
    pending = session.scalars(
        select(PromiseRow)
        .where(PromiseRow.site == site, PromiseRow.state == PromiseState.PENDING.value)
        .options(selectinload(PromiseRow.instalments))
        .order_by(PromiseRow.id)
        .with_for_update()
    ).all()
    settled = []
    for promise in pending:
        made_on = promise.made_at.astimezone(zone).date()
        paid = session.execute(
            select(ReportedPayment.paid_on, ImportBatch.imported_at, ReportedPayment.amount)
            .join(ImportBatch, ReportedPayment.batch_id == ImportBatch.id)
            .where(ReportedPayment.account_id == promise.account_id)
        ).all()
        days = [(paid_on or imported.astimezone(zone).date(), amount) for paid_on, imported, amount in paid]
        plan = [Instalment(i.amount, i.due) for i in promise.instalments]
        state = judge(plan, [(day, amount) for day, amount in days if day >= made_on], today, grace)
        if state is PromiseState.PENDING:
            continue
        promise.state, promise.settled_at = state.value, now
        account = promise.account
        if state is PromiseState.BROKEN and account.status == "active" and not session.get(AccountStop, account.id):
            account.next_contact_at = datetime.combine(today + timedelta(days=1), time(), zone)
        audit(
            session,
            at=now,
            site=site,
            actor="workspace",
            action=f"promise.{state.value}",
            subject=f"promise:{promise.id}",
            account=qualified(account),
            total=str(promise.total),
        )
        settled.append(view(promise))
    return settled
