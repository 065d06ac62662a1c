"""``explain``'s text: a decision, every rule it checked with its source, and what the store knew."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from cartera.contact.compliance.engine import ComplianceGate
from cartera.contact.compliance.model import Contact, Decision, Subject


def explanation(gate: ComplianceGate, decision: Decision, subject: Subject, at: datetime, site_zone: ZoneInfo) -> str:
    zones = gate.zones(subject)
    about = f" about {subject.account_ref}" if subject.account_ref else ""
    lines = [f"{subject.channel} to {subject.phone}{about} at {_when(at, site_zone)}"]
    doubt = gate.zones_doubt(subject)
    where = doubt or ("from the creditor's address" if subject.timezone else "from the phone number")
    lines.append("debtor's time: " + "; ".join(_when(at, zone) for zone in zones) + f" ({where})")
    if subject.requested_hours is not None:
        lines.append(f"debtor's requested hours: {subject.requested_hours.describe()}")
    lines.append(f"number's line type: {subject.line_type}")
    if decision.test_number:
        lines.append("decision: ALLOWED: a test number of the site's allow-list, no rule applies (audited as such)")
        return "\n".join(lines)
    policy = gate.policy_for(subject)
    if policy is None:
        lines.append(f"decision: DENIED: no law pack for the portfolio's country {subject.country}")
        return "\n".join(lines)
    lines.append(f"law pack: {policy.pack.id}: {policy.pack.title}")
    lines.append("decision: " + ("ALLOWED" if decision.allowed else "DENIED"))
    if not decision.allowed:
        if decision.next_allowed_at is None:
            lines.append("next allowed: never, unless what blocks it changes (opt-out, status, authorisation)")
        else:
            first = decision.next_allowed_at
            site = "" if zones == (site_zone,) else f" ({_when(first, site_zone)})"
            lines.append(f"next allowed: {_when(first, zones[0])}{site}")
    lines.append(_history(subject, site_zone))
    lines += [_contact(contact, site_zone) for contact in subject.history.contacts]
    refused = {violation.rule: violation.reason for violation in decision.violations}
    lines.append("rules checked:")
    for info in policy.info.values():
        if info.id in refused:
            lines.append(f"  DENY  {info.id} ({refused[info.id]})")
        else:
            lines.append(f"  ok    {info.id}")
        lines.append(f"        {info.summary}")
        lines.append(f"        {info.citation()}")
    return "\n".join(lines)


def _history(subject: Subject, zone: ZoneInfo) -> str:
    history = subject.history
    calls = sum(1 for contact in history.contacts if contact.channel == "call")
    texts = len(history.contacts) - calls
    text = f"history: {_count(calls, 'call')} and {_count(texts, 'text')} counted"
    if history.last_conversation is not None:
        text += f"; last conversation {_when(datetime.fromtimestamp(history.last_conversation, UTC), zone)}"
    if history.promise_due is not None:
        text += f"; promise to pay due {history.promise_due:%Y-%m-%d}"
    return text


def _contact(contact: Contact, zone: ZoneInfo) -> str:
    """One contact of the history: when, how, to which number, about what and by which site of the store."""
    about = "this debt" if contact.same_account else "another account or none"
    talked = ", a conversation" if contact.conversation else ", abandoned" if contact.abandoned else ""
    when = _when(datetime.fromtimestamp(contact.ts, UTC), zone)
    return f"  {contact.channel} {when} to {contact.phone} ({about}{talked}) by site {contact.site}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _when(at: datetime, zone: ZoneInfo) -> str:
    return f"{at.astimezone(zone):%a %d %b %Y %H:%M} {zone.key}"
