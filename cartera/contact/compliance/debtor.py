"""Who a decision is about, across accounts and sites, and how decisions about one debtor are serialized.

The store has no identifier of the person behind an account: a creditor's row names an account, a debtor's
name and numbers. So a debtor is known by the numbers on file for them: every account (of any creditor, at any
site sharing the store) whose debtor has one of the numbers is the same debtor, and every contact to one of those
numbers is one of theirs. A debt is the creditor's account: the same creditor and account reference, at any site.
Each law counts by one of these keys (``scope`` of a rule): the debt (``account``), the number (``phone``) or the
debtor (``debtor``).

Two nodes deciding about one debtor at the same instant must not both read a history without the other's
contact: on PostgreSQL each decision takes a transaction-scoped advisory lock on each of the debtor's numbers and
on the debt, in one order, before it reads the history, and keeps them until the attempt it allows is committed.
On SQLite a writing transaction begins IMMEDIATE, which already serializes every decision of the store.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import bindparam, literal, select, text, union_all
from sqlalchemy.orm import Session

from cartera.core.store.schema import Account, Phone, Portfolio

_LOCK = text("SELECT pg_advisory_xact_lock(:key)").bindparams(bindparam("key"))


@dataclass(frozen=True)
class DebtorKey:
    """The numbers a debtor is known by (those on file and the one asked for) and the debt, if any."""

    numbers: tuple[str, ...]  #: sorted E.164 numbers
    debt: tuple[int, str] | None = None  #: (creditor id, account reference): the same debt at every site

    def lock_ids(self) -> list[int]:
        """The advisory lock ids of the debtor's numbers and debt, in the order every node takes them."""
        names = [f"cartera.phone:{number}" for number in self.numbers]
        if self.debt is not None:
            names.append(f"cartera.debt:{self.debt[0]}/{self.debt[1]}")
        return sorted({_lock_id(name) for name in names})


def key_of(account: Account | None, phone: str | None) -> DebtorKey:
    """The key of the debtor of ``account`` (``None``: the person behind ``phone``), with ``phone`` as well."""
    numbers = {phone} if phone is not None else set()
    if account is None:
        return DebtorKey(tuple(sorted(numbers)))
    numbers.update(number.e164 for number in account.debtor.phones)
    return DebtorKey(tuple(sorted(numbers)), (account.portfolio.creditor_id, account.ref))


@dataclass(frozen=True)
class Accounts:
    """The accounts whose contacts count for a debtor: ``debt``, those of the same debt; ``all``, also every
    account of the debtor."""

    debt: frozenset[int]
    all: frozenset[int]


def accounts(session: Session, key: DebtorKey) -> Accounts:
    """The accounts of ``key``'s debt, and every account whose debtor has one of its numbers, at any site (one
    query, through the indexes on the numbers, the debtors of accounts and the references)."""
    of_debtor = select(Account.id, literal(False).label("same_debt")).where(
        Account.debtor_id.in_(select(Phone.debtor_id).where(Phone.e164.in_(key.numbers)))
    )
    if key.debt is None:
        rows = session.execute(of_debtor).all()
    else:
        creditor, ref = key.debt
        of_debt = select(Account.id, literal(True)).where(
            Account.ref == ref, Account.portfolio_id.in_(select(Portfolio.id).where(Portfolio.creditor_id == creditor))
        )
        rows = session.execute(union_all(of_debtor, of_debt)).all()  # each part through its own index
    return Accounts(frozenset(row.id for row in rows if row.same_debt), frozenset(row.id for row in rows))


def serialize(session: Session, key: DebtorKey) -> None:
    """Hold, until ``session``'s transaction ends, the advisory locks of ``key`` (PostgreSQL; on SQLite the
    transaction's write lock already serializes every decision)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for lock_id in key.lock_ids():
        session.execute(_LOCK, {"key": lock_id})


def _lock_id(name: str) -> int:
    """A signed 64-bit id for ``name``, as ``pg_advisory_xact_lock(bigint)`` takes it."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
