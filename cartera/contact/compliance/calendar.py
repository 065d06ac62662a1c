"""Local days and public holidays, cached: the engine asks the same few questions millions of times.

Instants are POSIX seconds (``float``); a local day is a proleptic ordinal (``date.toordinal()``) in a zone.
DST is zoneinfo's: a day's start is its first instant even when midnight does not exist (Chile springs
forward at 24:00).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from functools import lru_cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays
import phonenumbers

_DAY_STARTS: dict[tuple[ZoneInfo, int], float] = {}
_CACHE_LIMIT = 200_000


def day_start(zone: ZoneInfo, ordinal: int) -> float:
    """The first instant of local day ``ordinal`` in ``zone``."""
    key = (zone, ordinal)
    start = _DAY_STARTS.get(key)
    if start is None:
        if len(_DAY_STARTS) > _CACHE_LIMIT:
            _DAY_STARTS.clear()
        start = datetime.combine(date.fromordinal(ordinal), time.min, zone).timestamp()
        _DAY_STARTS[key] = start
    return start


def at_local(zone: ZoneInfo, ordinal: int, seconds: int) -> float:
    """The instant of ``seconds`` after local midnight on day ``ordinal`` (wall-clock time, as laws count it)."""
    hour, rest = divmod(seconds, 3600)
    if hour >= 24:
        return day_start(zone, ordinal + 1)
    local = datetime.combine(date.fromordinal(ordinal), time(hour, rest // 60, rest % 60), zone)
    return local.timestamp()


def local_ordinal(ts: float, zone: ZoneInfo) -> int:
    """The local day of ``ts`` in ``zone``: plain arithmetic where the zone keeps one offset (most of Latin
    America), zoneinfo elsewhere."""
    try:
        offset = _FIXED[zone]
    except KeyError:
        offset = _FIXED[zone] = _fixed_offset(zone)
    if offset is not None and _FIXED_FROM <= ts < _FIXED_UNTIL:
        return int((ts + offset) // 86400) + _EPOCH
    return datetime.fromtimestamp(ts, zone).toordinal()


_EPOCH = date(1970, 1, 1).toordinal()
_FIXED_FROM = datetime(2023, 1, 1, tzinfo=UTC).timestamp()
_FIXED_UNTIL = datetime(2040, 1, 1, tzinfo=UTC).timestamp()
_FIXED: dict[ZoneInfo, float | None] = {}


def _fixed_offset(zone: ZoneInfo) -> float | None:
    """The zone's UTC offset in seconds if it is the same every week from 2023 to 2039 (no zone changes its
    offset for less than a week), else ``None``."""
    step = 7 * 86400
    offsets = {datetime.fromtimestamp(ts, zone).utcoffset() for ts in range(int(_FIXED_FROM), int(_FIXED_UNTIL), step)}
    if len(offsets) != 1:
        return None
    (offset,) = offsets
    return offset.total_seconds() if offset is not None else None


def instant(ts: float, zone: ZoneInfo | None = None) -> datetime:
    return datetime.fromtimestamp(ts, zone or UTC)


@lru_cache(maxsize=4096)
def holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    """Public holidays of ``country`` (and of its ``subdivision``, when given) in ``year``."""
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))


def check_region(text: str | None) -> str | None:
    """``text`` as an ISO 3166-2 code like ``CL-AP`` (upper case), or ``None``; ``ValueError`` when it is not one."""
    if text is None or not text.strip():
        return None
    code = text.strip().upper()
    country, _, subdivision = code.partition("-")
    if country not in phonenumbers.SUPPORTED_REGIONS or not subdivision.isalnum() or len(subdivision) > 3:
        raise ValueError(f"region {text!r} is not an ISO 3166-2 code like 'CL-AP'")
    known = subdivisions(country)
    if known and subdivision not in known:
        raise ValueError(f"region {text!r} is not a subdivision of {country} (known: {', '.join(known)})")
    return code


def check_zone(text: str | None) -> str | None:
    """``text`` as an IANA time zone name, or ``None``; ``ValueError`` when zoneinfo does not know it."""
    if text is None or not text.strip():
        return None
    try:
        return ZoneInfo(text.strip()).key
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        raise ValueError(f"time zone {text!r} is not an IANA name like 'America/Tijuana'") from None


def check_address_zone(zone: str | None, countries: tuple[str, ...], region: str | None = None) -> str | None:
    """``zone`` (checked by :func:`check_zone`) when it is plausible for a debtor of ``countries`` (the
    portfolio's country, its law pack's): one of their zones in IANA's country tables, and of ``region``'s
    country when a region is given. ``ValueError`` naming what it is not: ``posixrules``, ``localtime``,
    ``Factory``, ``Asia/Tokyo`` for a Colombian portfolio..."""
    if zone is None:
        return None
    wanted = sorted(set(countries))
    if not any(zone in country_zones(country) for country in wanted):
        named = "country " + wanted[0] if len(wanted) == 1 else "countries " + ", ".join(wanted)
        known = sorted(set().union(*(country_zones(country) for country in wanted)))
        raise ValueError(f"time zone {zone!r} is not a zone of the portfolio's {named} ({_listed(known)})")
    if region is not None:
        country = region.partition("-")[0]
        if zone not in country_zones(country):
            raise ValueError(
                f"time zone {zone!r} is not a zone of region {region}'s country {country} "
                f"({_listed(sorted(country_zones(country)))})"
            )
    return zone


def _listed(zones: list[str]) -> str:
    if not zones:
        return "IANA lists no zone for it"
    shown = ", ".join(zones[:8])
    return f"IANA's zones: {shown}" + (f", ... ({len(zones)} in all)" if len(zones) > 8 else "")


def country_zones(country: str | None) -> frozenset[str]:
    """The zones IANA's ``zone1970.tab`` and ``zone.tab`` (the ``tzdata`` package's) give ``country`` (ISO 3166
    alpha-2), those zoneinfo can load; empty for ``None`` or a code they do not list."""
    return _country_zones().get(country or "", frozenset())


@lru_cache(maxsize=1)
def _country_zones() -> dict[str, frozenset[str]]:
    loadable = available_timezones()
    found: dict[str, set[str]] = {}
    for table in ("zone1970.tab", "zone.tab"):
        text = resources.files("tzdata").joinpath("zoneinfo", table).read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            codes, _coordinates, zone = line.split("\t")[:3]
            if zone in loadable:
                for code in codes.split(","):
                    found.setdefault(code, set()).add(zone)
    return {code: frozenset(zones) for code, zones in found.items()}


@lru_cache(maxsize=256)
def subdivisions(country: str) -> tuple[str, ...]:
    """The subdivision codes the ``holidays`` package knows for ``country`` (``()`` when it has none)."""
    try:
        return tuple(holidays.country_holidays(country).subdivisions)
    except NotImplementedError:
        return ()
