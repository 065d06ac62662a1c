"""A site ``t`` with a debtor called by an agent, for the workspace's pages and hub tests: the debtor has an
account in BANCO/TARJETAS (Colombia), one in BANCO/VEHICULOS, and a US debtor one in CARD/US1."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select

from cartera.core.store.schema import Account, ActivityRow, ContactAttempt, Creditor, Debtor, Phone, Portfolio
from cartera.node import Node
from cartera.portfolio.identity import PortfolioKey

DAY = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 10:00 in Bogotá, a Monday


@dataclass(frozen=True)
class Calls:
    colombian: int  #: an attempt placing to Deudora Uno's TARJETAS account
    american: int  #: an attempt placing to John Roe's CARD/US1 account
    vehicles: int  #: an attempt placing to Deudora Uno's VEHICULOS account


def seed_calls(node: Node) -> Calls:
    with node.db.session() as session:
        banco, card = Creditor(code="BANCO"), Creditor(code="CARD")
        tarjetas = Portfolio(creditor=banco, code="TARJETAS", site="t", country="CO")
        vehiculos = Portfolio(creditor=banco, code="VEHICULOS", site="t", country="CO")
        us1 = Portfolio(creditor=card, code="US1", site="t", country="US")
        uno = Debtor(name="Deudora Uno", phones=[Phone(e164="+573001112233", position=0)])
        roe = Debtor(name="John Roe", phones=[Phone(e164="+12125550123", position=0)])

        def account(portfolio: Portfolio, ref: str, debtor: Debtor, balance: int, currency: str) -> Account:
            return Account(
                portfolio=portfolio,
                ref=ref,
                debtor=debtor,
                balance=Decimal(balance),
                currency=currency,
                status="active",
                updated_at=DAY,
            )

        cards = account(tarjetas, "BCO-1", uno, 500000, "COP")
        car = account(vehiculos, "VEH-1", uno, 9000000, "COP")
        us = account(us1, "US-1", roe, 1200, "USD")
        session.add(ActivityRow(site="t", kind="call_attempt", at=DAY, account=cards, phone="+573001112233"))

        def placing(target: Account, phone: str) -> ContactAttempt:
            return ContactAttempt(site="t", account=target, phone=phone, state="placing", requested_at=DAY)

        attempts = [placing(cards, "+573001112233"), placing(us, "+12125550123"), placing(car, "+573001112233")]
        session.add_all(attempts)
        session.flush()
        return Calls(*(attempt.id for attempt in attempts))


def uncalled_account(node: Node) -> int:
    """BCO-9, Deudor Nueve's TARJETAS account, never called, at the number the test site's simulator answers
    (``+573009998877``, scripted): an agent's preview call; its id."""
    with node.db.session() as session:
        portfolio = session.scalars(select(Portfolio).where(Portfolio.code == "TARJETAS")).one()
        debtor = Debtor(name="Deudor Nueve", phones=[Phone(e164="+573009998877", position=0)])
        account = Account(
            portfolio=portfolio,
            ref="BCO-9",
            debtor=debtor,
            balance=Decimal(90000),
            currency="COP",
            status="active",
            updated_at=DAY,
        )
        session.add(account)
        session.flush()
        return account.id


#: Grants by portfolio code, as the hub is given them.
KEYS = {code: frozenset({PortfolioKey("BANCO", code)}) for code in ("TARJETAS", "VEHICULOS")}
