"""AMI messages cut out of the bytes a socket reads: in linear time, within a size limit.

A message is ``Key: value`` lines, each ended by CRLF, and ends with an empty line. Asterisk ends some with
one empty line more (TestEvent); empty lines between messages are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cartera.plugin import CarteraError

_END = b"\r\n\r\n"
_BLANK_LINES = re.compile(rb"(?:\r\n)*")
_BLANK_TEXT_LINES = re.compile(r"(?:\r\n)*")


class MessageTooLarge(CarteraError):
    """A message, or the unterminated start of one, is longer than the limit."""


class MessageFramer:
    """Buffers what is read and hands each complete message, decoded, to ``on_message``.

    The same bytes give the same messages however they were split into reads. Each byte is scanned a bounded
    number of times, never the whole buffer again. A message longer than ``max_bytes`` (its ending empty line
    included) raises :class:`MessageTooLarge` once the messages before it were handed over.
    """

    def __init__(
        self, on_message: Callable[[str], None], max_bytes: int, encoding: str = "utf-8", errors: str = "replace"
    ) -> None:
        self.max_bytes = max_bytes
        self._on_message = on_message
        self._encoding = encoding
        self._errors = errors
        self._buffer = bytearray()
        self._scanned = 0  # the buffer's first bytes, known to hold no message end

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.rfind(_END, max(0, self._scanned - 3))
        complete = bytearray()
        if end >= 0:
            while buffer.endswith(b"\r\n", 0, end):  # empty lines after a message: it ended at the first one
                end -= 2
            complete = buffer[:end]
            del buffer[: end + 4]
        del buffer[: _blank_lines(buffer)]
        self._scanned = len(buffer)
        if complete:
            self._hand_over(complete)
        if len(buffer) >= self.max_bytes:  # its end, still to come, makes it longer still
            raise self._too_large()

    def _hand_over(self, complete: bytes | bytearray) -> None:
        """Hand over the messages of ``complete`` (messages and the empty lines between them); raise at one
        too long, after those before it. One decode and one split serve them all (faster than one a message)."""
        too_long = None
        if len(complete) + 4 > self.max_bytes:  # one of its messages may be too long
            pieces = complete.split(_END)
            sizes = (len(piece) - _blank_lines(piece) + 4 for piece in pieces)
            too_long = next((n for n, size in enumerate(sizes) if size > self.max_bytes), None)
            if too_long is not None:
                complete = _END.join(pieces[:too_long])
        for block in complete.decode(self._encoding, self._errors).split("\r\n\r\n"):
            message = block[_blank_lines(block) :] if block.startswith("\r\n") else block
            if message:
                self._on_message(message)
        if too_long is not None:
            raise self._too_large()

    def _too_large(self) -> MessageTooLarge:
        return MessageTooLarge(f"a message longer than {self.max_bytes} bytes (max_message_bytes)")


def _blank_lines(data: bytes | bytearray | str) -> int:
    """The length of the empty lines ``data`` starts with."""
    match = _BLANK_TEXT_LINES.match(data) if isinstance(data, str) else _BLANK_LINES.match(data)
    return match.end() if match else 0
