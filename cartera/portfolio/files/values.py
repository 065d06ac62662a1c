"""Cell values as creditors write them: headers, amounts with either decimal mark, dates in several formats."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

from cartera.core.models import AMOUNT_DECIMAL_PLACES, AMOUNT_MAX_DIGITS

#: C1 control characters (U+0080-U+009F): no name or address has one (a Windows-1252 sign read as Latin-1 does).
C1_CONTROLS = "\x80-\x9f"
#: Unicode's format characters (category Cf) but ZWNJ and ZWJ (U+200C, U+200D): invisible, they make two names
#: that look the same differ (searches miss, duplicates pass) and carry hidden text (tags U+E0020-U+E007F). They
#: include the bidi marks, embeddings, overrides and isolates (U+061C, U+200E, U+200F, U+202A-U+202E,
#: U+2066-U+2069) that reorder what a terminal or a phone shows. ``tests/test_assignments.py`` holds this list to
#: the running Python's Unicode database.
FORMAT_CHARACTERS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
#: ZWNJ and ZWJ are format characters too, but Persian, Arabic, Indic and Sinhala names need them inside words
#: (Mohammadreza, Sri): they pass between two letters of such scripts, and are refused at either end of the text,
#: beside a Latin character (U+0000-U+024F: no Latin name needs one) or beside another joiner.
_JOINERS = "\u200c\u200d"
_NEAR_JOINER = f"[\\x00-\\u024f{_JOINERS}]"
_JOINER_MISPLACED = rf"(?:(?<={_NEAR_JOINER})|\A)[{_JOINERS}]|[{_JOINERS}](?={_NEAR_JOINER}|\Z)"
#: What no free text from a creditor may hold: C0 controls, DEL, C1 controls, the line and paragraph separators
#: (U+2028, U+2029) that break a line where a reader splits lines, and the format characters above.
_CONTROL = re.compile(f"[\x00-\x1f\x7f{C1_CONTROLS}\u2028\u2029{FORMAT_CHARACTERS}]|{_JOINER_MISPLACED}")
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


def has_c1_control(text: str) -> bool:
    """Whether ``text`` holds a C1 control character."""
    return any("\x80" <= char <= "\x9f" for char in text)


def has_control(value: str) -> bool:
    """Whether ``value`` holds a character no free text may: a control, bidi or invisible format character."""
    return _CONTROL.search(value) is not None


def control_problem(value: str) -> str | None:
    """Why ``value`` (free text from a creditor: a name, a reference) is refused: it holds a control character,
    a bidi override or another invisible format character, named escaped (``None``: it holds none)."""
    if not has_control(value):
        return None
    return (
        f"{value[:80]!r} holds a control character, bidi mark or invisible format character, which no name or "
        "reference has"
    )


def escape_controls(text: str) -> str:
    """``text`` with each control, bidi and format character escaped (``\\x1b``), safe to show on a terminal."""
    return _CONTROL.sub(lambda found: repr(found[0])[1:-1], text)
