"""One redaction for every output: the site's secret values, in every encoding they travel in, and URL passwords.

Configuration registers each secret it resolves (``${ENV}`` values, secret settings, URL passwords). Log lines
(after their JSON or text encoding), ``check`` lines, ``/healthz`` detail, configuration errors and everything the
command line writes pass :func:`redact`, which masks the secret as given, percent-encoded or decoded, in hex, as a
Python ``repr`` or ``\\u``-escape shows it (or its bytes), with only its controls or unprintable characters
escaped (a terminal line, a text log's value), and JSON-escaped on top of any of those; log formatters redact
each value before they escape it, too. A secret shorter than :data:`MIN_SECRET_LENGTH` could not be masked
without masking ordinary text: configuration refuses it.
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO
from urllib.parse import quote, quote_plus, unquote

from cartera.core.control_characters import escape_controls, escape_unprintable

MASK = "***"
MIN_SECRET_LENGTH = 4
#: ``scheme://user:password@``: the password is masked wherever such a URL is printed, known secret or not. Keyed
#: on ``://`` alone, the scheme left out: a scheme pattern was tried from every word boundary to the end of a long
#: run like ``a.a.a...`` (quadratic, the GIL held for seconds by one long log line or creditor file line).
_URL_PASSWORD = re.compile(r"(?P<head>://[^\s/:@]*):[^\s/@]+@")


def _python_escapes(text: str) -> set[str]:
    """How ``repr`` (or ``ascii``, or ``repr`` of its UTF-8 bytes) shows ``text`` inside a longer string: with
    its quote escaped or not."""
    forms = set()
    for inner in (repr(text)[1:-1], ascii(text)[1:-1], repr(text.encode())[2:-1]):
        plain = inner.replace("\\'", "'")
        forms |= {plain, plain.replace("'", "\\'")}
    return forms


def encodings(secret: str) -> set[str]:
    """``secret`` in the forms an output may carry it (each at least :data:`MIN_SECRET_LENGTH` long)."""
    once: set[str] = set()
    for plain in {secret, unquote(secret)}:
        once |= {plain, quote(plain, safe=""), quote(plain), quote_plus(plain), plain.encode().hex()}
        once |= _python_escapes(plain)
        # as a terminal line or a text log's quoted value shows it: escaped by character, the rest as is
        once |= {escape_controls(plain), escape_unprintable(plain)}
        once |= {escape_unprintable(json.dumps(plain, ensure_ascii=False)[1:-1])}
    forms = set(once)
    for form in once:
        forms |= {json.dumps(form)[1:-1], json.dumps(form, ensure_ascii=False)[1:-1]}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    """The secret values known so far; :meth:`redact` masks them (longest first) and URL passwords."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        """Mask ``secret`` from now on; shorter than :data:`MIN_SECRET_LENGTH`: ignored (config refuses those)."""
        if len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            new = encodings(secret) - self._forms
            if new:
                self._forms |= new
                ordered = sorted(self._forms, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return _URL_PASSWORD.sub(rf"\g<head>:{MASK}@", text)


_site = Redactor()
register_secret = _site.add
redact = _site.redact


class RedactingStream(io.TextIOBase):
    """A text stream that writes everything through :func:`redact` to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.unredacted = stream

    def write(self, text: str) -> int:
        self.unredacted.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self.unredacted.flush()

    def isatty(self) -> bool:
        return self.unredacted.isatty()

    def fileno(self) -> int:
        return self.unredacted.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]  # the wrapped stream's, not settable
        return self.unredacted.encoding


@contextmanager
def redacted_output() -> Iterator[None]:
    """While the block runs, ``sys.stdout`` and ``sys.stderr`` (prints, tracebacks, progress bars) are redacted."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(out), RedactingStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
