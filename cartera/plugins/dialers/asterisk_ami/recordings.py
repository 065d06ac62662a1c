"""A call's MixMonitor recording: waiting until Asterisk has finished writing it, and describing it."""

from __future__ import annotations

import time
import wave
from pathlib import Path

from cartera.plugin import Recording
from cartera.plugins.dialers.asterisk_ami.calls import Call

_POLL_S = 0.1
_WAV_HEADER = 44


def wait_until_written(path: Path, timeout: float) -> bool:
    """``True`` once ``path`` exists and its size held still for one poll; ``False`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    size = -1
    while True:
        try:
            current = path.stat().st_size
        except FileNotFoundError:
            current = -1
        if current >= _WAV_HEADER and current == size:
            return True
        if time.monotonic() >= deadline:
            return False
        size = current
        time.sleep(_POLL_S)


def duration_s(path: Path, call: Call) -> float:
    """The recording's length: from its WAV header, else the call's talk time."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / wav.getframerate()
    except (wave.Error, EOFError, OSError, ZeroDivisionError):
        if call.answered_at is None or call.ended_at is None:
            return 0.0
        return (call.ended_at - call.answered_at).total_seconds()


def recording_of(call: Call, path: Path) -> Recording:
    assert call.answered_at is not None
    return Recording(
        path=path,
        attempt_id=call.request.attempt_id,
        started_at=call.answered_at,
        duration_s=duration_s(path, call),
        agent=call.agent,
        vendor_call_id=call.uniqueid,
    )
