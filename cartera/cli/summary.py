"""The end-of-run summary: what the node did, how to find a recording and how to open an agent's page."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from cartera.cli.passwords import PASSWORD_ENV
from cartera.contact.abandonment import abandonment_rate
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

if TYPE_CHECKING:
    from cartera.node import Node


def site_summary(node: Node, began: datetime, real_seconds: float) -> str:
    site, zone = node.site.name, node.site.zone
    with node.db.session() as session:
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
        abandonment = abandonment_rate(session, site, node.clock.now(), node.site.section.campaign.abandonment)
        decisions = session.execute(
            select(AuditEntry.action, AuditEntry.details).where(
                AuditEntry.site == site, AuditEntry.action.in_(("compliance.allow", "compliance.deny"))
            )
        ).all()
        promises = session.execute(
            select(func.count(), func.coalesce(func.sum(ActivityRow.amount), 0)).where(
                ActivityRow.site == site, ActivityRow.kind == "promise_to_pay"
            )
        ).one()
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
    denied = Counter(
        reason for action, details in decisions if action == "compliance.deny" for reason in details["reasons"]
    )
    allowed = sum(1 for action, _ in decisions if action == "compliance.allow")
    ended = node.clock.now()
    lines = [
        f"Site {site}: {began.astimezone(zone):%a %d %b %Y %H:%M} -> {ended.astimezone(zone):%a %H:%M} "
        f"{zone.key} ({node.site.section.clock.mode} clock, {real_seconds:.0f} s real)",
        f"  accounts     {_counts(accounts) or 'none loaded'}",
    ]
    for source, counts in batches:
        lines.append(f"  imported     {source}: {_counts(Counter(counts))}")
    lines += [
        f"  calls        {sum(outcomes.values())} finished" + (f": {_counts(outcomes)}" if outcomes else ""),
    ]
    if abandonment.answered:
        lines.append(f"  abandoned    {abandonment.describe()}")
    if reconciled:
        lines.append(
            f"  reconciled   {sum(reconciled.values())} calls a killed run left in flight: {_counts(reconciled)}"
        )
    lines += [
        f"  compliance   {allowed} allowed, {sum(1 for a, _ in decisions if a == 'compliance.deny')} denied"
        + (f" (reasons: {_counts(denied)})" if denied else ""),
        f"  promises     {promises[0]} promises to pay, total {_money(promises[1])}",
        f"  sms          {sum(sms.values())} sent" + (f": {_counts(sms)}" if sms else ""),
        f"  recordings   {_counts(recordings) or 'none'}; {archived_bytes / 1e6:.1f} MB archived and verified",
    ]
    config = "" if node.site.source == Path("sites.toml").resolve() else f" --config {node.site.source}"
    cmd = f".venv/bin/python run_site.py{config} --site {site}"
    if example:
        lines += [
            "",
            "Find and fetch a recording:",
            f"  {cmd} recordings search --account {example[1]}",
            f"  {cmd} recordings get {example[0]} -o /tmp/recording-{example[0]}.wav",
        ]
    return "\n".join(lines + agent_page(node, cmd))


def agent_page(node: Node, cmd: str) -> list[str]:
    """How to open an agent's page, when the site serves its pages: an agent user on one of the dialer's seats
    (the simulator's first one, when it is the dialer), then a run, then ``/agent``."""
    section = node.site.section
    if not section.web.enabled:
        return []
    dialer = section.dialer
    extension = "EXTENSION"  # the agent's identity at the dialer: a queue member, a SIP agent...
    if dialer is not None and dialer.plugin == "simulator":
        extension = ((dialer.model_extra or {}).get("seats") or ["agent-01"])[0]
    return [
        "",
        f"Open an agent's page: add an agent on a dialer seat (password from ${PASSWORD_ENV} or a prompt), run the"
        f" site, sign in at {section.web.base_url}/agent:",
        f"  {cmd} users add ana --role agent --extension {extension}",
        f"  {cmd} run",
    ]


def _count_by(session: Session, query: Select[Any, int]) -> Counter[str]:
    """Run ``SELECT key, count(*) ... GROUP BY key`` and return the counts by key."""
    return Counter({str(key): count for key, count in session.execute(query.group_by(query.selected_columns[0]))})


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{count} {key}" for key, count in counter.most_common() if count)


def _money(amount: Decimal | int | None) -> str:
    return f"{Decimal(amount or 0):,.0f}".replace(",", ".")
