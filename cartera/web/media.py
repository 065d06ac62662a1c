"""Recordings over HTTP: a verified local copy per recording, served whole or by one byte range (RFC 9110)."""

from __future__ import annotations

import contextlib
import mimetypes
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from starlette.responses import StreamingResponse

from cartera.core.adapters import RecordingStore
from cartera.recordings.access import RecordingView, fetch_verified

CHUNK = 64 * 1024
#: RFC 9110 §14.1: ``range-unit "=" range-set``, the unit a token compared without case. Parsed by splitting on
#: "," and reading each element on its own: a regex over the whole range-set with empty elements allowed
#: backtracked exponentially (" , , ... ,x": the GIL held for seconds to days, the whole node frozen).
_UNIT = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BLANK = " \t"
MAX_RANGE_HEADER = 16 * 1024  #: a longer Range header is ignored (the whole file)
MAX_RANGE_ELEMENTS = 64  #: so is one of more comma-separated elements (empty ones too)
_BEYOND_ANY_FILE = 2**63  #: what a position of more than 18 digits is read as
OPAQUE = "application/octet-stream"  #: a recording that is no known audio: downloaded, never shown
#: audio formats Asterisk records that mimetypes does not know as audio (.gsm is "model/vnd.gdl" there)
_AUDIO_TYPES = {".gsm": "audio/x-gsm"}
MAX_COPIES_BYTES = 2 << 30  #: local copies kept for playing, at most (the least recently used go first)


class BadRange(ValueError):
    """The Range header cannot be satisfied: answer 416 with the size."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  #: inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range ``header`` asks for (``None``: the whole file). A header that is no ``bytes`` ranges
    specifier (malformed, or of another unit) is ignored: ``None``, as RFC 9110 §14.2 says; so is one longer than
    :data:`MAX_RANGE_HEADER` or of more than :data:`MAX_RANGE_ELEMENTS` elements. Empty elements and blanks
    around commas are allowed (RFC 9110 §5.6.1.2). Multiple ranges, a start past the end, an empty suffix or an
    inverted range raise :class:`BadRange`; an end past the file is cut to it. Positions of any length are read
    without converting thousands of digits. Linear in the header's length."""
    if header is None or len(header) > MAX_RANGE_HEADER:
        return None
    unit, equals, range_set = header.strip(_BLANK).partition("=")
    if not equals or not _UNIT.fullmatch(unit) or unit.lower() != "bytes" or range_set[:1] in tuple(_BLANK):
        return None
    elements = range_set.split(",", MAX_RANGE_ELEMENTS)
    if len(elements) > MAX_RANGE_ELEMENTS:
        return None
    wanted = []
    for element in elements:
        spec = _range_spec(element.strip(_BLANK))
        if spec is False:
            return None
        if spec is not None:
            wanted.append(spec)
    if not wanted:  # only empty elements: no range-spec at all
        return None
    if len(wanted) > 1 or size == 0:
        raise BadRange(header)
    first, last = wanted[0]
    if first is None:  # suffix: the last N bytes
        if not last:
            raise BadRange(header)
        return ByteRange(max(0, size - last), size - 1)
    if first >= size or (last is not None and last < first):
        raise BadRange(header)
    return ByteRange(first, size - 1 if last is None else min(last, size - 1))


def _range_spec(element: str) -> tuple[int | None, int | None] | Literal[False] | None:
    """An element of a range-set: ``(first, last)`` of an int-range (``last`` ``None`` when open) or of a
    suffix-range (``first`` ``None``); ``None`` when empty, ``False`` when malformed."""
    if not element:
        return None
    first, dash, last = element.partition("-")
    if not dash or not _digits(first) or not _digits(last) or not (first or last):
        return False
    return _position(first), _position(last)


def _position(digits: str) -> int | None:
    if not digits:
        return None
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 18 else _BEYOND_ANY_FILE


def _digits(text: str) -> bool:
    """``text`` is ASCII digits or empty (``str.isdigit`` alone takes any script's digits)."""
    return not text or (text.isascii() and text.isdigit())


def audio_type(filename: str) -> str:
    """The audio type of a recording named ``filename``; :data:`OPAQUE` for any other (a recording archived
    as ``.html`` or ``.js`` is never served as a page or a script of the node's origin)."""
    ext = PurePosixPath(filename).suffix.lower()
    guessed = _AUDIO_TYPES.get(ext) or mimetypes.guess_type(f"recording{ext}")[0] or ""
    return guessed if guessed.startswith("audio/") else OPAQUE


def file_response(path: Path, wanted: ByteRange | None, filename: str, *, attachment: bool) -> StreamingResponse:
    size = path.stat().st_size
    part = wanted or ByteRange(0, size - 1)
    media_type = audio_type(filename)
    inline = not attachment and media_type != OPAQUE
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(max(part.length, 0)),
        "Content-Disposition": f'{"inline" if inline else "attachment"}; filename="{filename}"',
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox",  # whatever the file holds, it runs no script of the node's origin
    }
    if wanted is not None:
        headers["Content-Range"] = f"bytes {part.start}-{part.end}/{size}"
    return StreamingResponse(
        _read(path, part), status_code=206 if wanted else 200, media_type=media_type, headers=headers
    )


def _read(path: Path, part: ByteRange) -> Iterator[bytes]:
    with path.open("rb") as source:
        source.seek(part.start)
        left = part.length
        while left > 0:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


class VerifiedCopies:
    """Local copies of archived recordings, fetched and sha256-checked on first play (the caller views and
    audits: :meth:`RecordingLibrary.deliver`), then served by range; copies unused for ``keep_s`` seconds are
    removed, and the least recently used ones too when a new copy would take them past ``max_bytes``: a user
    playing one byte of every recording fills no disk (the store's and the recordings' own)."""

    def __init__(self, directory: Path, keep_s: float = 3600, max_bytes: int = MAX_COPIES_BYTES) -> None:
        self.directory, self.keep_s, self.max_bytes = directory, keep_s, max_bytes
        self._lock = threading.Lock()  #: the copies' bookkeeping (prune, touch), never held across a fetch
        self._fetches: dict[Path, tuple[threading.Lock, int]] = {}  #: per copy: its fetch's lock, its waiters
        self._incoming = 0  #: bytes of the fetches under way, counted against ``max_bytes``

    def path(self, view: RecordingView, key: str, store: Callable[[], RecordingStore[Any]]) -> Path:
        """The verified copy of ``view`` (the store object ``key``), fetched from ``store()`` when missing: one
        fetch per recording at a time, other recordings' plays go on meanwhile."""
        self.directory.mkdir(parents=True, exist_ok=True)
        copy = self.directory / f"{view.id}-{view.sha256}{suffix(view)}"
        if self._touched(copy):
            return copy
        with self._lock:
            fetching, waiters = self._fetches.get(copy, (threading.Lock(), 0))
            self._fetches[copy] = (fetching, waiters + 1)
        try:
            with fetching:
                if self._touched(copy):  # fetched while this play waited
                    return copy
                size = view.size or 0
                with self._lock:
                    self._prune(incoming=size + self._incoming)
                    self._incoming += size
                try:
                    fetch_verified(store(), key, view, copy)
                finally:
                    with self._lock:
                        self._incoming -= size
                if not self._touched(copy):
                    raise FileNotFoundError(copy)
                return copy
        finally:
            with self._lock:
                fetching, waiters = self._fetches[copy]
                if waiters == 1:
                    del self._fetches[copy]
                else:
                    self._fetches[copy] = (fetching, waiters - 1)

    def _touched(self, copy: Path) -> bool:
        """Marks ``copy`` just used, if it is there (never creating it: a pruned copy is fetched again)."""
        with self._lock:
            try:
                os.utime(copy)
            except FileNotFoundError:
                return False
            return True

    def _prune(self, incoming: int) -> None:
        """Remove the copies unused for ``keep_s``, then the least recently used until ``incoming`` more bytes
        fit within ``max_bytes``."""
        cutoff, kept = time.time() - self.keep_s, []
        for old in self.directory.iterdir():
            with contextlib.suppress(FileNotFoundError):
                info = old.stat()
                if not stat.S_ISREG(info.st_mode) or old.name.startswith(".cartera-"):  # a fetch under way
                    continue
                if info.st_mtime < cutoff:
                    old.unlink(missing_ok=True)
                else:
                    kept.append((info.st_mtime, info.st_size, old))
        total = incoming + sum(size for _, size, _ in kept)
        for _, size, old in sorted(kept):
            if total <= self.max_bytes:
                break
            old.unlink(missing_ok=True)
            total -= size


def suffix(view: RecordingView) -> str:
    """The recording's file extension (from its location), ``.wav`` when it has none."""
    name = PurePosixPath(view.location or "").name
    ext = PurePosixPath(name).suffix.lower()
    return ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ".wav"


def download_name(site: str, view: RecordingView) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{site}-recording-{view.id}{suffix(view)}")
