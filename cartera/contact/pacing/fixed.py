"""Pacers without a model: one call per ready agent (progressive), or a fixed number of lines per ready agent
(the dialers' ``dial_ratio``, today's pacing)."""

from __future__ import annotations

from dataclasses import dataclass

from cartera.contact.pacing.floor import Floor, PacingEvent
from cartera.core.adapters import dial_slots


@dataclass
class ProgressivePacer:
    """One call in flight per ready agent: never abandons while agents wait for it, idles them meanwhile."""

    name: str = "progressive"

    def calls_to_place(self, floor: Floor) -> int:
        return max(0, floor.ready - len(floor.ringing) - floor.waiting)

    def observe(self, event: PacingEvent) -> None:
        """Learns nothing."""


@dataclass
class RatioPacer:
    """``dial_ratio`` calls in flight per ready agent (rounded down), as the dialers' ``capacity`` counts."""

    dial_ratio: float = 1.5
    name: str = "ratio"

    def __post_init__(self) -> None:
        if self.dial_ratio < 1.0:
            raise ValueError(f"dial ratio must be at least 1, not {self.dial_ratio}")

    def calls_to_place(self, floor: Floor) -> int:
        return max(0, dial_slots(floor.ready, self.dial_ratio) - len(floor.ringing) - floor.waiting)

    def observe(self, event: PacingEvent) -> None:
        """Learns nothing."""
