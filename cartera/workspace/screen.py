"""The screen pop: what an agent's page shows of the debtor whose call was just connected to the agent.

In two steps, because a debt may not be disclosed to a third party (FDCPA, Ley 2300, CONDUSEF): the pop
(:class:`ScreenPop`) names whom to ask for and the number called, nothing about a debt; once the agent
confirms the right party, :meth:`ScreenBuilder.details` gives the accounts of that debtor the agent may see,
the contact timeline, promises, what the law still allows, whether the mini-Miranda must be read and the
portfolio's script. Each is a view of a debtor's data, audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from cartera.contact.explain import GateExplainer
from cartera.contact.segments import days_past_due
from cartera.core.audit import audit
from cartera.core.clock import Clock
from cartera.core.errors import CarteraError
from cartera.core.models import Channel
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ActivityRow, ContactAttempt, Creditor, Portfolio
from cartera.portfolio.identity import PortfolioKey, in_portfolios, qualified
from cartera.workspace.settings import WorkspaceConfig

TIMELINE_LENGTH = 20
#: Countries whose debtors hear the mini-Miranda (15 U.S.C. 1692e(11)) once the right party is confirmed.
MINI_MIRANDA_COUNTRIES = frozenset({"US"})


class NotOnScreen(CarteraError):
    """The attempt is not a call this agent may see (another site's, unknown, or outside the agent's grants)."""


@dataclass(frozen=True)
class ScreenPop:
    """What the page shows at once: whom to ask for, and nothing that discloses a debt."""

    attempt_id: int
    agent: str
    connected_at: datetime
    account_id: int | None  #: the account called (for the disposition codes of its portfolio)
    phone: str
    debtor: str | None  #: ``None``: a call to a number of no account
    country: str | None  #: the portfolio's country: the page's script and disclosures follow it
    portfolio: PortfolioKey | None = None  #: the account's (never sent: the hub reads it against grants)

    def as_event(self) -> dict[str, object]:
        shown = {**asdict(self), "connected_at": self.connected_at.isoformat()}
        del shown["portfolio"]
        return shown


@dataclass(frozen=True)
class AccountLine:
    id: int
    ref: str
    portfolio: str  #: ``CREDITOR/CODE``
    balance: Decimal
    currency: str
    status: str
    days_past_due: int | None  #: since the day the debt fell due, when the creditor said (0: due today or later)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    account: str
    kind: str
    outcome: str | None
    amount: Decimal | None
    due_date: date | None
    agent: str | None


@dataclass(frozen=True)
class LawNow:
    """What the compliance gate would decide about another contact on ``channel`` now."""

    channel: str
    allowed: bool
    reasons: tuple[str, ...]
    rules: tuple[str, ...]
    next_allowed_at: datetime | None


@dataclass(frozen=True)
class DebtDetails:
    """What the page shows once the agent confirmed the right party."""

    attempt_id: int
    accounts: tuple[AccountLine, ...]
    timeline: tuple[TimelineEntry, ...]
    law: tuple[LawNow, ...]
    mini_miranda: bool
    script: str | None  #: the portfolio's own script (``None``: the page's generic one)

    def as_json(self) -> dict[str, object]:
        found: dict[str, object] = jsonable(asdict(self))  # type: ignore[assignment]
        return found


class ScreenBuilder:
    """Builds screen pops and their details from the store, for one site whose workspace is ``workspace`` and
    whose days (days past due count them) are those of ``zone``."""

    def __init__(
        self,
        site: str,
        db: Database,
        clock: Clock,
        explainer: GateExplainer,
        *,
        workspace: WorkspaceConfig,
        zone: tzinfo,
    ) -> None:
        self.site, self.db, self.clock, self.explainer, self.workspace = site, db, clock, explainer, workspace
        self.zone = zone

    def pop(
        self, attempt_id: int, agent: str, within: frozenset[PortfolioKey] | None, connected_at: datetime
    ) -> ScreenPop:
        """The pop of ``attempt_id`` for ``agent`` (user name) who sees ``within``; audited as
        ``workspace.screen_pop``. Raises :class:`NotOnScreen` when the call is not within the agent's reach."""
        with self.db.session() as session:
            attempt, account = self._visible(session, attempt_id, within)
            country = account.portfolio.country if account else None
            pop = ScreenPop(
                attempt_id,
                agent,
                connected_at,
                account.id if account else None,
                attempt.phone,
                account.debtor.name if account else None,
                country,
                PortfolioKey(account.portfolio.creditor.code, account.portfolio.code) if account else None,
            )
            self._audit(session, agent, "workspace.screen_pop", attempt_id, account)
        return pop

    def called(self, attempt_id: int) -> tuple[str | None, str]:
        """The account (``CREDITOR/PORTFOLIO/REF``, ``None`` for a number of no account) and phone of a call of
        this site, for the integrations' desktops to open their record."""
        with self.db.reading() as session:
            attempt = session.get(ContactAttempt, attempt_id)
            if attempt is None or attempt.site != self.site:
                raise NotOnScreen(f"no call {attempt_id} at site {self.site}")
            account = attempt.account
            return (qualified(account) if account else None), attempt.phone

    def details(self, attempt_id: int, agent: str, within: frozenset[PortfolioKey] | None) -> DebtDetails:
        """The debt behind ``attempt_id``, for its agent once the right party is confirmed; audited as
        ``workspace.right_party`` (the agent's word that it spoke with the debtor) with the accounts shown."""
        with self.db.session() as session:
            attempt, account = self._visible(session, attempt_id, within)
            accounts = self._accounts(session, account, within) if account else []
            timeline = self._timeline(session, [line.id for line in accounts])
            self._audit(
                session,
                agent,
                "workspace.right_party",
                attempt_id,
                account,
                shown=[f"{line.portfolio}/{line.ref}" for line in accounts],
            )
            phone, country = attempt.phone, account.portfolio.country if account else None
            portfolio = (account.portfolio.creditor.code, account.portfolio.code) if account else ("", "")
        law = tuple(self._law(phone, account_id=accounts[0].id if accounts else None, agent=agent))
        script = self.workspace.rules(*portfolio).script
        return DebtDetails(attempt_id, tuple(accounts), tuple(timeline), law, country in MINI_MIRANDA_COUNTRIES, script)

    def _visible(
        self, session: Session, attempt_id: int, within: frozenset[PortfolioKey] | None
    ) -> tuple[ContactAttempt, Account | None]:
        attempt = session.get(ContactAttempt, attempt_id)
        if attempt is None or attempt.site != self.site:
            raise NotOnScreen(f"no call {attempt_id} at site {self.site}")
        account = attempt.account
        if account is None:
            if within is not None:  # a call of no account: only those who see the whole site see it
                raise NotOnScreen(f"call {attempt_id} is of no account, outside the agent's portfolios")
            return attempt, None
        key = PortfolioKey(account.portfolio.creditor.code, account.portfolio.code)
        if within is not None and key not in within:
            raise NotOnScreen(f"call {attempt_id} is of portfolio {key}, outside the agent's portfolios")
        return attempt, account

    def _accounts(
        self, session: Session, account: Account, within: frozenset[PortfolioKey] | None
    ) -> list[AccountLine]:
        """The debtor's accounts at this site within the agent's portfolios, the called one first."""
        rows = session.execute(
            select(Account, Creditor.code, Portfolio.code)
            .join(Portfolio, Account.portfolio_id == Portfolio.id)
            .join(Creditor, Portfolio.creditor_id == Creditor.id)
            .where(Account.debtor_id == account.debtor_id, Portfolio.site == self.site, in_portfolios(within))
            .order_by(Account.id)
        ).all()
        today = self.clock.now().astimezone(self.zone).date()
        lines = [
            AccountLine(
                row.id,
                row.ref,
                f"{creditor}/{code}",
                row.balance,
                row.currency,
                row.status,
                days_past_due(row.due_on, today),
            )
            for row, creditor, code in rows
        ]
        return sorted(lines, key=lambda line: line.id != account.id)

    def _timeline(self, session: Session, account_ids: Sequence[int]) -> list[TimelineEntry]:
        rows = session.execute(
            select(ActivityRow, Account.ref)
            .join(Account, ActivityRow.account_id == Account.id)
            .where(ActivityRow.account_id.in_(account_ids))
            .order_by(ActivityRow.seq.desc())
            .limit(TIMELINE_LENGTH)
        ).all()
        return [
            TimelineEntry(row.at, ref, row.kind, row.outcome, row.amount, row.due_date, row.agent) for row, ref in rows
        ]

    def _law(self, phone: str, account_id: int | None, agent: str) -> list[LawNow]:
        """The gate's explanation, for each channel, of another contact now (audited by the explainer)."""
        found = []
        for channel in (Channel.CALL, Channel.SMS):
            decision, _ = self.explainer.explain(
                phone=phone, account=account_id, channel=channel, at=self.clock.now(), actor=f"web:{agent}"
            )
            reasons = tuple(reason.value for reason in decision.reasons)
            found.append(LawNow(channel.value, decision.allowed, reasons, decision.rules, decision.next_allowed_at))
        return found

    def _audit(
        self, session: Session, agent: str, action: str, attempt_id: int, account: Account | None, **details: object
    ) -> None:
        subject = f"attempt:{attempt_id}"
        ref = qualified(account) if account else None
        audit(
            session,
            at=self.clock.now(),
            site=self.site,
            actor=f"web:{agent}",
            action=action,
            subject=subject,
            account=ref,
            **details,
        )


def jsonable(value: object) -> object:
    """``value`` with dates, times and amounts as strings, for an event or a JSON answer."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value
