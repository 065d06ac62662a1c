"""The abandonment limit as a budget: abandoned / answered by a person, per campaign, over a rolling window."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

DAY = 86_400.0


@dataclass(slots=True)
class AbandonBudget:
    """Live answers and abandons over the last ``window`` seconds, counted in buckets of ``bucket`` seconds.

    The default is the US rule's 3% over 30 days; Ofcom's is 3% per day (``window=DAY``).
    """

    limit: float = 0.03
    window: float = 30 * DAY
    bucket: float = 3600.0
    answered: int = 0
    abandoned: int = 0
    _buckets: deque[tuple[float, int, int]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if not 0.0 < self.limit < 1.0:
            raise ValueError(f"abandonment limit must be between 0 and 1, not {self.limit}")
        if self.window <= 0 or self.bucket <= 0:
            raise ValueError("abandonment window and bucket must be positive")

    def record(self, at: float, *, abandoned: bool) -> None:
        """Count one call answered by a person at ``at``, abandoned or not."""
        self._expire(at)
        start = at - at % self.bucket
        if self._buckets and self._buckets[-1][0] == start:
            _, answered, dropped = self._buckets[-1]
            self._buckets[-1] = (start, answered + 1, dropped + abandoned)
        else:
            self._buckets.append((start, 1, int(abandoned)))
        self.answered += 1
        self.abandoned += abandoned

    def rate(self) -> float:
        return self.abandoned / self.answered if self.answered else 0.0

    def remaining(self, at: float) -> float:
        """Abandons still allowed now without exceeding the limit over the window (negative when over)."""
        self._expire(at)
        return self.limit * self.answered - self.abandoned

    def _expire(self, at: float) -> None:
        while self._buckets and self._buckets[0][0] + self.bucket <= at - self.window:
            _, answered, dropped = self._buckets.popleft()
            self.answered -= answered
            self.abandoned -= dropped
