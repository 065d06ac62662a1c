"""What a pacer sees and hears: a snapshot of the floor (agents and lines), the outcomes it learns from, and
the contract every pacer keeps. Times are seconds on one clock (the wall clock or a simulated one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cartera.contact.segments import Segment

#: Seconds a person who answered may wait for an agent before the call counts as abandoned (47 CFR 64.1200).
ABANDON_AFTER = 2.0


@dataclass(frozen=True, slots=True)
class Floor:
    """The campaign's agents and lines at one instant.

    ``talking`` and ``wrapping`` hold, per busy agent, the seconds since its call was connected or since it
    began its wrap-up; ``ringing`` holds, per call not yet answered, the seconds since it was dialled, and
    ``ringing_segments`` the list segment (days past due) of each, in the same order (empty: all unknown);
    ``waiting`` counts calls answered by a person and not yet given an agent; ``next_segments``: the segments
    of the accounts the list would call next, in its order (``None``: unknown; empty: nothing known).
    """

    now: float
    time_of_day: float
    ready: int
    talking: tuple[float, ...] = ()
    wrapping: tuple[float, ...] = ()
    ringing: tuple[float, ...] = ()
    waiting: int = 0
    ringing_segments: tuple[Segment | None, ...] = ()
    next_segments: tuple[Segment | None, ...] = ()

    def __post_init__(self) -> None:
        if self.ringing_segments and len(self.ringing_segments) != len(self.ringing):
            raise ValueError(f"{len(self.ringing_segments)} segments for {len(self.ringing)} calls ringing")

    @property
    def agents(self) -> int:
        """Agents logged in and not paused."""
        return self.ready + len(self.talking) + len(self.wrapping)

    @property
    def hour(self) -> int:
        return int(self.time_of_day // 3600) % 24

    def ringing_calls(self) -> list[tuple[float, Segment | None]]:
        """Each call ringing: seconds since it was dialled, and its segment."""
        return list(zip(self.ringing, self.ringing_segments or (None,) * len(self.ringing), strict=True))


@dataclass(frozen=True, slots=True)
class DialEnded:
    """A dialled call stopped ringing: answered by a person (``live``) or not (no answer, busy, machine);
    ``segment``: its account's list segment (days past due), ``None`` when unknown."""

    at: float
    hour: int
    seconds: float
    live: bool
    segment: Segment | None = None


@dataclass(frozen=True, slots=True)
class LiveCallSettled:
    """A call answered by a person reached an agent in time, or was abandoned."""

    at: float
    abandoned: bool


@dataclass(frozen=True, slots=True)
class AgentCycle:
    """An agent finished a call: its talk and its wrap-up, in seconds."""

    talk: float
    wrap: float


PacingEvent = DialEnded | LiveCallSettled | AgentCycle


class Pacer(Protocol):
    """Decides, at any instant, how many new calls to place; learns from what happens to them."""

    name: str

    def calls_to_place(self, floor: Floor) -> int:
        """New calls to place now (0 or more)."""
        ...

    def observe(self, event: PacingEvent) -> None:
        """Learn from one outcome."""
        ...
