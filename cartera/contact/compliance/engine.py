"""The compliance gate: every call and text passes :meth:`ComplianceGate.decide` before it reaches a plugin.

A portfolio's law pack plus the site's stricter rules form its :class:`Policy`. A decision checks every rule
at the requested instant in the debtor's local time, lists every violation with the rule that raised it, and
finds the first instant all rules allow (a fixpoint: each rule's own next time, re-checked by all). Decisions
are audited in the caller's transaction. The only bypass is the site's explicit allow-list of test numbers,
audited as such.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.orm import Session

from cartera.contact.compliance import packs
from cartera.contact.compliance.calendar import country_zones, instant
from cartera.contact.compliance.model import Decision, Reason, Subject, Violation
from cartera.contact.compliance.rules import (
    AccountStatus,
    Authorised,
    Check,
    DebtorOptOut,
    Finding,
    Moment,
    PromiseMoratorium,
    RequestedHours,
    RestAfterAbandoned,
    Window,
    compile_rule,
)
from cartera.contact.compliance.settings import ComplianceConfig
from cartera.contact.phones import number_country, time_zones
from cartera.core.audit import audit
from cartera.core.models import Channel

_FIXPOINT_ROUNDS = 64
_DAY = 86400.0
#: Hours a number whose call was abandoned is not called again (Ofcom's 72 h); ``campaign.abandonment``.
ABANDONED_REST_HOURS = 72.0


@dataclass(frozen=True)
class RuleInfo:
    """What ``explain`` prints about a rule: where it comes from and what it says."""

    id: str
    origin: str  #: ``law pack co``, ``site``, ``core``
    summary: str
    source: packs.Source | None = None

    def citation(self) -> str:
        if self.source is None:
            return f"{self.origin} rule"
        return f"{self.source.law}, {self.source.article} ({self.source.date})"


_CORE = {
    AccountStatus.id: "no contact about an account the creditor withdrew or that was paid off",
    DebtorOptOut.id: "no contact on a channel the debtor opted out of on this number",
    PromiseMoratorium.id: "no collection contact until the promised payment date has passed",
    RequestedHours.id: "only within the hours the debtor asked for (they narrow the law's, or replace its hours "
    "where the law lets a request recorded in an instrument do so)",
}


class Policy:
    """The checks for one portfolio: core rules, its law pack's, then the site's stricter ones."""

    def __init__(self, pack: packs.LawPack, checks: list[Check], info: list[RuleInfo], horizon: float) -> None:
        self.pack = pack
        self.checks = tuple(checks)
        self.info = {item.id: item for item in info}
        self.horizon = horizon  #: seconds of stored history the counting rules look at
        # a debtor who asked for no hours skips RequestedHours altogether: it is on the hot path of every decision
        plain = [check for check in checks if not isinstance(check, RequestedHours)]
        self._by_channel = {channel: tuple(c for c in plain if channel in c.channels) for channel in Channel}
        self._requested = {channel: tuple(c for c in checks if channel in c.channels) for channel in Channel}
        self._windows = {
            channel: tuple(c for c in self._by_channel[channel] if isinstance(c, Window)) for channel in Channel
        }
        self._requested_windows = {
            channel: tuple(c for c in self._requested[channel] if isinstance(c, Window)) for channel in Channel
        }

    def findings(self, subject: Subject, moment: Moment) -> list[tuple[str, Finding]] | None:
        found: list[tuple[str, Finding]] | None = None
        by_channel = self._by_channel if subject.requested_hours is None else self._requested
        for check in by_channel[subject.channel]:
            finding = check.check(subject, moment)
            if finding is not None:
                if found is None:
                    found = []
                found.append((check.id, finding))
        return found

    def next_allowed(
        self, subject: Subject, zones: tuple[ZoneInfo, ...], found: list[tuple[str, Finding]]
    ) -> float | None:
        """The first instant every check allows, given what they found now.

        Every check but the windows only ever lifts with time (the history is fixed: contacts leave the
        counted days, promised dates pass), and names the instant it lifts. So from the latest of those,
        only the windows need a search: the first instant all of them are open.
        """
        candidate = 0.0
        for _, finding in found:
            if finding.next_ts is None:
                return None
            candidate = max(candidate, finding.next_ts)
        windows = (self._windows if subject.requested_hours is None else self._requested_windows)[subject.channel]
        if len(windows) == 1:
            return windows[0].open_from(subject, candidate, zones)
        for _ in range(_FIXPOINT_ROUNDS):
            moved = False
            for window in windows:
                opening = window.open_from(subject, candidate, zones)
                if opening is None:
                    return None
                if opening != candidate:
                    candidate, moved = opening, True
            if not moved:
                return candidate
        return None


def build_policy(
    pack_id: str,
    local: Iterable[tuple[str, packs.AnyRule]],
    authorised: tuple[str, ...] | None,
    *,
    abandoned_rest_hours: float = ABANDONED_REST_HOURS,
) -> Policy:
    """``pack_id``'s rules with the site's ``local`` ones; ``authorised``: the channels the site states the
    debtors authorised (``None``: not stated, so a pack that requires them allows no channel);
    ``abandoned_rest_hours``: how long a number whose call was abandoned rests (0: not at all)."""
    pack = packs.load_pack(pack_id)
    allowed = frozenset(Channel(name) for name in authorised) if authorised is not None else None
    checks: list[Check] = [AccountStatus(), DebtorOptOut()]
    info = [RuleInfo(check.id, "core", _CORE[check.id]) for check in checks]
    if allowed is not None and not pack.needs_authorised_channels:
        checks.append(Authorised("site.authorised_channels", allowed))
        info.append(RuleInfo("site.authorised_channels", "site", "only the channels sites.toml authorises"))
    horizon = _DAY
    for rule_id, spec, origin in [
        *((rule.id or "", rule, f"law pack {pack.id}") for rule in pack.rules),
        *((rule_id, spec, "site") for rule_id, spec in local),
    ]:
        law = origin != "site"
        checks.append(compile_rule(rule_id, spec, pack.holidays, allowed or frozenset(), from_law=law))
        info.append(RuleInfo(rule_id, origin, spec.summary or _describe(spec), spec.source))
        horizon = max(horizon, _reach(spec))
    requested = RequestedHours(
        frozenset(channel for c in checks if isinstance(c, Window) and c.replaceable for channel in c.channels)
    )
    checks.append(requested)
    info.append(RuleInfo(requested.id, "core", _CORE[requested.id]))
    checks.append(PromiseMoratorium())
    info.append(RuleInfo(PromiseMoratorium.id, "core", _CORE[PromiseMoratorium.id]))
    if abandoned_rest_hours > 0:
        checks.append(RestAfterAbandoned(abandoned_rest_hours))
        summary = f"no call to a number for {abandoned_rest_hours:g} h after a call to it was abandoned"
        info.append(RuleInfo(RestAfterAbandoned.id, "core", summary))
        horizon = max(horizon, abandoned_rest_hours * 3600 + _DAY)
    return Policy(pack, checks, info, horizon)


def _reach(spec: packs.AnyRule) -> float:
    """How far back a rule looks, with a day of slack for local days in any zone."""
    if isinstance(spec, packs.MinIntervalRule):
        return spec.hours * 3600 + _DAY
    days = getattr(spec, "days", 0)
    return (days + 2) * _DAY if days else _DAY


def _describe(spec: packs.AnyRule) -> str:
    channels = "/".join(spec.channels)
    if isinstance(spec, packs.WindowRule):
        hours = ", ".join(f"{days} {interval}" for days, interval in spec.hours.items())
        holidays = ", closed on public holidays" if spec.closed_on_holidays else ""
        return f"{channels} only {hours} local time{holidays}"
    if isinstance(spec, packs.FrequencyRule):
        return f"{channels}: at most {spec.max} {'/'.join(spec.counted)} per {spec.days} days per {spec.scope}"
    if isinstance(spec, packs.QuietAfterConversationRule):
        return f"{channels}: none for {spec.days} days after a conversation"
    if isinstance(spec, packs.MinIntervalRule):
        return f"{channels}: at least {spec.hours:g} h between contacts"
    return spec.kind


class PolicyError(ValueError):
    """A site's compliance settings are invalid; ``key`` is the offending key under ``compliance``."""

    def __init__(self, key: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.key = key


def local_rules(config: ComplianceConfig) -> list[tuple[str, packs.AnyRule]]:
    """The site's own rules with their ids: the ``contact_window`` shorthand, then ``rules``."""
    rules: list[tuple[str, packs.AnyRule]] = []
    if config.contact_window is not None:
        rules.append(("site.contact_window", config.contact_window.as_rule()))
    rules += [(rule.id or f"site.rules.{n}", rule) for n, rule in enumerate(config.rules, 1)]
    return rules


def validate(config: ComplianceConfig, country: str) -> None:
    """Refuse a site's settings that select no pack, miss what a pack needs, or loosen the law."""
    default = config.law_pack or packs.default_pack(country)
    if default is None:
        raise PolicyError(
            ("law_pack",),
            f"no law pack for country {country!r}: set law_pack to one of {', '.join(packs.pack_ids())}",
        )
    used: list[tuple[tuple[str, ...], str, tuple[str, ...] | None]] = [
        (("law_pack",), default, config.authorised_channels)
    ]
    for name, portfolio in config.portfolios.items():
        if "/" not in name:
            raise PolicyError(("portfolios", name), "portfolios are named 'CREDITOR/PORTFOLIO'")
        channels: tuple[str, ...] | None = portfolio.authorised_channels
        if channels is None:
            channels = config.authorised_channels
        used.append((("portfolios", name), portfolio.law_pack or default, channels))
    for key, pack_id, channels in used:
        try:
            pack = packs.load_pack(pack_id)
        except packs.PackError as exc:
            raise PolicyError(key, str(exc)) from None
        if pack.needs_authorised_channels and channels is None:
            rule = next(r for r in pack.rules if isinstance(r, packs.AuthorisedChannelsRule))
            cited = f" ({rule.source.law}, {rule.source.article})" if rule.source else ""
            raise PolicyError(
                ("authorised_channels",),
                f"law pack {pack.id} allows only the channels debtors authorised{cited}: "
                'set authorised_channels, e.g. ["call", "sms"]',
            )
        for rule_id, spec in local_rules(config):
            problem = packs.looser_than(spec, pack)
            if problem:
                where = ("contact_window",) if rule_id == "site.contact_window" else ("rules",)
                raise PolicyError(where, f"{rule_id}: {problem}")


@lru_cache(maxsize=65536)
def debtor_zones(address: str | None, phone: str, fallback: ZoneInfo) -> tuple[tuple[ZoneInfo, ...], str | None]:
    """The zones a debtor's local time is read in, and why the address's zone (the creditor's ``address``) is
    not taken alone when it is not.

    Imports accept only a zone of the portfolio's country; a zone stored before, or a debtor whose number is
    of another country, is not trusted alone: the windows are checked in it and in every zone of the number.
    """
    number = time_zones(phone) or (fallback,)
    if address is None:
        return number, None
    try:
        zone = ZoneInfo(address)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return number, f"the creditor's address zone {address!r} is not a known zone: the number's zones are used"
    country = number_country(phone)
    if address in country_zones(country):
        return (zone,), None
    where = f"the number's country {country}" if country else "the number's country (none: not a geographic number)"
    doubt = (
        f"the creditor's address zone {address} is not a zone of {where}: every zone is checked, the strictest decides"
    )
    return (zone, *(other for other in number if other != zone)), doubt


class ComplianceGate:
    """One site's gate: its policies by portfolio, its test numbers, and the zone when a number has none."""

    def __init__(
        self,
        site: str,
        *,
        country: str,
        fallback_zone: ZoneInfo,
        default: Policy,
        portfolios: dict[str, Policy] | None = None,
        local: list[tuple[str, packs.AnyRule]] | None = None,
        authorised: tuple[str, ...] | None = None,
        test_numbers: Iterable[str] = (),
        abandoned_rest_hours: float = ABANDONED_REST_HOURS,
    ) -> None:
        self.site = site
        self.country = country
        self.fallback_zone = fallback_zone
        self.default = default
        self.portfolios = portfolios or {}
        self.test_numbers = frozenset(test_numbers)
        self._local = local or []
        self._authorised = authorised
        self._abandoned_rest_hours = abandoned_rest_hours
        self._by_country: dict[str, Policy | None] = {}

    @classmethod
    def for_site(
        cls,
        site: str,
        config: ComplianceConfig,
        *,
        country: str,
        zone: ZoneInfo,
        abandoned_rest_hours: float = ABANDONED_REST_HOURS,
    ) -> ComplianceGate:
        """The gate ``config`` (validated by :func:`validate`) describes; ``abandoned_rest_hours`` as in
        :func:`build_policy`."""
        default_id = config.law_pack or packs.default_pack(country)
        if default_id is None:
            raise PolicyError(("law_pack",), f"no law pack for country {country!r}")
        local = local_rules(config)
        portfolios = {
            name: build_policy(
                entry.law_pack or default_id,
                local,
                entry.authorised_channels if entry.authorised_channels is not None else config.authorised_channels,
                abandoned_rest_hours=abandoned_rest_hours,
            )
            for name, entry in config.portfolios.items()
        }
        return cls(
            site,
            country=country,
            fallback_zone=zone,
            default=build_policy(
                default_id, local, config.authorised_channels, abandoned_rest_hours=abandoned_rest_hours
            ),
            portfolios=portfolios,
            local=local,
            authorised=config.authorised_channels,
            test_numbers=config.test_numbers,
            abandoned_rest_hours=abandoned_rest_hours,
        )

    # --- deciding ---------------------------------------------------------------------------------

    def policy_for(self, subject: Subject) -> Policy | None:
        """The portfolio's policy; a portfolio of another country gets that country's pack (``None``: none)."""
        if subject.portfolio is not None:
            policy = self.portfolios.get(subject.portfolio)
            if policy is not None:
                return policy
        country = subject.country
        if country is None or country in (self.country, self.default.pack.country):  # the site's law
            return self.default
        if country not in self._by_country:
            pack_id = packs.default_pack(country)
            self._by_country[country] = (
                build_policy(pack_id, self._local, self._authorised, abandoned_rest_hours=self._abandoned_rest_hours)
                if pack_id
                else None
            )
        return self._by_country[country]

    def law_country(self, portfolio: str, country: str) -> str | None:
        """The country of the law pack the debtors of ``portfolio`` (``CREDITOR/PORTFOLIO`` of ``country``) are
        held to (``None``: no pack)."""
        policy = self.policy_for(Subject(Channel.CALL, "", portfolio=portfolio, country=country))
        return None if policy is None else policy.pack.country

    def zones(self, subject: Subject) -> tuple[ZoneInfo, ...]:
        """The debtor's zones: the address's when the creditor gave one that is a zone of the number's country,
        else every zone of the number, and the address's too when it names one (the strictest decides)."""
        return debtor_zones(subject.timezone, subject.phone, self.fallback_zone)[0]

    def zones_doubt(self, subject: Subject) -> str | None:
        """Why the creditor's address zone is not taken alone (``None``: it is, or there is none)."""
        return debtor_zones(subject.timezone, subject.phone, self.fallback_zone)[1]

    def is_test_number(self, subject: Subject) -> bool:
        return subject.account_ref is None and subject.phone in self.test_numbers

    def evaluate(self, subject: Subject, at: datetime) -> Decision:
        """The decision alone, without auditing (for previews and scheduling)."""
        if self.is_test_number(subject):
            return Decision(True, (), at, None, test_number=True)
        policy = self.policy_for(subject)
        if policy is None:
            return Decision(False, (Violation(Reason.NO_LAW_PACK, "core.law_pack"),), None)
        zones = self.zones(subject)
        found = policy.findings(subject, Moment(at.timestamp(), zones))
        if found is None:
            return Decision(True, (), at, policy.pack.id)
        violations = tuple([Violation(finding.reason, rule_id) for rule_id, finding in found])
        next_ts = policy.next_allowed(subject, zones, found)
        return Decision(False, violations, None if next_ts is None else instant(next_ts, zones[0]), policy.pack.id)

    def decide(self, session: Session, subject: Subject, at: datetime, actor: str) -> Decision:
        """Decide and write the decision to the audit log (committed with ``session``)."""
        decision = self.evaluate(subject, at)
        if decision.test_number:
            action = "compliance.test_number"
        else:
            action = "compliance.allow" if decision.allowed else "compliance.deny"
        self._audit(session, action, subject, at, actor=actor, decision=decision)
        return decision

    def explain(self, session: Session, subject: Subject, at: datetime, actor: str) -> Decision:
        """Decide without contacting anyone, for supervisors and auditors; audited as ``compliance.explain``."""
        decision = self.evaluate(subject, at)
        self._audit(
            session, "compliance.explain", subject, at, actor=actor, decision=decision, allowed=decision.allowed
        )
        return decision

    def _audit(
        self,
        session: Session,
        action: str,
        subject: Subject,
        at: datetime,
        *,
        actor: str,
        decision: Decision,
        **extra: Any,
    ) -> None:
        audit(
            session,
            at=at,
            site=self.site,
            actor=actor,
            action=action,
            subject=f"{subject.channel}:{subject.phone}",
            account=subject.account_ref,
            portfolio=subject.portfolio,
            pack=decision.pack,
            purpose=subject.purpose.value,
            reasons=list(decision.reasons),
            rules=list(decision.rules),
            next_allowed_at=decision.next_allowed_at.isoformat() if decision.next_allowed_at else None,
            requested_hours=subject.requested_hours.describe() if subject.requested_hours else None,
            line_type=subject.line_type.value,
            **extra,
        )
