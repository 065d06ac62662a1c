"""A port of VICIdial's ADAPT_TAPERED pacing (``bin/AST_VDadapt.pl`` build 230309, ``calculate_dial_level``,
and the call count of ``bin/AST_VDauto_dial.pl``), as the baseline the predictive pacer is measured against.

Every second it samples ready agents and calls waiting for an agent; every 15 s it moves the dial level by the
averaged (ready - waiting) per agent, scaled by the intensity; every 60 s it refreshes its drop counts, and
when today's drops exceed the limit it multiplies the level by the hours left until the last calling time
(HHMM arithmetic, capped at 1). Every 2.5 s the dialer keeps ``level x (talking + wrapping + ready agents)``
lines up, counting calls ringing, waiting and connected. No model of answer rate or handle time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from cartera.contact.pacing.floor import DialEnded, Floor, LiveCallSettled, PacingEvent


@dataclass(frozen=True)
class AdaptSettings:
    """The campaign's adaptive settings, named and defaulted as in ``vicidial_campaigns``."""

    adaptive_dropped_percentage: float = 3.0
    adaptive_maximum_level: float = 3.0
    adaptive_intensity: float = 0.0
    adaptive_dl_diff_target: float = 0.0
    adaptive_latest_server_time: int = 2100
    auto_dial_level: float = 1.0
    stat_samples: int = 15
    adapt_every: float = 15.0
    drops_every: float = 60.0
    dial_every: float = 2.5


@dataclass(frozen=True)
class DropCounts:
    calls_today: int = 0
    answers_today: int = 0
    drops_today: int = 0
    calls_one: int = 0
    drops_one: int = 0

    @property
    def drops_answers_today_pct(self) -> float:
        return 100.0 * self.drops_today / self.answers_today if self.answers_today else 0.0

    @property
    def drops_one_pct(self) -> float:
        return 100.0 * self.drops_one / self.calls_one if self.calls_one else 0.0


def hhmm(time_of_day: float) -> int:
    """The server time as VICIdial's ``current_hourmin``: 14:30 is 1430."""
    minutes = int(time_of_day // 60) % 1440
    return (minutes // 60) * 100 + minutes % 60


def adapt_level(
    level: float,
    *,
    differential: float,
    agents_average: float,
    counts: DropCounts,
    now_hhmm: int,
    settings: AdaptSettings,
) -> float:
    """One run of ``calculate_dial_level`` for an ADAPT_TAPERED campaign: the new ``auto_dial_level``."""
    target = differential + settings.adaptive_dl_diff_target
    pct_raw = 100.0 * target / agents_average if target != 0 and agents_average != 0 else 0.0
    intensity_mul = settings.adaptive_intensity / 100.0
    intensity_diff = pct_raw * abs(intensity_mul - 1) if pct_raw < 0 else pct_raw * (intensity_mul + 1)
    new = level * (intensity_diff / 100.0 + 1)
    new = min(new, settings.adaptive_maximum_level)
    new = max(new, 1.0)
    if counts.calls_one > 20 and counts.drops_one_pct > 50:
        new /= 2
    if counts.calls_today > 50 and counts.drops_answers_today_pct > settings.adaptive_dropped_percentage:
        hours_left = settings.adaptive_latest_server_time - now_hhmm
        tapered_rate = 1.0 if hours_left > 1000 else hours_left / 1000
        new = 1.0 if hours_left < 0 else new * tapered_rate
    return max(new, 1.0)


@dataclass
class VicidialPacer:
    settings: AdaptSettings = field(default_factory=AdaptSettings)
    name: str = "vicidial"
    level: float = field(init=False)
    counts: DropCounts = field(init=False, default_factory=DropCounts)
    _samples: deque[tuple[int, int, int]] = field(init=False)
    _next_sample: float | None = field(init=False, default=None)
    _next_adapt: float = field(init=False, default=0.0)
    _next_drops: float = field(init=False, default=0.0)
    _next_dial: float = field(init=False, default=0.0)
    _day: int = field(init=False, default=0)
    _today: list[int] = field(init=False, default_factory=lambda: [0, 0, 0])
    _last_minute: deque[tuple[float, bool]] = field(init=False, default_factory=deque)

    def __post_init__(self) -> None:
        self.level = self.settings.auto_dial_level
        self._samples = deque(maxlen=self.settings.stat_samples)

    def calls_to_place(self, floor: Floor) -> int:
        if self._next_sample is None:
            self._next_sample = floor.now
            self._next_adapt = floor.now + self.settings.adapt_every
            self._next_drops = floor.now
        while floor.now >= self._next_sample:
            self._samples.append((floor.ready, floor.waiting, floor.agents))
            self._next_sample += 1.0
        if floor.now >= self._next_drops:
            self._refresh_drops(floor.now)
            self._next_drops = floor.now + self.settings.drops_every
        if floor.now >= self._next_adapt:
            count = len(self._samples)
            differential = sum(ready - waiting for ready, waiting, _ in self._samples) / count
            agents_average = sum(agents for _, _, agents in self._samples) / count
            self.level = adapt_level(
                self.level,
                differential=differential,
                agents_average=agents_average,
                counts=self.counts,
                now_hhmm=hhmm(floor.time_of_day),
                settings=self.settings,
            )
            self._next_adapt = floor.now + self.settings.adapt_every
        if floor.now < self._next_dial:
            return 0
        self._next_dial = floor.now + self.settings.dial_every
        goal = round(self.level * floor.agents)
        existing = len(floor.ringing) + floor.waiting + len(floor.talking)
        return max(0, goal - existing)

    def observe(self, event: PacingEvent) -> None:
        if isinstance(event, DialEnded):
            self._roll_day(event.at)
            self._today[0] += 1
            self._today[1] += event.live
            self._last_minute.append((event.at, False))
        elif isinstance(event, LiveCallSettled) and event.abandoned:
            self._roll_day(event.at)
            self._today[2] += 1
            self._last_minute.append((event.at, True))

    def _roll_day(self, at: float) -> None:
        day = int(at // 86_400)
        if day != self._day:
            self._day, self._today = day, [0, 0, 0]

    def _refresh_drops(self, now: float) -> None:
        while self._last_minute and self._last_minute[0][0] < now - 60:
            self._last_minute.popleft()
        drops_one = sum(dropped for _, dropped in self._last_minute)
        calls_today, answers_today, drops_today = self._today
        self.counts = DropCounts(calls_today, answers_today, drops_today, len(self._last_minute) - drops_one, drops_one)
