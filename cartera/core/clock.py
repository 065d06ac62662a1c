"""Wall clock or simulated clock: everything in core and in plugins reads time through a :class:`Clock`."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How many real seconds ``seconds`` of this clock's time take."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        return seconds


class SimulatedClock:
    """Starts at ``start`` and runs ``speed`` times faster than real time (the demo's weekday morning)."""

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("simulated clock start must be timezone-aware")
        if speed <= 0:
            raise ValueError("simulated clock speed must be positive")
        self._start = start.astimezone(UTC)
        self._speed = speed
        self._origin = time.monotonic()
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            elapsed = time.monotonic() - self._origin
        return self._start + timedelta(seconds=elapsed * self._speed)

    def sleep(self, seconds: float) -> None:
        time.sleep(self.real_seconds(seconds))

    def real_seconds(self, seconds: float) -> float:
        return max(0.0, seconds) / self._speed
