"""Cell values as creditors write them: headers, amounts with either decimal mark, dates in several formats."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

from cartera.core.models import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS

_AMOUNT = re.compile(r"[+-]?\d+(?:[.,]\d+)*")
_PLAIN = re.compile(r"[+-]?\d+")
#: Grouped thousands and a decimal part, each with its own mark: read the same whatever the setting allows. A
#: first group starting with 0 is never one of thousands (``0.004`` is 4 thousandths, not 4).
_COMMA_DECIMAL = re.compile(r"([1-9]\d{0,2}(?:\.\d{3})+),(\d+)")
_POINT_DECIMAL = re.compile(r"([1-9]\d{0,2}(?:,\d{3})+)\.(\d+)")


def header_key(text: str) -> str:
    """``text`` compared ignoring case, accents, surrounding spaces and a byte order mark."""
    folded = unicodedata.normalize("NFKD", text.strip().lstrip("\ufeff").strip().casefold())
    return "".join(char for char in folded if not unicodedata.combining(char))


class AmbiguousColumn(ValueError):
    """Several columns equal ``name`` ignoring case, accents and spaces, and none is spelled as it is."""


def find_column(name: str, found: Sequence[str]) -> int | None:
    """The index in ``found`` of the column ``name``: the one spelled exactly as it, else the only one equal to it
    under :func:`header_key`; ``None`` when none is. :class:`AmbiguousColumn` (naming them) when several are equal
    and none is spelled exactly: which one the creditor meant is not guessed."""
    if name in found:
        return found.index(name)
    key = header_key(name)
    matches = [index for index, column in enumerate(found) if header_key(column) == key]
    if len(matches) > 1:
        raise AmbiguousColumn(
            f"column {name} is ambiguous: {', '.join(repr(found[index]) for index in matches)} all match it "
            "ignoring case, accents and spaces; spell it exactly as one of them"
        )
    return matches[0] if matches else None


def parse_amount(text: str, decimal_comma: bool | None) -> Decimal | None:
    """``text`` as a Decimal (``None`` when it is not an amount); ``decimal_comma=None`` decides per value."""
    if _PLAIN.fullmatch(text):
        return Decimal(text)
    fast = (
        (decimal_comma is not False and _COMMA_DECIMAL.fullmatch(text))
        or (decimal_comma is not True and _POINT_DECIMAL.fullmatch(text))
        or None
    )
    if fast is not None:
        return Decimal(f"{fast[1].replace('.', '').replace(',', '')}.{fast[2]}")
    compact = "".join(text.split()).removeprefix("$")
    if not _AMOUNT.fullmatch(compact):
        return None
    decimal = _decimal_separator(compact) if decimal_comma is None else ("," if decimal_comma else ".")
    thousands = "." if decimal == "," else ","
    whole, _, fraction = compact.partition(decimal)
    if not fraction and compact.endswith(decimal):
        return None
    if decimal in fraction or thousands in fraction:
        return None
    sign = whole[0] if whole[0] in "+-" else ""
    groups = whole.removeprefix(sign).split(thousands)
    if len(groups) > 1 and (
        len(groups[0]) > 3 or groups[0].startswith("0") or any(len(group) != 3 for group in groups[1:])
    ):
        return None
    digits = "".join(groups)
    return Decimal(f"{sign}{digits}.{fraction}" if fraction else f"{sign}{digits}")


#: The smallest amount too large for any channel (the creditor API's limit), and the smallest step it allows.
_AMOUNT_LIMIT = Decimal(10) ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)
_AMOUNT_STEP = Decimal(1).scaleb(-AMOUNT_DECIMAL_PLACES)


def amount_problem(amount: Decimal) -> str | None:
    """Why ``amount`` cannot be loaded as it was written (``None``: it can): the same limits as the creditor API's,
    so an amount is never rounded nor too large to store."""
    if abs(amount) >= _AMOUNT_LIMIT:
        return f"has more than {AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES} digits before the decimals"
    if amount % _AMOUNT_STEP:
        return f"has more than {AMOUNT_DECIMAL_PLACES} decimals"
    return None


def _decimal_separator(amount: str) -> str:
    last = max(amount.rfind("."), amount.rfind(","))
    if last < 0:
        return "."
    mark = amount[last]
    other = "," if mark == "." else "."
    if other in amount:
        return mark
    if amount.count(mark) > 1 or (len(amount) - last - 1 == 3 and not amount.lstrip("+-").startswith("0")):
        return other
    return mark


def parse_date(text: str, formats: Sequence[str]) -> date | None:
    """``text`` read with the first of ``formats`` that fits it entirely; ``None`` when none does."""
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None
