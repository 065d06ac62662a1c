"""SMS opt-out keywords: a debtor who texts STOP, BAJA or ALTO is never texted again from that number."""

from __future__ import annotations

import unicodedata

#: Whole-message keywords (after :func:`_fold`): English STOP, Spanish BAJA ("unsubscribe") and ALTO ("stop").
OPT_OUT_KEYWORDS = frozenset({"STOP", "BAJA", "ALTO"})


def _fold(text: str) -> str:
    """Upper case without accents, whitespace, punctuation or symbols around it: ``" ¡Bája!. "`` → ``BAJA``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    start, end = 0, len(bare)
    while start < end and _is_filler(bare[start]):
        start += 1
    while end > start and _is_filler(bare[end - 1]):
        end -= 1
    return bare[start:end].upper()


def _is_filler(char: str) -> bool:
    return char.isspace() or unicodedata.category(char)[0] in "PSZC"


def opt_out_keyword(text: str) -> str | None:
    """The keyword when the whole message asks to stop texts (case, accents and surrounding punctuation
    ignored), else ``None``; a keyword inside a longer sentence is not an opt-out."""
    folded = _fold(text)
    return folded if folded in OPT_OUT_KEYWORDS else None
