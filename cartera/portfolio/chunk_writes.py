"""A chunk's changes written in a few statements inside the batch's transaction: new debtors, accounts and
phones with ids taken beforehand (``COPY`` or one ``executemany``), changed accounts and their phone lists,
payments with their activities, quarantined rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, insert, update

from cartera.core.models import Activity, ActivityKind, RowError
from cartera.core.store.schema import Account, ActivityRow, Debtor, Phone, QuarantinedRow, ReportedPayment
from cartera.portfolio.bulk_sql import allocate_ids, bind_processor, insert_rows
from cartera.portfolio.chunk_state import AccountState, Payment

_PHONE_FLAGS = {"do_not_call": False, "do_not_text": False, "invalid": False}


class ChunkWriter:
    """Writes the chunks of one batch (``batch_id``) of ``site``, imported at ``now``."""

    def __init__(self, site: str, batch_id: int, now: datetime) -> None:
        self.site, self.batch_id, self.now = site, batch_id, now

    def insert_accounts(self, connection: Connection, created: list[AccountState]) -> None:
        if not created:
            return
        debtor_ids = allocate_ids(connection, Debtor.__tablename__, len(created))
        account_ids = allocate_ids(connection, Account.__tablename__, len(created))
        for account, debtor_id, account_id in zip(created, debtor_ids, account_ids, strict=True):
            account.id, account.debtor_id = account_id, debtor_id
            account.dirty = account.phones_changed = False  # inserted as it is now
        stamp = bind_processor(connection, Account.updated_at)(self.now)
        money, day = bind_processor(connection, Account.balance), bind_processor(connection, Account.due_on)
        insert_rows(
            connection,
            Debtor,
            ("id", "name", "region", "timezone"),
            [(a.debtor_id, a.name, a.region, a.timezone) for a in created],
        )
        insert_rows(
            connection,
            Account,
            (
                "id",
                "portfolio_id",
                "ref",
                "debtor_id",
                "balance",
                "currency",
                "status",
                "updated_at",
                "due_on",
                "risk_score",
            ),
            [
                (
                    a.id,
                    a.portfolio.id,
                    a.ref,
                    a.debtor_id,
                    money(a.balance),
                    a.currency,
                    a.status,
                    stamp,
                    day(a.due_on),
                    a.risk_score,
                )
                for a in created
            ],
        )
        insert_rows(
            connection,
            Phone,
            ("debtor_id", "e164", "position", "do_not_call", "do_not_text", "invalid"),
            [
                (a.debtor_id, e164, position, False, False, False)
                for a in created
                for position, e164 in enumerate(a.phones)
            ],
        )

    def update_accounts(self, connection: Connection, changed: list[AccountState]) -> None:
        """Write the changed accounts back; an account no longer active is not due for contact any more."""
        if not changed:
            return
        connection.execute(
            update(Account)
            .where(Account.id == bindparam("account_id"))
            .values(
                balance=bindparam("balance"),
                currency=bindparam("currency"),
                status=bindparam("status"),
                updated_at=bindparam("updated_at"),
                due_on=bindparam("due_on"),
                risk_score=bindparam("risk_score"),
            ),
            [
                {
                    "account_id": a.id,
                    "balance": a.balance,
                    "currency": a.currency,
                    "status": a.status,
                    "updated_at": self.now,
                    "due_on": a.due_on,
                    "risk_score": a.risk_score,
                }
                for a in changed
            ],
        )
        closed = [{"account_id": a.id} for a in changed if a.status != "active"]
        if closed:
            connection.execute(
                update(Account).where(Account.id == bindparam("account_id")).values(next_contact_at=None), closed
            )
        connection.execute(
            update(Debtor)
            .where(Debtor.id == bindparam("debtor_id"))
            .values(name=bindparam("name"), region=bindparam("region"), timezone=bindparam("timezone")),
            [{"debtor_id": a.debtor_id, "name": a.name, "region": a.region, "timezone": a.timezone} for a in changed],
        )
        self._replace_phones(connection, [a for a in changed if a.phones_changed])

    def _replace_phones(self, connection: Connection, changed: list[AccountState]) -> None:
        """New phone lists: kept numbers keep their row (and do-not-contact flags), in the new order."""
        stale = [{"phone_id": i} for a in changed for e164, i in a.phone_ids.items() if e164 not in a.phones]
        kept = [
            {"phone_id": a.phone_ids[e164], "position": position}
            for a in changed
            for position, e164 in enumerate(a.phones)
            if e164 in a.phone_ids
        ]
        added = [
            {"debtor_id": a.debtor_id, "e164": e164, "position": position, **_PHONE_FLAGS}
            for a in changed
            for position, e164 in enumerate(a.phones)
            if e164 not in a.phone_ids
        ]
        if stale:
            connection.execute(delete(Phone).where(Phone.id == bindparam("phone_id")), stale)
        if kept:
            connection.execute(
                update(Phone).where(Phone.id == bindparam("phone_id")).values(position=bindparam("position")), kept
            )
        if added:
            connection.execute(insert(Phone), added)

    def record_payments(self, connection: Connection, payments: list[Payment]) -> list[Activity]:
        """A ``payment`` activity for the creditor's export (and the KPIs) and the payment's key, per payment."""
        if not payments:
            return []
        connection.execute(
            insert(ReportedPayment),
            [
                {
                    "account_id": p.account.id,
                    "key": p.key,
                    "batch_id": self.batch_id,
                    "amount": p.amount,
                    "paid_on": p.row.paid_on,
                }
                for p in payments
            ],
        )
        seqs = connection.scalars(
            insert(ActivityRow).returning(ActivityRow.seq, sort_by_parameter_order=True),
            [
                {
                    "site": self.site,
                    "kind": ActivityKind.PAYMENT.value,
                    "at": self.now,
                    "account_id": p.account.id,
                    "phone": None,
                    "outcome": p.row.payment_ref,
                    "amount": p.amount,
                    "due_date": None,
                    "agent": None,
                }
                for p in payments
            ],
        ).all()
        return [
            Activity(
                seq=seq,
                kind=ActivityKind.PAYMENT,
                at=self.now,
                creditor=p.account.portfolio.creditor,
                portfolio=p.account.portfolio.code,
                account_ref=p.account.ref,
                outcome=p.row.payment_ref,
                amount=p.amount,
            )
            for p, seq in zip(payments, seqs, strict=True)
        ]

    def quarantine(self, connection: Connection, errors: list[RowError]) -> None:
        """The rows not applied, with their line, field and reason, for the batch's report."""
        if errors:
            connection.execute(
                insert(QuarantinedRow),
                [{"batch_id": self.batch_id, "line": e.line, "field": e.field, "reason": e.reason} for e in errors],
            )
