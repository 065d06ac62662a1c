"""The end-of-run summary: what the node did, how to find a recording and how to open an agent's page."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from cartera.cli.passwords import PASSWORD_ENV
from cartera.core.control_characters import escape_controls

if TYPE_CHECKING:
    from cartera.node import Node


def site_summary(node: Node, began: datetime, real_seconds: float) -> str:
    site, zone = node.site.name, node.site.zone
    figures = node.figures.read()
    decisions = figures.decisions
    denied = Counter(
        reason for action, details in decisions if action == "compliance.deny" for reason in details["reasons"]
    )
    allowed = sum(1 for action, _ in decisions if action == "compliance.allow")
    ended = node.clock.now()
    lines = [
        f"Site {site}: {began.astimezone(zone):%a %d %b %Y %H:%M} -> {ended.astimezone(zone):%a %H:%M} "
        f"{zone.key} ({node.site.section.clock.mode} clock, {real_seconds:.0f} s real)",
        f"  accounts     {_counts(figures.accounts) or 'none loaded'}",
    ]
    for source, counts in figures.batches:
        lines.append(f"  imported     {escape_controls(source)}: {_counts(Counter(counts))}")
    outcomes, reconciled, sms = figures.outcomes, figures.reconciled, figures.sms
    lines += [
        f"  calls        {sum(outcomes.values())} finished" + (f": {_counts(outcomes)}" if outcomes else ""),
    ]
    if figures.abandonment.answered:
        lines.append(f"  abandoned    {figures.abandonment.describe()}")
    if reconciled:
        lines.append(
            f"  reconciled   {sum(reconciled.values())} calls a killed run left in flight: {_counts(reconciled)}"
        )
    if texts := figures.texts_reconciled:
        lines.append(f"  reconciled   {sum(texts.values())} texts a killed sender left queued: {_counts(texts)}")
    lines += [
        f"  compliance   {allowed} allowed, {sum(1 for a, _ in decisions if a == 'compliance.deny')} denied"
        + (f" (reasons: {_counts(denied)})" if denied else ""),
        f"  promises     {figures.promises} promises to pay, total {_totals(figures.promised)}",
        f"  sms          {sum(sms.values())} sent" + (f": {_counts(sms)}" if sms else ""),
        f"  recordings   {_counts(figures.recordings) or 'none'}; "
        f"{figures.archived_bytes / 1e6:.1f} MB archived and verified",
    ]
    config = "" if node.site.source == Path("sites.toml").resolve() else f" --config {node.site.source}"
    cmd = f".venv/bin/python run_site.py{config} --site {site}"
    if (example := figures.example) is not None:
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


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{count} {key}" for key, count in counter.most_common() if count)


def _money(amount: Decimal | int | None) -> str:
    return f"{Decimal(amount or 0):,.0f}".replace(",", ".")


def _totals(by_currency: dict[str, Decimal]) -> str:
    """Amounts by currency, each with its code (``150.000 COP, 1.000 USD``); never one sum across currencies."""
    return ", ".join(f"{_money(amount)} {code}" for code, amount in sorted(by_currency.items())) or _money(0)
