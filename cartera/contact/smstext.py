"""SMS text rules of 3GPP TS 23.038: which encoding a text needs and how many messages it takes."""

from __future__ import annotations

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# 3GPP TS 23.038 (formerly GSM 03.38) section 6.2.1, the GSM 7 bit default alphabet, code points 0x00-0x7F
# in order; 0x1B is the escape to the extension table, so it is no character of its own.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# TS 23.038 section 6.2.1.1, the default extension table: each is sent as ESC + code, two septets.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

_GSM7_SINGLE, _GSM7_PART = 160, 153  # septets; a concatenated part loses 7 septets to its header
_UCS2_SINGLE, _UCS2_PART = 70, 67  # UTF-16 code units


def sms_encoding(text: str) -> str:
    """``GSM-7`` when every character is in the default alphabet or its extension table, else ``UCS-2``."""
    return GSM7 if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text) else UCS2


def segment_count(text: str) -> int:
    """How many SMS the text takes: one when it fits a single message, else concatenated parts.

    Each part is decoded on its own, so an escape sequence or a surrogate pair never straddles two parts.
    """
    if sms_encoding(text) == GSM7:
        units = [2 if c in GSM7_EXTENSION else 1 for c in text]
        single, part = _GSM7_SINGLE, _GSM7_PART
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, part = _UCS2_SINGLE, _UCS2_PART
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for size in units:
        if used + size > part:
            parts, used = parts + 1, 0
        used += size
    return parts
