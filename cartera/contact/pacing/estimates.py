"""Online estimates from the campaign's own calls, each forgetting the past at a set half-life: the live-answer
probability by hour and list segment, when calls are answered or give up ringing, talk and wrap-up times, and
from these when a busy agent will be free and whether a ringing call will still reach a person."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from itertools import count
from typing import TypeVar

from cartera.contact.pacing.floor import AgentCycle, DialEnded, PacingEvent
from cartera.contact.segments import Segment

_RESCALE = 1e12
K = TypeVar("K")


def _decay(half_life: float) -> float:
    if half_life <= 0:
        raise ValueError(f"half-life must be positive, not {half_life}")
    return float(0.5 ** (1.0 / half_life))


def normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


class AnswerRate:
    """P(a dial is answered by a person), per hour of day and list segment (days past due), shrunk empirical-Bayes
    style: the campaign's recent overall rate starts from ``prior`` with the weight of ``prior_weight`` calls;
    each hour's rate and each segment's are shrunk towards it; an (hour, segment) cell towards its hour's rate
    times its segment's rate relative to the overall one (so a segment seen at other hours carries its
    difference into a new hour). An unknown segment (``None``) has its hour's rate."""

    def __init__(self, prior: float = 0.35, prior_weight: float = 20.0, half_life: float = 500.0) -> None:
        if not 0.0 < prior < 1.0:
            raise ValueError(f"prior answer probability must be between 0 and 1, not {prior}")
        self._prior, self._weight, self._keep = prior, prior_weight, _decay(half_life)
        self._live = self._calls = 0.0
        self._hours: dict[int, tuple[float, float]] = {}
        self._segments: dict[Segment, tuple[float, float]] = {}
        self._cells: dict[tuple[int, Segment], tuple[float, float]] = {}

    def observe(self, hour: int, live: bool, segment: Segment | None = None) -> None:
        self._live = self._live * self._keep + live
        self._calls = self._calls * self._keep + 1.0
        _count(self._hours, hour, live, self._keep)
        if segment is not None:
            _count(self._segments, segment, live, self._keep)
            _count(self._cells, (hour, segment), live, self._keep)

    def overall(self) -> float:
        return (self._live + self._weight * self._prior) / (self._calls + self._weight)

    def probability(self, hour: int, segment: Segment | None = None) -> float:
        overall = self.overall()
        hour_rate = self._shrunk(self._hours.get(hour), overall)
        if segment is None:
            return hour_rate
        segment_rate = self._shrunk(self._segments.get(segment), overall)
        return self._shrunk(self._cells.get((hour, segment)), min(hour_rate * segment_rate / overall, 0.99))

    def _shrunk(self, counts: tuple[float, float] | None, towards: float) -> float:
        live, calls = counts or (0.0, 0.0)
        return (live + self._weight * towards) / (calls + self._weight)


def _count(cells: dict[K, tuple[float, float]], key: K, live: bool, keep: float) -> None:
    """One more call (live or not) in ``cells[key]``, its earlier ones decayed by ``keep``."""
    cell_live, cell_calls = cells.get(key, (0.0, 0.0))
    cells[key] = (cell_live * keep + live, cell_calls * keep + 1.0)


class Durations:
    """A distribution of seconds (0 to ``horizon``) as a decayed histogram of one-second bins."""

    def __init__(self, horizon: int, prior: dict[int, float], half_life: float = 500.0) -> None:
        self._bins = [0.0] * (horizon + 1)
        self._keep, self._weight = _decay(half_life), 1.0
        for second, weight in prior.items():
            self._bins[min(second, horizon)] += weight
        self._tail: list[float] = []

    def observe(self, seconds: float) -> None:
        self._weight /= self._keep
        if self._weight > _RESCALE:
            self._bins = [count / self._weight for count in self._bins]
            self._weight = 1.0
        self._bins[min(max(int(seconds), 0), len(self._bins) - 1)] += self._weight
        self._tail = []

    def survival(self, seconds: float) -> float:
        """P(duration > seconds)."""
        if not self._tail:
            total, running = sum(self._bins), 0.0
            self._tail = [0.0] * len(self._bins)
            for index in range(len(self._bins) - 1, -1, -1):
                running += self._bins[index]
                self._tail[index] = running / total
        # A duration in bin k lies in [k, k+1): beyond ``seconds`` with certainty from the next bin on.
        index = int(seconds) + 1
        return self._tail[index] if index < len(self._tail) else 0.0

    def mean(self) -> float:
        return sum((second + 0.5) * count for second, count in enumerate(self._bins)) / sum(self._bins)


class LogNormal:
    """A log-normal time (talk, wrap-up) from the decayed mean and variance of the observed logs."""

    def __init__(self, mean: float, sigma: float = 0.5, prior_weight: float = 10.0, half_life: float = 300.0) -> None:
        if mean <= 0 or sigma <= 0:
            raise ValueError("a log-normal prior needs a positive mean and sigma")
        mu = math.log(mean) - sigma * sigma / 2
        self._keep, self._n = _decay(half_life), prior_weight
        self._sum, self._squares = mu * prior_weight, (sigma * sigma + mu * mu) * prior_weight

    def observe(self, seconds: float) -> None:
        value = math.log(max(seconds, 0.1))
        self._n = self._n * self._keep + 1.0
        self._sum = self._sum * self._keep + value
        self._squares = self._squares * self._keep + value * value

    @property
    def mu(self) -> float:
        return self._sum / self._n

    @property
    def sigma(self) -> float:
        return math.sqrt(max(self._squares / self._n - self.mu**2, 1e-6))

    def mean(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)

    def cdf(self, seconds: float) -> float:
        if seconds <= 0:
            return 0.0
        return normal_cdf((math.log(seconds) - self.mu) / self.sigma)


@dataclass
class Estimates:
    """Everything the predictive pacer knows about the campaign's calls, learnt from its events.

    A dial's outcome counts towards the answer rate only once every call dialled before it has ended
    (``ring_limit`` seconds after it was dialled): quick failures end first, and counting them at once would
    make the rate look lower than it is.
    """

    answer: AnswerRate = field(default_factory=AnswerRate)
    live_after: Durations = field(default_factory=lambda: Durations(120, dict.fromkeys(range(3, 21), 0.5)))
    other_after: Durations = field(default_factory=lambda: Durations(120, {2: 3.0, 25: 6.0}))
    talk: LogNormal = field(default_factory=lambda: LogNormal(180.0))
    wrap: LogNormal = field(default_factory=lambda: LogNormal(30.0, sigma=0.3))
    ring_limit: float = 30.0
    _unsettled: list[tuple[float, int, DialEnded]] = field(default_factory=list)
    _order: count[int] = field(default_factory=count)

    def observe(self, event: PacingEvent) -> None:
        if isinstance(event, DialEnded):
            (self.live_after if event.live else self.other_after).observe(event.seconds)
            heapq.heappush(self._unsettled, (event.at - event.seconds, next(self._order), event))
            while self._unsettled and self._unsettled[0][0] <= event.at - self.ring_limit:
                ended = heapq.heappop(self._unsettled)[2]
                self.answer.observe(ended.hour, ended.live, ended.segment)
        elif isinstance(event, AgentCycle):
            self.talk.observe(event.talk)
            self.wrap.observe(event.wrap)

    def answers_within(self, rang: float, within: float, p: float) -> float:
        """P(a call ringing for ``rang`` seconds is answered by a person in the next ``within`` seconds), ``p``
        the probability that it is answered by a person at all (:meth:`AnswerRate.probability`)."""
        live_left, other_left = p * self.live_after.survival(rang), (1 - p) * self.other_after.survival(rang)
        if live_left + other_left <= 0:
            return 0.0
        return p * (self.live_after.survival(rang) - self.live_after.survival(rang + within)) / (live_left + other_left)

    def talker_free_within(self, talked: float, within: float) -> float:
        """P(an agent ``talked`` seconds into a call is ready again within ``within`` seconds)."""
        done_by = talked + within - self.wrap.mean()
        if done_by <= talked:
            return 0.0
        ongoing = 1.0 - self.talk.cdf(talked)
        if ongoing <= 1e-9:
            return 1.0
        return (self.talk.cdf(done_by) - self.talk.cdf(talked)) / ongoing

    def wrapper_free_within(self, wrapped: float, within: float) -> float:
        """P(an agent ``wrapped`` seconds into its wrap-up is ready again within ``within`` seconds)."""
        ongoing = 1.0 - self.wrap.cdf(wrapped)
        if ongoing <= 1e-9:
            return 1.0
        return (self.wrap.cdf(wrapped + within) - self.wrap.cdf(wrapped)) / ongoing
