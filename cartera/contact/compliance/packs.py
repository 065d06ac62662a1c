"""Law packs: collections law as data (``cartera/contact/compliance/packs/*.toml``), each rule citing its source.

A pack is a country's (or a state's) rules; a portfolio selects one, a site may add stricter local rules of the
same kinds (:data:`LocalRule`), never looser ones (:func:`looser_than`). The specs here are plain validated
data; :mod:`cartera.contact.compliance.rules` compiles them into the checks the engine runs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ChannelName = Literal["call", "sms"]
LineName = Literal["personal", "work"]
#: whose contacts a counting rule counts: the debt (the account, at any site), the number, or the debtor (every
#: account and number of theirs: :mod:`cartera.contact.compliance.debtor`)
Scope = Literal["account", "phone", "debtor"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_INTERVAL = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")

#: Seconds since local midnight: ``(start, end)``, end excluded.
Hours = tuple[int, int]


class PackError(ValueError):
    """A law pack file is invalid or missing (a bug in the repository, not in a site's config)."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Spec):
    """Where a rule comes from: the law, its article and date, and what was checked against its text."""

    law: str
    article: str
    date: str  #: the law's date (ISO) as enacted or published
    url: str | None = None
    note: str = ""


class _Rule(_Spec):
    id: str | None = None  #: required in packs; local rules get ``site.N``
    channels: tuple[ChannelName, ...] = ("call", "sms")  #: the contacts the rule applies to
    summary: str = ""
    source: Source | None = None


class WindowRule(_Rule):
    """Contact only inside these local hours of the debtor, per weekday; days not listed are closed."""

    kind: Literal["window"]
    hours: dict[str, str]  #: ``{"mon-fri" = "07:00-19:00", "sat" = "08:00-15:00"}``
    closed_on_holidays: bool = False
    #: what hours the debtor asked for do: ``narrow`` (always: contact within both), or ``replace`` the hours
    #: (not the holidays) when the request is recorded in an instrument, where the law says so (Ley 2300)
    debtor_request: Literal["narrow", "replace"] = "narrow"

    @field_validator("hours")
    @classmethod
    def _parse(cls, value: dict[str, str]) -> dict[str, str]:
        week_hours(value)
        return value

    @property
    def week(self) -> tuple[Hours | None, ...]:
        return week_hours(self.hours)


class FrequencyRule(_Rule):
    """At most ``max`` contacts over the last ``days`` local calendar days (today included)."""

    kind: Literal["frequency"]
    max: int = Field(ge=1)
    days: int = Field(ge=1, le=366)
    counts: tuple[ChannelName, ...] | None = None  #: contacts counted (default: ``channels``)
    scope: Scope = "account"
    after_conversation: bool = False  #: only once the debtor was reached in a conversation
    #: only contacts to numbers of these line types (and numbers of unknown type, which may be either)
    line_types: tuple[LineName, ...] | None = None

    @property
    def counted(self) -> tuple[ChannelName, ...]:
        return self.counts or self.channels


class QuietAfterConversationRule(_Rule):
    """No contact for ``days`` local calendar days after a conversation; its date is the first day."""

    kind: Literal["quiet_after_conversation"]
    days: int = Field(ge=1, le=366)
    scope: Scope = "account"


class OneChannelAfterConversationRule(_Rule):
    """Once the debtor was reached, contacts over the last ``days`` calendar days use one channel only."""

    kind: Literal["one_channel_after_conversation"]
    days: int = Field(ge=1, le=366)


class MinIntervalRule(_Rule):
    """At least ``hours`` between two contacts of the counted channels."""

    kind: Literal["min_interval"]
    hours: float = Field(gt=0, le=24 * 366)
    counts: tuple[ChannelName, ...] | None = None
    scope: Scope = "account"

    @property
    def counted(self) -> tuple[ChannelName, ...]:
        return self.counts or self.channels


class OptOutNoticeRule(_Rule):
    """Every text must tell the debtor how to opt out: it contains one of ``keywords`` (as a word)."""

    kind: Literal["opt_out_notice"]
    keywords: tuple[str, ...] = Field(min_length=1)


class AuthorisedChannelsRule(_Rule):
    """Only the channels the debtor authorised (the site or portfolio states them in ``sites.toml``)."""

    kind: Literal["authorised_channels"]


AnyRule = (
    WindowRule
    | FrequencyRule
    | QuietAfterConversationRule
    | OneChannelAfterConversationRule
    | MinIntervalRule
    | OptOutNoticeRule
    | AuthorisedChannelsRule
)
PackRule = Annotated[AnyRule, Field(discriminator="kind")]
#: The kinds a site may add in ``[[sites.X.compliance.rules]]``.
LocalRule = Annotated[
    WindowRule | FrequencyRule | QuietAfterConversationRule | MinIntervalRule,
    Field(discriminator="kind"),
]


class Holidays(_Spec):
    """Whose public holidays the pack's windows close on (the ``holidays`` package's calendars)."""

    country: str
    regional: bool = False  #: also the debtor's region's holidays (needs the region from the address)


class _PackFile(_Spec):
    id: str
    title: str
    country: str
    default: bool = False  #: the pack a portfolio of ``country`` gets when nothing else is said
    extends: str | None = None
    holidays: Holidays | None = None
    rules: tuple[PackRule, ...] = ()

    @model_validator(mode="after")
    def _cited(self) -> _PackFile:
        for rule in self.rules:
            if rule.id is None or rule.source is None or not rule.summary:
                raise ValueError(f"every rule needs an id, a summary and a source (rule {rule.id or rule.kind!r})")
        return self


@dataclass(frozen=True)
class LawPack:
    """A pack with what it extends merged in."""

    id: str
    title: str
    country: str
    default: bool
    holidays: Holidays | None
    rules: tuple[AnyRule, ...]

    @property
    def needs_authorised_channels(self) -> bool:
        return any(isinstance(rule, AuthorisedChannelsRule) for rule in self.rules)


def week_hours(hours: dict[str, str]) -> tuple[Hours | None, ...]:
    """``{"mon-fri": "07:00-19:00"}`` as seven entries (Monday first), ``None`` for a closed day."""
    week: list[Hours | None] = [None] * 7
    for days, interval in hours.items():
        for day in _days(days):
            if week[day] is not None:
                raise ValueError(f"{WEEKDAYS[day]} is given twice")
            week[day] = _interval(interval)
    return tuple(week)


def parse_hours(items: list[str]) -> dict[str, str]:
    """``["mon-fri=18:00-20:00", "sat=09:00-12:00"]`` (an operator's input) as window hours; ``ValueError``
    naming the item when one is not valid."""
    hours: dict[str, str] = {}
    for item in items:
        days, sep, interval = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not DAYS=HH:MM-HH:MM like 'mon-fri=18:00-20:00'")
        hours[days.strip()] = interval.strip()
    week_hours(hours)
    return hours


def _days(text: str) -> range:
    first, _, last = text.strip().partition("-")
    try:
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
    except ValueError:
        raise ValueError(f"{text!r} is not a day or a range of days like 'mon-fri'") from None
    if end < start:
        raise ValueError(f"{text!r}: the range must run from Monday towards Sunday")
    return range(start, end + 1)


def _interval(text: str) -> Hours:
    match = _INTERVAL.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not hours like '07:00-19:00'")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
    if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or end > 86400 or start >= end:
        raise ValueError(f"{text!r}: the start must be before the end, within one day")
    return start, end


def _files() -> Iterator[tuple[str, bytes]]:
    folder = resources.files("cartera.contact.compliance") / "packs"
    for entry in folder.iterdir():
        if entry.name.endswith(".toml"):
            yield entry.name, entry.read_bytes()


@cache
def _pack_files() -> dict[str, _PackFile]:
    packs: dict[str, _PackFile] = {}
    for name, data in _files():
        try:
            pack = _PackFile.model_validate(tomllib.loads(data.decode("utf-8")))
        except (tomllib.TOMLDecodeError, ValidationError, ValueError) as exc:
            raise PackError(f"law pack {name}: {exc}") from exc
        if pack.id in packs:
            raise PackError(f"law pack {name}: id {pack.id!r} is used twice")
        packs[pack.id] = pack
    return packs


def pack_ids() -> list[str]:
    return sorted(_pack_files())


@cache
def load_pack(pack_id: str) -> LawPack:
    files = _pack_files()
    if pack_id not in files:
        raise PackError(f"unknown law pack {pack_id!r} (known: {', '.join(pack_ids())})")
    spec = files[pack_id]
    base = load_pack(spec.extends) if spec.extends else None
    rules = (base.rules if base else ()) + spec.rules
    ids = [rule.id for rule in rules]
    if len(set(ids)) != len(ids):
        raise PackError(f"law pack {pack_id!r}: rule ids repeat")
    holidays = spec.holidays or (base.holidays if base else None)
    return LawPack(spec.id, spec.title, spec.country, spec.default, holidays, rules)


def default_pack(country: str) -> str | None:
    """The pack portfolios of ``country`` get unless a site says otherwise."""
    for pack in _pack_files().values():
        if pack.country == country and pack.default:
            return pack.id
    return None


def looser_than(local: AnyRule, pack: LawPack) -> str | None:
    """Why the site rule ``local`` would allow what a rule of ``pack`` forbids (``None``: it is not looser).

    A site rule only ever adds to the law (the engine checks both), so a looser one is a misunderstanding of
    the law that config loading refuses: a window opening outside the law's hours, or a cap, quiet period or
    interval on the same contacts that is more generous than the law's, or a window the debtor's request could
    replace (only the law says when a debtor may widen its hours).
    """
    if isinstance(local, WindowRule) and local.debtor_request != "narrow":
        return f"debtor_request = {local.debtor_request!r}: only a law pack may let the debtor's request replace hours"
    for rule in pack.rules:
        if not set(local.channels) & set(rule.channels):
            continue
        problem = _compare(local, rule)
        if problem:
            source = rule.source
            cited = f" ({source.law}, {source.article})" if source else ""
            return f"{problem} than {pack.id} rule {rule.id}{cited}: a site may add stricter rules, never looser"
    return None


def _compare(local: AnyRule, rule: AnyRule) -> str | None:
    if isinstance(local, WindowRule) and isinstance(rule, WindowRule):
        return wider_hours(local.week, rule.week)
    if isinstance(local, FrequencyRule) and isinstance(rule, FrequencyRule):
        same = (local.days, set(local.counted), local.scope, local.line_types) == (
            rule.days,
            set(rule.counted),
            rule.scope,
            rule.line_types,
        )
        if same and local.max > rule.max and not (rule.after_conversation and not local.after_conversation):
            return f"max {local.max} contacts in {local.days} days is looser (the law: {rule.max})"
        return None
    if isinstance(local, QuietAfterConversationRule) and isinstance(rule, QuietAfterConversationRule):
        return f"a {local.days}-day quiet period is looser (the law: {rule.days})" if local.days < rule.days else None
    if (
        isinstance(local, MinIntervalRule)
        and isinstance(rule, MinIntervalRule)
        and set(local.counted) == set(rule.counted)
        and local.hours < rule.hours
    ):
        return f"an interval of {local.hours:g} h is looser (the law: {rule.hours:g} h)"
    return None


def wider_hours(mine: tuple[Hours | None, ...], law: tuple[Hours | None, ...]) -> str | None:
    """The first weekday on which ``mine`` opens outside ``law`` (``None``: never)."""
    for day, (ours, theirs) in enumerate(zip(mine, law, strict=True)):
        if ours is not None and (theirs is None or ours[0] < theirs[0] or ours[1] > theirs[1]):
            allowed = _text(theirs) if theirs else "closed"
            return f"hours on {WEEKDAYS[day]} {_text(ours)} are looser (the law: {allowed})"
    return None


def _text(hours: Hours) -> str:
    start, end = hours
    return f"{start // 3600:02d}:{start % 3600 // 60:02d}-{end // 3600:02d}:{end % 3600 // 60:02d}"
