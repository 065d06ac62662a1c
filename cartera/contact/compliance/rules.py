"""The checks the engine runs, compiled from pack and site rule specs.

Each check answers one question about a :class:`Subject` at a :class:`Moment`: ``None`` when it allows the
contact, else a :class:`Finding` with the reason and the first instant it would allow it (``None``: no time
will). Instants are POSIX seconds; the debtor's local days come from :mod:`cartera.contact.compliance.calendar`.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

from cartera.contact.compliance import calendar, packs
from cartera.contact.compliance.model import LineType, Purpose, Reason, Subject
from cartera.core.models import Channel

_SEARCH_DAYS = 400  # a window closed for longer than this never opens


class Finding(NamedTuple):
    """``next_ts``: the instant the check lifts (``None``: never). Windows, which open and close again, say
    only "not now" (the instant asked about); the policy searches their openings (:meth:`Window.open_from`)."""

    reason: Reason
    next_ts: float | None


class Moment:
    """One instant as the debtor's zones see it: ``days`` holds ``(zone, local day ordinal)`` per distinct
    UTC offset now (zones that agree on the local time need no second look at it); ``all_days`` every zone's,
    for counting back over days when their offsets may have differed."""

    __slots__ = ("all_days", "days", "ts", "zones")

    def __init__(self, ts: float, zones: tuple[ZoneInfo, ...]) -> None:
        self.ts = ts
        self.zones = zones
        if len(zones) == 1:
            self.days: tuple[tuple[ZoneInfo, int], ...] = ((zones[0], calendar.local_ordinal(ts, zones[0])),)
            self.all_days: tuple[tuple[ZoneInfo, int], ...] = self.days
            return
        seen: dict[object, tuple[ZoneInfo, int]] = {}
        every: list[tuple[ZoneInfo, int]] = []
        for zone in zones:
            local = datetime.fromtimestamp(ts, zone)
            every.append((zone, local.toordinal()))
            seen.setdefault(local.utcoffset(), every[-1])
        self.days = tuple(seen.values())
        self.all_days = tuple(every)

    def window_start(self, days: int) -> float:
        """The first instant of the last ``days`` local calendar days (today included), earliest over zones."""
        if len(self.all_days) == 1:
            zone, ordinal = self.all_days[0]
            return calendar.day_start(zone, ordinal - days + 1)
        return min(calendar.day_start(zone, ordinal - days + 1) for zone, ordinal in self.all_days)

    def days_after(self, ts: float, days: int) -> float:
        """The start of the ``days``-th local day after the one of ``ts``, latest over zones."""
        return max(calendar.day_start(zone, calendar.local_ordinal(ts, zone) + days) for zone in self.zones)


class Check(Protocol):
    """A policy asks a check only about contacts on its ``channels``."""

    id: str
    channels: frozenset[Channel]

    def check(self, subject: Subject, moment: Moment) -> Finding | None: ...


ALL_CHANNELS = frozenset(Channel)


def _channels(names: tuple[packs.ChannelName, ...]) -> frozenset[Channel]:
    return frozenset(Channel(name) for name in names)


class AccountStatus:
    """No contact about an account the creditor withdrew or that was paid off, or that an agent's disposition
    stopped (the debtor asked to cease contact, disputes the debt, or died)."""

    id = "core.account_status"
    channels = ALL_CHANNELS
    _REASONS = {
        "withdrawn": Reason.ACCOUNT_WITHDRAWN,
        "paid": Reason.ACCOUNT_PAID,
        "ceased": Reason.CEASE_CONTACT_REQUESTED,
        "disputed": Reason.ACCOUNT_DISPUTED,
        "deceased": Reason.DEBTOR_DECEASED,
    }

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        status = subject.account_status
        if status is None or status == "active":
            return None
        return Finding(self._REASONS.get(status, Reason.ACCOUNT_NOT_ACTIVE), None)


class DebtorOptOut:
    """The debtor opted out of this channel on this number."""

    id = "core.debtor_opt_out"
    channels = ALL_CHANNELS

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        return Finding(Reason.DEBTOR_OPT_OUT, None) if subject.channel in subject.opted_out else None


class RestAfterAbandoned:
    """No call to a number for ``hours`` after a call to it was abandoned (answered by a person, no agent in time):
    the debtor is not called back by a machine that just hung up on them (Ofcom: 72 h)."""

    id = "core.rest_after_abandoned"
    channels = frozenset({Channel.CALL})

    def __init__(self, hours: float) -> None:
        self.seconds = hours * 3600

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        since, phone = moment.ts - self.seconds, subject.phone
        for ts, channel, number, _, _, _, abandoned in subject.history.contacts:
            if ts <= since:
                break
            if abandoned and number == phone and channel is Channel.CALL:
                return Finding(Reason.ABANDONED_RECENTLY, ts + self.seconds)
        return None


class PromiseMoratorium:
    """No collection contact until the promised date has passed in the debtor's local time."""

    id = "core.promise_to_pay"
    channels = ALL_CHANNELS

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        due = subject.history.promise_due
        if due is None or subject.purpose is not Purpose.COLLECTION:
            return None
        last = due.toordinal()
        if all(ordinal > last for _, ordinal in moment.days):
            return None
        return Finding(Reason.PROMISE_TO_PAY_PENDING, max(calendar.day_start(z, last + 1) for z in moment.zones))


class Authorised:
    """Only the channels the debtor authorised (as the site or portfolio states them)."""

    channels = ALL_CHANNELS

    def __init__(self, rule_id: str, allowed: frozenset[Channel]) -> None:
        self.id = rule_id
        self.allowed = allowed

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        return None if subject.channel in self.allowed else Finding(Reason.CHANNEL_NOT_AUTHORISED, None)


#: ``(open, close, why closed)`` of a local day; a closed day has ``open == close``.
_Day = tuple[float, float, Reason | None]
#: A week of local hours (Monday first), the cache of its days, and the reason a closed hour gives.
_Hours = tuple[tuple[packs.Hours | None, ...], dict[tuple[ZoneInfo, int, str | None], _Day], Reason]
_CACHE_LIMIT = 100_000


class Window:
    """Open hours per local weekday, closed on the pack's public holidays when the law says so.

    The debtor's requested hours replace the hours (not the holidays) of a law's window whose law says so
    (``debtor_request = "replace"``), when the request is recorded in an instrument; otherwise they only narrow,
    through :class:`RequestedHours`."""

    def __init__(
        self, rule_id: str, spec: packs.WindowRule, holidays: packs.Holidays | None, *, from_law: bool = True
    ) -> None:
        self.id = rule_id
        self.channels = _channels(spec.channels)
        self.holidays = holidays if spec.closed_on_holidays else None
        self.regional = self.holidays is not None and self.holidays.regional
        self.replaceable = from_law and spec.debtor_request == "replace"
        self._cache: dict[tuple[ZoneInfo, int, str | None], _Day] = {}
        self._law: _Hours | None = (spec.week, self._cache, Reason.OUTSIDE_CONTACT_WINDOW)
        self._requested: dict[tuple[packs.Hours | None, ...], _Hours] = {}

    def _hours(self, subject: Subject) -> _Hours | None:
        """The hours ``subject`` is held to (``None``: no hours apply)."""
        request = subject.requested_hours
        if request is None or not (self.replaceable and request.instrument):
            return self._law
        return self._for(request.week)

    def _for(self, week: tuple[packs.Hours | None, ...]) -> _Hours:
        hours = self._requested.get(week)
        if hours is None:
            if len(self._requested) > 1000:
                self._requested.clear()
            hours = self._requested[week] = (week, {}, Reason.OUTSIDE_REQUESTED_HOURS)
        return hours

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        hours = self._law if subject.requested_hours is None else self._hours(subject)
        if hours is None:
            return None
        week, cache, reason = hours
        region = self._subdivision(subject) if self.regional else None
        ts = moment.ts
        for zone, ordinal in moment.days:
            day = cache.get((zone, ordinal, region)) or self._day(week, cache, zone, ordinal, region)
            if not day[0] <= ts < day[1]:
                return Finding(day[2] or reason, ts)
        return None

    def _subdivision(self, subject: Subject) -> str | None:
        if self.holidays is None or subject.region is None:
            return None
        country, _, code = subject.region.partition("-")
        return code if country == self.holidays.country and code in calendar.subdivisions(country) else None

    def _day(
        self,
        week: tuple[packs.Hours | None, ...],
        cache: dict[tuple[ZoneInfo, int, str | None], _Day],
        zone: ZoneInfo,
        ordinal: int,
        region: str | None,
    ) -> _Day:
        key = (zone, ordinal, region)
        day = cache.get(key)
        if day is None:
            if len(cache) > _CACHE_LIMIT:
                cache.clear()
            day = cache[key] = self._compute(week, zone, ordinal, region)
        return day

    def _compute(self, week: tuple[packs.Hours | None, ...], zone: ZoneInfo, ordinal: int, region: str | None) -> _Day:
        local = date.fromordinal(ordinal)
        hours = week[local.weekday()]
        if self.holidays and local in calendar.holiday_dates(self.holidays.country, region, local.year):
            return 0.0, 0.0, Reason.PUBLIC_HOLIDAY
        if hours is None:
            return 0.0, 0.0, None
        return calendar.at_local(zone, ordinal, hours[0]), calendar.at_local(zone, ordinal, hours[1]), None

    def open_from(self, subject: Subject, ts: float, zones: tuple[ZoneInfo, ...]) -> float | None:
        """The first instant from ``ts`` on when the window is open in every zone (``None``: never)."""
        hours = self._hours(subject)
        if hours is None:
            return ts
        region = self._subdivision(subject) if self.regional else None
        for _ in range(_SEARCH_DAYS):
            moment = Moment(ts, zones)
            later = self._next_open(hours, moment, region)
            # one zone: its opening is open. Zones that share an offset now may not at ``later`` (a DST change
            # between), so several zones are read again until they agree.
            if later is None or later == ts or len(zones) == 1:
                return later
            ts = later
        return None

    def _next_open(self, hours: _Hours, moment: Moment, region: str | None) -> float | None:
        """The latest over the zones of each one's next opening (open in all of them only if they agree)."""
        week, cache, _ = hours
        latest = ts = moment.ts
        for zone, ordinal in moment.days:
            for day in range(ordinal, ordinal + _SEARCH_DAYS):
                start, end, closed = cache.get((zone, day, region)) or self._day(week, cache, zone, day, region)
                if closed is None and ts < end:
                    latest = max(latest, start)
                    break
            else:
                return None
        return latest


class RequestedHours(Window):
    """The hours the debtor asked for narrow every contact, except on the channels where the law's window lets a
    request recorded in an instrument replace its hours (there the law's window applies them instead)."""

    id = "debtor.requested_hours"

    def __init__(self, replaced_on: frozenset[Channel]) -> None:
        every_hour = packs.WindowRule(kind="window", hours={"mon-sun": "00:00-24:00"})  # its channels: all
        super().__init__(self.id, every_hour, None, from_law=False)
        self._law = None  # no request on file: no hours apply
        self.replaced_on = replaced_on

    def _hours(self, subject: Subject) -> _Hours | None:
        request = subject.requested_hours
        if request is None or (request.instrument and subject.channel in self.replaced_on):
            return None
        return self._for(request.week)


class _Counting:
    """Shared by the rules that count stored contacts of the debtor, keyed as the law counts: the debt
    (``account``: the account, at any site; without an account, the number), the ``phone`` number, or the
    ``debtor`` (every contact the history holds: :mod:`.debtor`).

    Each rule scans ``history.contacts`` in its own inlined loop: a shared generator costs ~10% of the
    gate's rate (bench/bench_gate.py), and this is its hot path."""

    def __init__(self, scope: str) -> None:
        self.by_account = scope == "account"
        self.every = scope == "debtor"  #: every contact of the history is the debtor's

    def _mine(self, subject: Subject) -> bool:
        """Whether contacts are matched by account (else by phone number)."""
        return self.by_account and subject.account_ref is not None


class Frequency(_Counting):
    """At most ``max`` counted contacts over the last ``days`` local days."""

    def __init__(self, rule_id: str, spec: packs.FrequencyRule) -> None:
        super().__init__(spec.scope)
        self.id = rule_id
        self.channels = _channels(spec.channels)
        self.counts = _channels(spec.counted)
        self.max = spec.max
        self.days = spec.days
        self.after_conversation = spec.after_conversation
        #: line types the rule is about; a number of unknown type may be any, so it is always one of them
        self.lines = (
            frozenset(LineType(name) for name in spec.line_types) | {LineType.UNKNOWN} if spec.line_types else None
        )

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        history = subject.history
        if self.after_conversation and history.last_conversation is None:
            return None
        lines, known = self.lines, subject.line_types
        if lines is not None and known.get(subject.phone, LineType.UNKNOWN) not in lines:
            return None
        start = moment.window_start(self.days)
        every, by_account, phone, counts, seen = self.every, self._mine(subject), subject.phone, self.counts, 0
        for ts, channel, number, same_account, _, _, _ in history.contacts:
            if ts < start:
                break
            if (
                channel in counts
                and (every or (same_account if by_account else number == phone))
                and (lines is None or known.get(number, LineType.UNKNOWN) in lines)
            ):
                seen += 1
                if seen >= self.max:  # allowed again once this one leaves the window
                    return Finding(Reason.FREQUENCY_CAP, moment.days_after(ts, self.days))
        return None


class QuietAfterConversation(_Counting):
    """No contact on the ``days`` local days that start with the day of the latest conversation."""

    def __init__(self, rule_id: str, spec: packs.QuietAfterConversationRule) -> None:
        super().__init__(spec.scope)
        self.id = rule_id
        self.channels = _channels(spec.channels)
        self.days = spec.days

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        if subject.history.last_conversation is None:
            return None
        start = moment.window_start(self.days)
        every, by_account, phone = self.every, self._mine(subject), subject.phone
        for ts, _, number, same_account, conversation, _, _ in subject.history.contacts:
            if ts < start:
                break
            if conversation and (every or (same_account if by_account else number == phone)):
                return Finding(Reason.QUIET_AFTER_CONVERSATION, moment.days_after(ts, self.days))
        return None


class OneChannelAfterConversation(_Counting):
    """Once the debtor was reached, all contacts of the last ``days`` local days go through one channel."""

    def __init__(self, rule_id: str, spec: packs.OneChannelAfterConversationRule) -> None:
        super().__init__("debtor")  # Ley 2300: the consumer is not contacted through several channels a week
        self.id = rule_id
        self.channels = _channels(spec.channels)
        self.days = spec.days

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        if subject.history.last_conversation is None:
            return None
        start = moment.window_start(self.days)
        every, by_account, phone, wanted = self.every, self._mine(subject), subject.phone, subject.channel
        for ts, channel, number, same_account, _, _, _ in subject.history.contacts:
            if ts < start:
                break
            if channel is not wanted and (every or (same_account if by_account else number == phone)):
                return Finding(Reason.ONE_CHANNEL_AFTER_CONTACT, moment.days_after(ts, self.days))
        return None


class MinInterval(_Counting):
    """At least ``hours`` between two counted contacts."""

    def __init__(self, rule_id: str, spec: packs.MinIntervalRule) -> None:
        super().__init__(spec.scope)
        self.id = rule_id
        self.channels = _channels(spec.channels)
        self.counts = _channels(spec.counted)
        self.seconds = spec.hours * 3600

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        since = moment.ts - self.seconds
        every, by_account, phone = self.every, self._mine(subject), subject.phone
        for ts, channel, number, same_account, _, _, _ in subject.history.contacts:
            if ts <= since:
                break
            if channel in self.counts and (every or (same_account if by_account else number == phone)):
                return Finding(Reason.MIN_INTERVAL, ts + self.seconds)
        return None


class OptOutNotice:
    """A text must say how to opt out (one of the pack's keywords, as a word, any case)."""

    def __init__(self, rule_id: str, spec: packs.OptOutNoticeRule) -> None:
        self.id = rule_id
        self.channels = _channels(spec.channels)
        self.pattern = re.compile(r"\b(?:" + "|".join(re.escape(k) for k in spec.keywords) + r")\b", re.IGNORECASE)

    def check(self, subject: Subject, moment: Moment) -> Finding | None:
        if subject.channel is not Channel.SMS or subject.text is None or self.pattern.search(subject.text):
            return None
        return Finding(Reason.OPT_OUT_NOTICE_MISSING, None)


def compile_rule(
    rule_id: str,
    spec: packs.AnyRule,
    holidays: packs.Holidays | None,
    authorised: frozenset[Channel],
    *,
    from_law: bool = True,
) -> Check:
    """The check for ``spec``; ``authorised`` is what the site states for an ``authorised_channels`` rule; a site's
    window (not ``from_law``) is never replaced by the debtor's request."""
    if isinstance(spec, packs.WindowRule):
        return Window(rule_id, spec, holidays, from_law=from_law)
    if isinstance(spec, packs.FrequencyRule):
        return Frequency(rule_id, spec)
    if isinstance(spec, packs.QuietAfterConversationRule):
        return QuietAfterConversation(rule_id, spec)
    if isinstance(spec, packs.OneChannelAfterConversationRule):
        return OneChannelAfterConversation(rule_id, spec)
    if isinstance(spec, packs.MinIntervalRule):
        return MinInterval(rule_id, spec)
    if isinstance(spec, packs.OptOutNoticeRule):
        return OptOutNotice(rule_id, spec)
    return Authorised(rule_id, authorised)
