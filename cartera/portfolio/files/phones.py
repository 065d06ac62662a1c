"""E.164 normalisation at bulk-import speed: a fast path for plain national numbers, a cache for the rest; a number
written as a float (``3001234567.0``) is refused, never read with its ``0`` as a digit.

The fast path only answers when phonenumbers would give the same answer: the input is digits and
separators (after ``+`` and the default country's code, if written so), does not start with a national or
international prefix or the country code (which ``parse`` may strip), and its digits fully match the
country's mobile or fixed-line pattern at a possible length (so ``is_valid_number`` holds and the E.164 form
is the country code followed by these digits). Everything else goes through :func:`cartera.contact.phones.normalize`,
memoized per distinct input.
"""

from __future__ import annotations

import re

from phonenumbers import PhoneMetadata

from cartera.contact.phones import InvalidPhone, normalize

_SEPARATORS = str.maketrans("", "", " -.()/")
#: A number as a spreadsheet or pandas writes a float column: ``3001234567.0``. Its ``.`` is no separator: read so,
#: ``300123456.0`` (a digit short) would be ``3001234560``, another person's number.
_FLOAT_TEXT = re.compile(r"\s*\+?[0-9]+\.0+\s*")
CACHE_LIMIT = 200_000


class PhoneNormalizer:
    """``normalize(raw, country)`` for one default country, fast; raises :class:`InvalidPhone`."""

    def __init__(self, country: str) -> None:
        self.country = country
        meta = PhoneMetadata.metadata_for_region(country)
        self._prefix = f"+{meta.country_code}" if meta is not None else "+"
        #: Per possible length: "no leading prefix, then the mobile or fixed-line pattern", ASCII digits only
        #: (the patterns are made of digits and ``\d``, so a match means plain ASCII digits).
        self._shapes: dict[int, re.Pattern[str]] = {}
        if meta is not None:
            by_length: dict[int, list[str]] = {}
            for desc in (meta.mobile, meta.fixed_line):
                if desc is not None and desc.national_number_pattern:
                    for length in desc.possible_length:
                        by_length.setdefault(length, []).append(desc.national_number_pattern)
            # parse also strips a leading country code when what follows is a valid number (49 608... in DE)
            prefixes = [
                meta.national_prefix_for_parsing,
                meta.national_prefix,
                meta.international_prefix,
                str(meta.country_code),
            ]
            leading = "|".join(f"(?:{prefix})" for prefix in prefixes if prefix)
            guard = f"(?!{leading})" if leading else ""
            self._shapes = {
                size: re.compile(guard + "(?:" + "|".join(f"(?:{p})" for p in patterns) + ")", re.ASCII)
                for size, patterns in by_length.items()
            }
        self._cache: dict[str, str] = {}

    def __call__(self, raw: str) -> str:
        if raw.isdigit():
            digits = raw
        elif _FLOAT_TEXT.fullmatch(raw):
            raise InvalidPhone(f"{raw!r} is written as a floating-point number: send the phone as text, without '.0'")
        else:
            digits = raw.translate(_SEPARATORS)
        if digits.startswith(self._prefix):  # written internationally, in the default country
            digits = digits[len(self._prefix) :]
        shape = self._shapes.get(len(digits))
        if shape is not None and shape.fullmatch(digits) is not None:
            return self._prefix + digits
        known = self._cache.get(raw)
        if known is not None:
            return known
        e164 = normalize(raw, self.country)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[raw] = e164
        return e164
