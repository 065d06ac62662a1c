"""Asterisk's recordings: when a file in the spool is finished, how long it is, and what is reported of it."""

from __future__ import annotations

import os
import stat
import threading
import time
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cartera.plugin import Recording
from cartera.plugins.dialers.asterisk_ami.calls import Call

_POLL_S = 0.1
_WAV_HEADER = 44


def finished(path: Path, quiet_s: float, now: float | None = None) -> os.stat_result | None:
    """The file's status once Asterisk finished writing it: not modified for ``quiet_s`` seconds and, a WAV,
    holding at least its header (MixMonitor writes it on opening). ``None`` while it is missing, unreadable or
    still written, and always for anything but a regular file (a symlink is never followed). The test keeps no
    state, so after a restart every old file qualifies at once."""
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    if path.suffix.lower() == ".wav" and info.st_size < _WAV_HEADER:
        return None
    return info if info.st_mtime <= (time.time() if now is None else now) - quiet_s else None


def wait_until_finished(path: Path, timeout: float, cut_short: threading.Event | None = None) -> bool:
    """``True`` once ``path`` is :func:`finished` (unmodified for one poll); ``False`` after ``timeout`` s, or
    at once when ``cut_short`` is set (the dialer stopping) and the file is not finished by then."""
    deadline = time.monotonic() + timeout
    halt = cut_short or threading.Event()
    while finished(path, _POLL_S) is None:
        if time.monotonic() >= deadline or halt.is_set():
            return False
        halt.wait(_POLL_S)
    return True


def wav_seconds(path: Path) -> float | None:
    """The length of a PCM WAV file from its header; ``None`` for other formats or unreadable headers."""
    try:
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            return wav.getnframes() / rate if rate else None
    except (wave.Error, EOFError, OSError):
        return None


def recording_of(call: Call, path: Path) -> Recording:
    """A call's recording: its attempt and agent; its length from the WAV header, else the call's talk time."""
    assert call.answered_at is not None
    duration = wav_seconds(path)
    if duration is None:
        talked = call.ended_at - call.answered_at if call.ended_at is not None else None
        duration = talked.total_seconds() if talked is not None else 0.0
    return Recording(
        path=path,
        attempt_id=call.request.attempt_id,
        started_at=call.answered_at,
        duration_s=duration,
        agent=call.agent,
        vendor_call_id=call.uniqueid,
    )


def spooled(path: Path, info: os.stat_result, attempt_id: int | None) -> Recording:
    """A finished file no call reported (of ``attempt_id``, when known): it began its length before it was
    last written."""
    duration = wav_seconds(path) or 0.0
    began = datetime.fromtimestamp(info.st_mtime, UTC) - timedelta(seconds=duration)
    return Recording(path=path, attempt_id=attempt_id, started_at=began, duration_s=duration)
