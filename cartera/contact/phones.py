"""Phone numbers: E.164 normalisation and the time zones a number may be in (phonenumbers' data)."""

from __future__ import annotations

from contextlib import suppress
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as number_zones


class InvalidPhone(ValueError):
    pass


def normalize(raw: str, default_country: str, *, or_international: bool = False) -> str:
    """``raw`` as E.164 (``+573001234567``); national numbers are read in ``default_country``. With
    ``or_international``, digits alone that are no valid number of ``default_country`` are tried as an
    international number (``525512345678`` is ``+525512345678``) before being given up: an SMSC gives a sender
    so (SMPP TON 0 "unknown", Kannel's ``%p`` as received), and a foreign debtor's BAJA must reach its number (round
    21 C-F11). Not for a creditor's or an operator's number, where such digits are more likely a typo."""
    text = raw.strip()
    if not text:
        raise InvalidPhone("empty phone number")
    try:
        number = phonenumbers.parse(text, default_country)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"{raw!r} is not a phone number ({exc._msg})") from None
    if not phonenumbers.is_valid_number(number):
        if or_international and text.isascii() and text.isdigit():
            with suppress(InvalidPhone):
                return normalize("+" + text, default_country)
        raise InvalidPhone(f"{raw!r} is not a valid number for {default_country}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=65536)
def time_zones(e164: str) -> tuple[ZoneInfo, ...]:
    """Every zone the number may ring in; empty when phonenumbers cannot tell."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return ()
    names = number_zones.time_zones_for_number(number)
    return tuple(ZoneInfo(name) for name in names if name != "Etc/Unknown")


@lru_cache(maxsize=65536)
def number_country(e164: str) -> str | None:
    """The ISO 3166 country of the number (``CO``); ``None`` when it has none (``+800``) or cannot be read."""
    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return None
    return region if region and region not in (phonenumbers.UNKNOWN_REGION, "001") else None
