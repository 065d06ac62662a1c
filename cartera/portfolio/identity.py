"""What a creditor's identifiers name at a site: a portfolio is (creditor, code), an account (portfolio, ref).

Account refs and creditor and portfolio codes follow one allow-list (:data:`CODE_PATTERN`), checked at import
and on every search, so ``/`` can qualify them: ``TARJETAS`` or ``BCO/TARJETAS`` for a portfolio, ``REF``,
``PORTFOLIO/REF`` or ``CREDITOR/PORTFOLIO/REF`` for an account. A reference naming two is refused (exit 2)
with the qualified candidates.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from cartera.core.errors import NotFound, UsageError
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, Creditor, Portfolio

#: Account refs, creditor codes and portfolio codes: what the import accepts and what searches take.
CODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"
_CODE = re.compile(CODE_PATTERN)


def code_problem(value: str) -> str | None:
    """Why ``value`` is not a valid ref or code (``None``: it is)."""
    if _CODE.fullmatch(value):
        return None
    return f"{value[:80]!r} is not 1 to 64 characters of [A-Za-z0-9._@-] starting with a letter or digit"


@dataclass(frozen=True, order=True)
class PortfolioKey:
    """A portfolio as users name it: ``CREDITOR/CODE``."""

    creditor: str
    code: str

    def __str__(self) -> str:
        return f"{self.creditor}/{self.code}"


@dataclass(frozen=True)
class Reference:
    """A reference as typed, split into its parts: the last is the account ref or portfolio code."""

    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str, what: str, most: int) -> Reference:
        parts = tuple(text.strip().split("/"))
        problems = [problem for part in parts if (problem := code_problem(part))]
        if len(parts) > most or problems:
            forms = ("REF", "PORTFOLIO/REF", "CREDITOR/PORTFOLIO/REF") if most == 3 else ("CODE", "CREDITOR/CODE")
            why = problems[0] if problems else f"at most {most} parts"
            raise UsageError(f"{what} {text[:80]!r}: write {' or '.join(forms)} ({why})")
        return cls(parts)

    def where(self, *columns: InstrumentedAttribute[str]) -> ColumnElement[bool]:
        """The parts matched against ``columns`` from the last: (creditor code, portfolio code[, account ref])."""
        return and_(true(), *(column == part for column, part in zip(columns[::-1], self.parts[::-1], strict=False)))


def in_portfolios(within: Collection[PortfolioKey] | None) -> ColumnElement[bool]:
    """Rows of these portfolios (``None``: any); the query joins :class:`Creditor` and :class:`Portfolio`."""
    if within is None:
        return true()
    return or_(false(), *(and_(Creditor.code == key.creditor, Portfolio.code == key.code) for key in within))


def resolve_portfolio(session: Session, site: str, text: str) -> PortfolioKey:
    """The one portfolio of ``site`` that ``CODE`` or ``CREDITOR/CODE`` names: a creditor-qualified one need
    not exist yet; a bare code must match exactly one portfolio."""
    reference = Reference.parse(text, "portfolio", 2)
    if len(reference.parts) == 2:
        return PortfolioKey(*reference.parts)
    known = [
        PortfolioKey(creditor, code)
        for creditor, code in session.execute(
            select(Creditor.code, Portfolio.code)
            .join(Portfolio, Portfolio.creditor_id == Creditor.id)
            .where(Portfolio.site == site)
            .order_by(Creditor.code, Portfolio.code)
        )
    ]
    found = [key for key in known if key.code == reference.parts[0]]
    if not found:
        listed = _listed(known) or "none"
        raise UsageError(f"no portfolio {text!r} at site {site!r} (known: {listed}): write CREDITOR/CODE")
    if len(found) > 1:
        raise UsageError(f"portfolio {text!r} is ambiguous at site {site!r}: {_listed(found)}; write CREDITOR/CODE")
    return found[0]


def resolve_account(session: Session, site: str, text: str) -> int:
    """The id of the one account of ``site`` that ``text`` names; :class:`NotFound` when none does, and
    :class:`UsageError` (exit 2) listing the candidates when it names several."""
    reference = Reference.parse(text, "account", 3)
    rows = session.execute(
        select(Account.id, Creditor.code, Portfolio.code, Account.ref)
        .join(Portfolio, Account.portfolio_id == Portfolio.id)
        .join(Creditor, Portfolio.creditor_id == Creditor.id)
        .where(Portfolio.site == site, reference.where(Creditor.code, Portfolio.code, Account.ref))
        .order_by(Creditor.code, Portfolio.code)
    ).all()
    if not rows:
        raise NotFound(f"no account {text!r} at site {site!r}")
    if len(rows) > 1:
        candidates = _listed(f"{creditor}/{code}/{ref}" for _, creditor, code, ref in rows)
        raise UsageError(
            f"account {text!r} is ambiguous at site {site!r}: {candidates}; write PORTFOLIO/REF or "
            "CREDITOR/PORTFOLIO/REF"
        )
    return int(rows[0][0])


def qualified(account: Account) -> str:
    """``CREDITOR/PORTFOLIO/REF`` of the account, as audit entries and messages name it."""
    return f"{account.portfolio.creditor.code}/{account.portfolio.code}/{account.ref}"


def _listed(items: Iterable[object]) -> str:
    return ", ".join(str(item) for item in items)


class SiteIdentity:
    """What an operator's references name at one site, each looked up in a session of its own."""

    def __init__(self, site: str, db: Database) -> None:
        self._site = site
        self._db = db

    def portfolios(self, texts: Iterable[str]) -> list[PortfolioKey]:
        """The portfolio each of ``texts`` names (see :func:`resolve_portfolio`), in order."""
        with self._db.session() as session:
            return [resolve_portfolio(session, self._site, text) for text in texts]

    def account(self, text: str) -> int:
        """The id of the one account ``text`` names (see :func:`resolve_account`)."""
        with self._db.session() as session:
            return resolve_account(session, self._site, text)
