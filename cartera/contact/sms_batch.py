"""A batch of texts from one template to a portfolio's active accounts: previewed (count, segments, cost,
what the compliance gate would refuse now), then sent one by one through the gate."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select

from cartera.contact.compliance import Decision
from cartera.contact.sms_templates import RenderedSms
from cartera.contact.targets import Denied
from cartera.contact.texts import TextService
from cartera.core.errors import CarteraError, UsageError
from cartera.core.models import SmsState
from cartera.core.store.schema import Account, Creditor, Portfolio
from cartera.portfolio.identity import PortfolioKey, in_portfolios, resolve_portfolio


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One account of the batch: its text (or why there is none) and the gate's verdict right now."""

    account_id: int
    account_ref: str
    rendered: RenderedSms | None
    decision: Decision | None = None
    problem: str | None = None

    @property
    def sendable(self) -> bool:
        return self.rendered is not None and self.decision is not None and self.decision.allowed


@dataclass(frozen=True)
class BatchPlan:
    template: str
    portfolio: str
    at: datetime
    lines: list[BatchLine]
    currency: str

    @property
    def to_send(self) -> list[BatchLine]:
        return [line for line in self.lines if line.sendable]

    def summary(self) -> str:
        sending = [line.rendered for line in self.to_send if line.rendered is not None]
        segments = sum(r.segments for r in sending)
        cost = sum((r.cost for r in sending), Decimal(0))
        encodings = Counter(r.encoding for r in sending)
        denied = Counter(
            reason
            for line in self.lines
            if line.decision and not line.decision.allowed
            for reason in line.decision.reasons
        )
        mix = ", ".join(f"{count} {encoding}" for encoding, count in sorted(encodings.items())) or "none"
        out = [
            f"batch {self.template!r} for portfolio {self.portfolio}: {len(self.lines)} active accounts",
            f"  to send: {len(sending)} messages, {segments} segments ({mix}), cost {cost} {self.currency}",
        ]
        refused = sum(1 for line in self.lines if line.decision and not line.decision.allowed)
        if refused:
            reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(denied.items()))
            out.append(f"  refused by the compliance gate at {self.at:%Y-%m-%d %H:%M %Z}: {refused} ({reasons})")
        for line in self.lines:
            if line.problem:
                out.append(f"  not sendable: {line.account_ref}: {line.problem}")
        return "\n".join(out)


@dataclass
class BatchOutcome:
    submitted: int = 0
    failed: int = 0
    denied: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"sent: {self.submitted} submitted, {self.failed} failed, {self.denied} refused by the gate"


def plan_batch(texts: TextService, template: str, portfolio: str, at: datetime) -> BatchPlan:
    """Render ``template`` for each active account of ``portfolio`` (``CREDITOR/CODE``, or ``CODE`` when one
    creditor has it) and ask the gate, without auditing, what it would decide at ``at``."""
    with texts.db.session() as session:
        key = resolve_portfolio(session, texts.site, portfolio)
    if texts.templates.source(template, key.creditor, key.code) is None:
        defined = ", ".join(texts.templates.names()) or "none"
        raise UsageError(f"no SMS template {template!r} for portfolio {key} (defined: {defined})")
    lines: list[BatchLine] = []
    for account_id, ref in _active_accounts(texts, key):
        try:
            rendered = texts.render_sms(template, account_id)
            assert rendered is not None  # checked above
            decision, _ = texts.preview_sms(account_id=account_id, text=rendered.text, at=at)
        except CarteraError as problem:  # a template field the account lacks, no valid phone left...
            lines.append(BatchLine(account_id, ref, None, problem=str(problem)))
            continue
        lines.append(BatchLine(account_id, ref, rendered, decision))
    return BatchPlan(template, str(key), at, lines, texts.templates.pricing.currency)


def send_batch(texts: TextService, plan: BatchPlan, actor: str) -> BatchOutcome:
    """Send each text the preview allowed, each through the gate again (it is the gate's decision that counts)."""
    outcome = BatchOutcome()
    for line in plan.to_send:
        assert line.rendered is not None
        try:
            result = texts.send_sms(phone=None, text=line.rendered.text, account=line.account_id, actor=actor)
        except Denied:
            outcome.denied += 1
            continue
        if result.state is SmsState.FAILED:
            outcome.failed += 1
            outcome.failures.append(f"{line.account_ref}: {result.detail}")
        else:
            outcome.submitted += 1
    return outcome


def _active_accounts(texts: TextService, portfolio: PortfolioKey) -> list[tuple[int, str]]:
    """(account id, ref) of the portfolio's active accounts at the site."""
    query = (
        select(Account.id, Account.ref)
        .join(Portfolio, Account.portfolio_id == Portfolio.id)
        .join(Creditor, Portfolio.creditor_id == Creditor.id)
        .where(Portfolio.site == texts.site, in_portfolios({portfolio}), Account.status == "active")
        .order_by(Account.ref)
    )
    with texts.db.session() as session:
        return [(account_id, ref) for account_id, ref in session.execute(query)]
