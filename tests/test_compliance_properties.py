"""Property tests: over random instants (around DST changes and public holidays), numbers, packs and histories,
the engine agrees with a plain re-reading of each pack's rules, and its next allowed time is the first one.

The oracle below reads the same pack data but none of the engine's code: local times by ``astimezone``,
holidays straight from the ``holidays`` package, calendar days by ``date`` arithmetic, no caches, no fixpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as number_zones

from cartera.contact.compliance import (
    ComplianceGate,
    Contact,
    DebtorHours,
    History,
    LineType,
    Purpose,
    Subject,
    build_policy,
    packs,
)
from cartera.core.models import Channel

BOGOTA = ZoneInfo("America/Bogota")
NEW_YORK = ZoneInfo("America/New_York")
PHONES = {
    "co": ["+573001234567", "+576015550123", "+525512345678"],
    "mx": ["+525512345678", "+526641234567", "+529981234567"],
    "pe": ["+5114123456", "+51912345678"],
    "cl": ["+56221234567"],
    "us": ["+12125550123", "+13125550123", "+16025550123", "+18085550123", "+18005550199"],
}
PHONES["us-ma"] = ["+16175550123", "+18005550199"]
ZONES = ["America/New_York", "America/Santiago", "America/Tijuana", "America/Bogota", "Pacific/Honolulu"]


def _special_days() -> list[date]:
    """DST changes (US, Chile, Tijuana) and public holidays of the packs' countries, 2025-2028."""
    days: set[date] = set()
    for name in ("America/New_York", "America/Santiago", "America/Tijuana"):
        zone = ZoneInfo(name)
        instant = datetime(2025, 1, 1, tzinfo=UTC)
        while instant.year < 2029:
            nxt = instant + timedelta(hours=6)
            if instant.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
                days.add(nxt.astimezone(zone).date())
            instant = nxt
    for country in ("CO", "PE", "CL", "MX"):
        days.update(holidays.country_holidays(country, years=range(2025, 2029)))
    days.update(holidays.country_holidays("CL", subdiv="AP", years=range(2025, 2029)))
    return sorted(days)


SPECIAL_DAYS = _special_days()


@cache
def _holidays(country: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision, years=year)


def _zones(subject: Subject) -> list[ZoneInfo]:
    """The address's zone alone when IANA's tables put it in the number's country, else it and the number's."""
    names = number_zones.time_zones_for_number(phonenumbers.parse(subject.phone))
    number = [ZoneInfo(n) for n in names if n != "Etc/Unknown"] or [BOGOTA]
    if not subject.timezone:
        return number
    country = phonenumbers.region_code_for_number(phonenumbers.parse(subject.phone))
    if subject.timezone in _tabled_zones(country):
        return [ZoneInfo(subject.timezone)]
    return [ZoneInfo(subject.timezone), *(zone for zone in number if zone.key != subject.timezone)]


@cache
def _tabled_zones(country: str) -> set[str]:
    zones = set()
    for table in ("zone1970.tab", "zone.tab"):
        for line in resources.files("tzdata").joinpath("zoneinfo", table).read_text(encoding="utf-8").splitlines():
            fields = line.split("\t")
            if not line.startswith("#") and len(fields) >= 3 and country in fields[0].split(","):
                zones.add(fields[2])
    return zones


def _line(subject: Subject, phone: str) -> str:
    return subject.line_types.get(phone, LineType.UNKNOWN).value


def _outside(week: tuple[packs.Hours | None, ...], local: datetime) -> bool:
    hours = week[local.weekday()]
    second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    return hours is None or not hours[0] <= second < hours[1]


def _mine(subject: Subject, contact: Contact, scope: str) -> bool:
    if scope == "debtor":  # the history holds the debtor's contacts only
        return True
    if scope == "account" and subject.account_ref is not None:
        return contact.same_account
    return contact.phone == subject.phone


def oracle(
    pack: packs.LawPack, rules: list[packs.AnyRule], authorised: tuple[str, ...], subject: Subject, at: datetime
) -> bool:
    """Whether every rule of the pack (and ``rules``, the site's) allows ``subject`` at ``at``."""
    if subject.account_status not in (None, "active") or subject.channel in subject.opted_out:
        return False
    if subject.channel.value not in authorised:
        return False
    zones, channel, past = _zones(subject), subject.channel.value, subject.history.contacts
    local_days = [at.astimezone(zone).date() for zone in zones]
    due = subject.history.promise_due
    if subject.purpose is Purpose.COLLECTION and due is not None and any(day <= due for day in local_days):
        return False
    talked = subject.history.last_conversation is not None
    request = subject.requested_hours
    requested = packs.week_hours(dict(request.hours)) if request else None
    # a request on file with its instrument replaces the hours of a law window that says so; otherwise it narrows
    replaced = bool(request and request.instrument) and any(
        isinstance(rule, packs.WindowRule) and rule.debtor_request == "replace" and channel in rule.channels
        for rule in pack.rules
    )
    if requested is not None and not replaced and any(_outside(requested, at.astimezone(z)) for z in zones):
        return False
    for rule in (*pack.rules, *rules):
        if channel not in rule.channels:
            continue
        if isinstance(rule, packs.WindowRule):
            week = requested if replaced and requested and rule in pack.rules else rule.week
            for zone in zones:
                local = at.astimezone(zone)
                holiday = pack.holidays
                if rule.closed_on_holidays and holiday:
                    region = subject.region
                    code = region[3:] if holiday.regional and region and region.startswith(holiday.country) else None
                    if local.date() in _holidays(holiday.country, code, local.year):
                        return False
                if _outside(week, local):
                    return False
        elif isinstance(rule, packs.FrequencyRule):
            if rule.after_conversation and not talked:
                continue
            lines = {*rule.line_types, "unknown"} if rule.line_types else None
            if lines is not None and _line(subject, subject.phone) not in lines:
                continue
            for zone, today in zip(zones, local_days, strict=True):
                first = today - timedelta(days=rule.days - 1)
                counted = [
                    c
                    for c in past
                    if c.channel.value in rule.counted
                    and _mine(subject, c, rule.scope)
                    and (lines is None or _line(subject, c.phone) in lines)
                    and datetime.fromtimestamp(c.ts, zone).date() >= first
                ]
                if len(counted) >= rule.max:
                    return False
        elif isinstance(rule, packs.QuietAfterConversationRule):
            for zone, today in zip(zones, local_days, strict=True):
                first = today - timedelta(days=rule.days - 1)
                if any(
                    c.conversation
                    and _mine(subject, c, rule.scope)
                    and datetime.fromtimestamp(c.ts, zone).date() >= first
                    for c in past
                ):
                    return False
        elif isinstance(rule, packs.OneChannelAfterConversationRule):
            if not talked:
                continue
            for zone, today in zip(zones, local_days, strict=True):
                first = today - timedelta(days=rule.days - 1)
                if any(
                    c.channel is not subject.channel
                    and _mine(subject, c, "debtor")
                    and datetime.fromtimestamp(c.ts, zone).date() >= first
                    for c in past
                ):
                    return False
        elif isinstance(rule, packs.MinIntervalRule):
            window = rule.hours * 3600
            if any(
                c.channel.value in rule.counted and _mine(subject, c, rule.scope) and at.timestamp() - c.ts < window
                for c in past
            ):
                return False
        elif isinstance(rule, packs.OptOutNoticeRule):
            words = (subject.text or "").upper().replace(".", " ").split()
            if subject.text is not None and not any(k.upper() in words for k in rule.keywords):
                return False
    return True


@dataclass(frozen=True)
class Case:
    pack: str
    authorised: tuple[str, ...]
    local: tuple[packs.AnyRule, ...]
    subject: Subject
    at: datetime

    def gate(self) -> ComplianceGate:
        local = [(f"site.rules.{n}", rule) for n, rule in enumerate(self.local, 1)]
        policy = build_policy(self.pack, local, self.authorised)
        return ComplianceGate("t", country=policy.pack.country, fallback_zone=BOGOTA, default=policy)

    def allowed_by_oracle(self, at: datetime) -> bool:
        return oracle(packs.load_pack(self.pack), list(self.local), self.authorised, self.subject, at)


instants = st.one_of(
    st.builds(
        lambda day, second: datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=second),
        st.sampled_from(SPECIAL_DAYS),
        st.integers(-36 * 3600, 60 * 3600),
    ),
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)),
)

local_rules = st.lists(
    st.one_of(
        st.builds(
            lambda channels, most, days: packs.FrequencyRule(kind="frequency", channels=channels, max=most, days=days),
            st.sampled_from([("call",), ("sms",), ("call", "sms")]),
            st.integers(1, 4),
            st.integers(1, 10),
        ),
        st.builds(
            lambda days: packs.QuietAfterConversationRule(
                kind="quiet_after_conversation", channels=("call",), days=days
            ),
            st.integers(1, 5),
        ),
        st.builds(
            lambda hours: packs.WindowRule(kind="window", hours={"mon-fri": hours}, closed_on_holidays=True),
            st.sampled_from(["09:00-17:00", "08:30-12:00"]),
        ),
    ),
    max_size=2,
)


PERSONAL, WORK = LineType.PERSONAL, LineType.WORK
requests = st.builds(
    lambda hours, instrument: DebtorHours(tuple(hours.items()), packs.week_hours(hours), instrument),
    st.sampled_from(
        [
            {"mon-fri": "18:00-20:00"},
            {"mon-sun": "06:00-23:30"},  # wider than every pack
            {"sat-sun": "09:00-12:00"},
            {"mon": "00:00-24:00", "wed-fri": "12:30-13:00"},
        ]
    ),
    st.sampled_from([None, "grabación de llamada 2026-11-20 #4411"]),
)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    pack = draw(st.sampled_from(sorted(PHONES)))
    at = draw(instants)
    phone = draw(st.sampled_from(PHONES[pack]))
    other = "+573009999999"
    channel = draw(st.sampled_from([Channel.CALL, Channel.SMS]))
    contacts = draw(
        st.lists(
            st.tuples(
                st.integers(0, 12 * 86400) | st.integers(0, 35 * 86400),
                st.sampled_from([Channel.CALL, Channel.SMS]),
                st.booleans(),
                st.booleans(),
                st.sampled_from([phone, phone, other]),
            ),
            max_size=draw(st.sampled_from([0, 3, 12])),
        )
    )
    past = sorted(
        (
            Contact(at.timestamp() - ago, chan, number, same, talked and chan is Channel.CALL)
            for ago, chan, same, talked, number in contacts
        ),
        key=lambda c: -c.ts,
    )
    conversations = [c.ts for c in past if c.conversation]
    long_ago = draw(st.booleans())
    last = max(conversations) if conversations else (at.timestamp() - 40 * 86400 if long_ago else None)
    promise = draw(
        st.sampled_from([None, None, None, 1]).flatmap(
            lambda some: st.integers(-3, 6).map(lambda d: at.date() + timedelta(days=d)) if some else st.none()
        )
    )
    subject = Subject(
        channel=channel,
        phone=phone,
        account_ref=draw(st.sampled_from(["A-1", "A-1", None])),
        account_status="active",
        opted_out=draw(st.sampled_from([frozenset()] * 8 + [frozenset({Channel.CALL}), frozenset({Channel.SMS})])),
        timezone=draw(st.none() | st.none() | st.sampled_from(ZONES)),
        region=draw(st.sampled_from([None, "CL-AP", "CL-RM"])) if pack == "cl" else None,
        history=History(tuple(past), last, promise),
        text=draw(st.sampled_from([None, "Reply STOP to opt out", "Pague hoy"])) if channel is Channel.SMS else None,
        purpose=draw(st.sampled_from(list(Purpose))),
        requested_hours=draw(st.none() | st.none() | requests),
        line_types=draw(
            st.sampled_from([{}, {phone: PERSONAL}, {phone: WORK}, {phone: PERSONAL, other: WORK}, {other: PERSONAL}])
        ),
    )
    authorised = draw(st.sampled_from([("call", "sms")] * 6 + [("call",), ("sms",)]))
    return Case(pack, authorised, tuple(draw(local_rules)), subject, at)


@st.composite
def requested_hours_cases(draw: st.DrawFn) -> Case:
    """Any pack, any instant, a debtor who asked for hours and has no history: the windows alone decide."""
    pack = draw(st.sampled_from(sorted(PHONES)))
    channel = draw(st.sampled_from([Channel.CALL, Channel.SMS]))
    subject = Subject(
        channel=channel,
        phone=draw(st.sampled_from(PHONES[pack])),
        account_ref="A-1",
        account_status="active",
        timezone=draw(st.none() | st.sampled_from(ZONES)),
        text="Reply STOP to opt out" if channel is Channel.SMS else None,
        requested_hours=draw(requests),
    )
    return Case(pack, ("call", "sms"), tuple(draw(local_rules)), subject, draw(instants))


@st.composite
def massachusetts_cases(draw: st.DrawFn) -> Case:
    """us-ma on a weekday at an open hour, a debtor with two numbers of any line type and contacts to both over
    40 days: only 940 CMR 7.04(1)(f)'s caps refuse, and the line types decide which cap counts what."""
    day = draw(st.dates(date(2025, 1, 1), date(2028, 12, 31)))
    at = datetime(day.year, day.month, day.day, draw(st.integers(9, 19)), draw(st.integers(0, 59)), tzinfo=NEW_YORK)
    phone, other = "+16175550123", "+16175550188"
    contacts = draw(
        st.lists(
            st.tuples(
                st.integers(0, 40 * 86400),
                st.sampled_from([Channel.CALL, Channel.SMS]),
                st.sampled_from([phone, other]),
            ),
            max_size=6,
        )
    )
    past = sorted(
        (Contact(at.timestamp() - ago, chan, number, True, False) for ago, chan, number in contacts),
        key=lambda c: -c.ts,
    )
    kinds = st.sampled_from(list(LineType))
    channel = draw(st.sampled_from([Channel.CALL, Channel.SMS]))
    subject = Subject(
        channel=channel,
        phone=draw(st.sampled_from([phone, other])),
        account_ref="A-1",
        account_status="active",
        history=History(tuple(past)),
        text="Reply STOP to opt out" if channel is Channel.SMS else None,
        line_types=draw(st.fixed_dictionaries({}, optional={phone: kinds, other: kinds})),
    )
    return Case("us-ma", ("call", "sms"), (), subject, at)


def engine_agrees_with_oracle(case: Case) -> None:
    decision = case.gate().evaluate(case.subject, case.at)
    assert decision.allowed is case.allowed_by_oracle(case.at), decision


def next_allowed_is_first(case: Case, fractions: list[float]) -> None:
    decision = case.gate().evaluate(case.subject, case.at)
    if decision.allowed or decision.next_allowed_at is None:
        return
    first = decision.next_allowed_at
    assert first > case.at
    assert case.gate().evaluate(case.subject, first).allowed
    assert case.allowed_by_oracle(first)
    assert not case.allowed_by_oracle(first - timedelta(seconds=1))
    for fraction in fractions:
        earlier = min(case.at + (first - case.at) * fraction, first - timedelta(microseconds=1))
        assert not case.allowed_by_oracle(earlier)


fractions = st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=6)


@settings(max_examples=400, deadline=None)
@given(cases())
def test_no_allowed_contact_breaks_a_rule_and_no_refusal_is_needless(case: Case) -> None:
    engine_agrees_with_oracle(case)


@settings(max_examples=300, deadline=None)
@given(cases(), fractions)
def test_next_allowed_time_is_allowed_and_nothing_earlier_is(case: Case, fractions: list[float]) -> None:
    next_allowed_is_first(case, fractions)


@settings(max_examples=300, deadline=None)
@given(requested_hours_cases(), fractions)
def test_requested_hours_narrow_every_pack_and_replace_only_where_the_law_says(
    case: Case, fractions: list[float]
) -> None:
    engine_agrees_with_oracle(case)
    next_allowed_is_first(case, fractions)


@settings(max_examples=300, deadline=None)
@given(massachusetts_cases(), fractions)
def test_massachusetts_caps_follow_the_line_type_and_unknown_gets_both(case: Case, fractions: list[float]) -> None:
    engine_agrees_with_oracle(case)
    next_allowed_is_first(case, fractions)
