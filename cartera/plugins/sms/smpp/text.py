"""What goes on the wire: a text as submit_sm parts (GSM 03.38 or UCS-2, UDH-concatenated), receipts and MO
texts read back from deliver_sm."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cartera.plugin import GSM7, SmsState, sms_encoding

DATA_CODING_GSM7 = 0x00  # the SMSC default alphabet, GSM 03.38, one septet per octet (the SMSC packs)
DATA_CODING_LATIN1 = 0x03
DATA_CODING_UCS2 = 0x08
ESM_UDHI = 0x40
ESM_DELIVERY_RECEIPT = 0x04
ESM_TYPE_MASK = 0x3C

# 3GPP TS 23.038 section 6.2.1 in code point order (0x1B, the escape, stands as a placeholder); the set of these
# characters is cartera.contact.smstext.GSM7_BASIC (a test holds the two together).
GSM7_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_ESCAPES = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40}
GSM7_ESCAPES["€"] = 0x65
_ESC = 0x1B
_GSM7_CODES = {c: bytes([i]) for i, c in enumerate(GSM7_TABLE) if i != _ESC}
_GSM7_CODES.update({c: bytes([_ESC, code]) for c, code in GSM7_ESCAPES.items()})
_GSM7_ESCAPED = {code: c for c, code in GSM7_ESCAPES.items()}

_GSM7_SINGLE, _GSM7_PART = 160, 153  # septets (octets here: unpacked); a part loses 7 to its 6-octet header
_UCS2_SINGLE, _UCS2_PART = 140, 134  # octets of UTF-16-BE


@dataclass(frozen=True, slots=True)
class Part:
    """One submit_sm: its short_message octets, data_coding and esm_class."""

    short_message: bytes
    data_coding: int
    esm_class: int


def encode_parts(text: str, reference: int) -> list[Part]:
    """The submit_sm parts for ``text``: GSM 03.38 when every character is in the default alphabet or its
    extension (cartera.contact.smstext.sms_encoding), else UCS-2; over one message, parts of at most 153 septets or 67
    UTF-16 units behind a concatenation header (IEI 0x00, 8-bit ``reference``), never splitting an escape
    sequence or a surrogate pair. The count equals cartera.contact.smstext.segment_count."""
    if sms_encoding(text) == GSM7:
        units = [_GSM7_CODES[c] for c in text]
        coding, single, size = DATA_CODING_GSM7, _GSM7_SINGLE, _GSM7_PART
    else:
        units = [c.encode("utf-16-be") for c in text]
        coding, single, size = DATA_CODING_UCS2, _UCS2_SINGLE, _UCS2_PART
    whole = b"".join(units)
    if len(whole) <= single:
        return [Part(whole, coding, 0)]
    chunks: list[bytes] = []
    current = b""
    for unit in units:
        if len(current) + len(unit) > size:
            chunks.append(current)
            current = b""
        current += unit
    chunks.append(current)
    if len(chunks) > 255:
        raise ValueError(f"text of {len(text)} characters needs {len(chunks)} parts; at most 255 can be joined")
    header = bytes([0x05, 0x00, 0x03, reference & 0xFF, len(chunks)])
    return [Part(header + bytes([n]) + chunk, coding, ESM_UDHI) for n, chunk in enumerate(chunks, start=1)]


def decode_text(payload: bytes, data_coding: int) -> str:
    """A deliver_sm's text from its octets: GSM 03.38 unpacked septets, UCS-2 or Latin-1 (else ASCII)."""
    scheme = data_coding & 0x0F if data_coding & 0xF0 in (0x00, 0xF0) else data_coding
    if scheme == DATA_CODING_UCS2:
        return payload.decode("utf-16-be", errors="replace")
    if scheme == DATA_CODING_LATIN1:
        return payload.decode("latin-1")
    if scheme == DATA_CODING_GSM7:
        out, escaped = [], False
        for octet in payload:
            if escaped:
                out.append(_GSM7_ESCAPED.get(octet, " "))
                escaped = False
            elif octet == _ESC:
                escaped = True
            else:
                out.append(GSM7_TABLE[octet & 0x7F])
        return "".join(out)
    return payload.decode("ascii", errors="replace")


@dataclass(frozen=True, slots=True)
class UserData:
    """A deliver_sm's payload without its user data header; ``concat`` is (reference, total, number)."""

    payload: bytes
    concat: tuple[int, int, int] | None


def split_udh(payload: bytes, esm_class: int) -> UserData:
    """Strip the user data header (when UDHI is set) and read its concatenation element, 8- or 16-bit. An element
    cut short (fewer octets than it declares, the header ending first) is not read: such a text is not
    concatenated."""
    if not esm_class & ESM_UDHI or not payload:
        return UserData(payload, None)
    end = 1 + payload[0]
    header, position, concat = payload[1:end], 0, None
    while position + 2 <= len(header):
        iei, length = header[position], header[position + 1]
        data = header[position + 2 : position + 2 + length]
        if len(data) < length:  # a debtor's modem can send any header: the rest of it is not there
            break
        if iei == 0x00 and length == 3:
            concat = (data[0], data[1], data[2])
        elif iei == 0x08 and length == 4:
            concat = (data[0] << 8 | data[1], data[2], data[3])
        position += 2 + length
    return UserData(payload[end:], concat)


# SMPP 3.4 section 5.3.2.35 message_state and appendix B receipt "stat:" values; None: not final yet.
_MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD", 7: "UNKNOWN"}
_MESSAGE_STATES[8] = "REJECTD"
_FINAL_STATES = {
    "DELIVRD": SmsState.DELIVERED,
    "EXPIRED": SmsState.EXPIRED,
    "DELETED": SmsState.FAILED,
    "UNDELIV": SmsState.FAILED,
    "UNKNOWN": SmsState.FAILED,
    "REJECTD": SmsState.FAILED,
}
#: The receipt status word kept: appendix B gives ``stat`` 7 characters; a longer one is cut (round 23 C-F6).
RECEIPT_STAT_MAX = 7
_RECEIPT_ID = re.compile(r"\bid:(\S+)", re.IGNORECASE)
_RECEIPT_STAT = re.compile(r"\bstat:(\w+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt: the SMSC's message id, its status word, and our state when that is final."""

    smsc_id: str
    stat: str
    state: SmsState | None


def parse_receipt(text: str, receipted_message_id: str | None, message_state: int | None) -> Receipt | None:
    """Read a receipt from the TLVs receipted_message_id / message_state, else from the receipt text
    (``id:... sub:... stat:DELIVRD ...``); ``None`` when neither names a message id and a status.
    ENROUTE and ACCEPTD are intermediate (state ``None``); ``stat`` is kept to :data:`RECEIPT_STAT_MAX`."""
    id_match, stat_match = _RECEIPT_ID.search(text), _RECEIPT_STAT.search(text)
    smsc_id = receipted_message_id or (id_match.group(1) if id_match else None)
    stat = _MESSAGE_STATES.get(message_state or 0) or (stat_match.group(1).upper() if stat_match else None)
    if not smsc_id or not stat:
        return None
    # the state is read from the whole word: "DELIVRDNOT" is not final, though kept cut to "DELIVRD"
    return Receipt(smsc_id=smsc_id, stat=stat[:RECEIPT_STAT_MAX], state=_FINAL_STATES.get(stat))
