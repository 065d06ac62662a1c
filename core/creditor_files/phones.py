"""E.164 normalisation at bulk-import speed: a fast path for plain national numbers, a cache for the rest.

The fast path only answers when phonenumbers would give the same answer: the input is digits and
separators (after ``+`` and the default country's code, if written so), does not start with a national or
international prefix (which ``parse`` would strip), and its digits fully match the country's mobile or
fixed-line pattern at a possible length (so ``is_valid_number`` holds and the E.164 form is the country code
followed by these digits). Everything else goes through
:func:`core.phones.normalize`, memoized per distinct input.
"""

from __future__ import annotations

import re

from phonenumbers import PhoneMetadata

from core.phones import normalize

_SEPARATORS = str.maketrans("", "", " -.()/")
CACHE_LIMIT = 200_000


class PhoneNormalizer:
    """``normalize(raw, country)`` for one default country, fast. Raises :class:`core.phones.InvalidPhone`."""

    def __init__(self, country: str) -> None:
        self.country = country
        meta = PhoneMetadata.metadata_for_region(country)
        self._prefix = f"+{meta.country_code}" if meta is not None else "+"
        self._shapes: dict[int, re.Pattern[str]] = {}
        self._leading: re.Pattern[str] | None = None
        if meta is not None:
            by_length: dict[int, list[str]] = {}
            for desc in (meta.mobile, meta.fixed_line):
                if desc is not None and desc.national_number_pattern:
                    for length in desc.possible_length:
                        by_length.setdefault(length, []).append(desc.national_number_pattern)
            self._shapes = {size: _any_of(patterns) for size, patterns in by_length.items()}
            prefixes = [meta.national_prefix_for_parsing, meta.national_prefix, meta.international_prefix]
            self._leading = _any_of([prefix for prefix in prefixes if prefix]) if any(prefixes) else None
        self._cache: dict[str, str] = {}

    def __call__(self, raw: str) -> str:
        digits = raw.translate(_SEPARATORS)
        if digits.startswith(self._prefix):  # written internationally, in the default country
            digits = digits[len(self._prefix) :]
        if self._fast(digits):
            return self._prefix + digits
        known = self._cache.get(raw)
        if known is not None:
            return known
        e164 = normalize(raw, self.country)
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[raw] = e164
        return e164

    def _fast(self, digits: str) -> bool:
        if not (digits.isascii() and digits.isdigit()):
            return False
        if self._leading is not None and self._leading.match(digits):
            return False
        shape = self._shapes.get(len(digits))
        return shape is not None and shape.fullmatch(digits) is not None


def _any_of(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns))
