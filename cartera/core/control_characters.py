"""Characters no free text may hold, and how to show text that holds them: C0 and C1 controls, line separators,
bidi marks and other invisible format characters. Creditors' names and references holding one are refused;
texts shown on a terminal or kept in the audit log are escaped."""

from __future__ import annotations

import re

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
#: (U+2028, U+2029) that break a line where a reader splits lines, the format characters above and lone surrogates.
_CONTROL = re.compile(f"[\x00-\x1f\x7f{C1_CONTROLS}\u2028\u2029{FORMAT_CHARACTERS}\ud800-\udfff]|{_JOINER_MISPLACED}")


#: Lone UTF-16 surrogates (U+D800-U+DFFF): a Python text holds one only when decoded from a JSON escape
#: (``"\\ud800"``), from UTF-8 bytes of a surrogate that JSON's parser passes, or from a codec such as UTF-7. No
#: UTF-8 file, database or answer can hold one: writing it fails (a 500) where it is not refused.
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone UTF-16 surrogate, which no UTF-8 text can hold (a pair decodes to one
    character outside the surrogates' range, so every surrogate in a Python text is a lone one)."""
    return _SURROGATE.search(text) is not None


def unkeepable(text: str) -> str | None:
    """What in ``text`` no store or file of the node's can keep: a NUL (PostgreSQL stores none) or a lone UTF-16
    surrogate (UTF-8 encodes none); ``None`` when it holds neither."""
    if "\x00" in text:
        return "a NUL character"
    if has_lone_surrogate(text):
        return "a lone UTF-16 surrogate"
    return None


_UNKEEPABLE = re.compile("[\x00\ud800-\udfff]")


def keepable(text: str) -> str:
    """``text`` with what :func:`unkeepable` names escaped, visibly (``\\x00``, ``\\udcff``), the rest as is: text
    from a vendor (a PBX's hangup cause, an SMS gateway's answer) that the node keeps rather than refuses."""
    return _UNKEEPABLE.sub(lambda found: found[0].encode("unicode_escape").decode(), text)


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


def escape_unprintable(text: str) -> str:
    """``text`` with each character Python deems unprintable (controls, bidi marks, a no-break space, U+2028...)
    written as its ``unicode_escape`` (``\\xa0``, ``\\u202e``), the rest as is: a log line's quoted value."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode() for char in text)
