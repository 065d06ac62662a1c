"""Cartera's predictive pacer: at every event it compares, at a few instants over the next seconds, the calls
that will be answered by a person (those ringing, and each new one, each at its list segment's rate) with the
agents that will be free by then (ready ones, and those ending their wrap-up), and places new calls while one
more call adds less than ``lam`` expected abandons per person reached. ``lam`` follows the abandons it sees
towards ``target`` (each abandon lowers it, each connected call raises it a little, but not while the budget
rather than ``lam`` holds calls back); the expected abandons of the calls in flight never exceed what is left of
the limit's budget; it never places fewer calls than progressive dialling, and below ``min_team`` agents it
dials progressively."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from cartera.contact.pacing.budget import AbandonBudget
from cartera.contact.pacing.estimates import Estimates, normal_cdf
from cartera.contact.pacing.floor import ABANDON_AFTER, Floor, LiveCallSettled, PacingEvent

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class PredictiveSettings:
    """``target``: the abandon rate aimed at (under the limit, for the noise); ``min_team``: fewer agents than
    this are paced progressively; ``horizons``: the instants (s from now) at which supply and demand are
    compared; ``max_lines_per_agent``: calls ringing per agent at most; ``step``: how far ``lam`` moves per
    person answering for a team of ``step_team`` agents (a larger team hears more answers a minute, so each
    moves it less)."""

    target: float = 0.02
    min_team: int = 5
    horizons: tuple[float, ...] = (2.0, 5.0, 8.0, 11.0, 14.0, 17.0, 20.0)
    max_lines_per_agent: float = 10.0
    start_lam: float = 0.01
    step: float = 0.3
    step_team: int = 20

    def __post_init__(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"target abandon rate must be between 0 and 1, not {self.target}")
        if self.min_team < 1 or not self.horizons or min(self.horizons) <= 0:
            raise ValueError("min_team must be at least 1 and horizons positive")


def expected_excess(mean: float, variance: float) -> float:
    """E[max(0, X)] for X normal with this mean and variance."""
    if variance <= 1e-12:
        return max(0.0, mean)
    sd = math.sqrt(variance)
    z = mean / sd
    return mean * normal_cdf(z) + sd * _INV_SQRT_2PI * math.exp(-0.5 * z * z)


@dataclass
class Prediction:
    """The excess of answered calls over free agents at each horizon, as a normal mean and variance, and
    what one more call adds to each."""

    means: list[float]
    variances: list[float]
    add_mean: list[float]
    add_variance: list[float]
    answer_probability: float

    def abandons(self, extra: int) -> float:
        """Expected abandons if ``extra`` more calls are placed now."""
        return max(
            expected_excess(m + extra * am, v + extra * av)
            for m, v, am, av in zip(self.means, self.variances, self.add_mean, self.add_variance, strict=True)
        )

    def live_answers(self, ringing: float, extra: int) -> float:
        return ringing + extra * self.answer_probability


@dataclass
class PredictivePacer:
    settings: PredictiveSettings = field(default_factory=PredictiveSettings)
    estimates: Estimates = field(default_factory=Estimates)
    budget: AbandonBudget = field(default_factory=AbandonBudget)
    name: str = "cartera"
    lam: float = field(init=False)
    _team: int = field(init=False, default=1)
    _lam_bound: bool = field(init=False, default=True)

    def __post_init__(self) -> None:
        self.lam = self.settings.start_lam

    def observe(self, event: PacingEvent) -> None:
        self.estimates.observe(event)
        if isinstance(event, LiveCallSettled):
            self.budget.record(event.at, abandoned=event.abandoned)
            target, step = self.settings.target, self.settings.step * min(1.0, self.settings.step_team / self._team)
            if event.abandoned:
                self.lam *= 1 - step
            elif self._lam_bound:  # no wind-up while the budget, not lam, holds the calls back
                self.lam *= 1 + step * target / (1 - target)
            self.lam = min(max(self.lam, 1e-4), 1.0)

    def predict(self, floor: Floor) -> tuple[Prediction, float]:
        """The prediction for new calls placed now, and the expected person-answers of the calls ringing.

        Each ringing call counts with its own segment's answer rate; each new call as one drawn from the segments
        the list calls next (its mix, ``floor.next_segments``; none known: the hour's rate). Each answer and each
        agent freeing up counts with the variance of a Poisson count (its mean), not of a Bernoulli trial: the
        normal approximation of a few such events underrates its tail, and with it the abandons of a small team."""
        est, hour = self.estimates, floor.hour
        rang = Counter((int(seconds), segment) for seconds, segment in floor.ringing_calls())
        wrapped = Counter(int(s) for s in floor.wrapping)
        mix = Counter(floor.next_segments or (None,))
        rates = {segment: est.answer.probability(hour, segment) for segment in {*mix, *(s for _, s in rang)}}
        share = 1.0 / sum(mix.values())
        p = share * sum(count * rates[segment] for segment, count in mix.items())
        means, variances, add_mean, add_variance = [], [], [], []
        for horizon in self.settings.horizons:
            within = horizon + ABANDON_AFTER
            mean, variance = float(floor.waiting - floor.ready), 0.0
            for (seconds, segment), count in rang.items():
                q = est.answers_within(seconds + 0.5, horizon, rates[segment])
                mean += count * q
                variance += count * q
            for seconds, count in wrapped.items():
                q = est.wrapper_free_within(seconds + 0.5, within)
                mean -= count * q
                variance += count * q
            if within > est.wrap.mean():
                for talked in floor.talking:
                    q = est.talker_free_within(talked, within)
                    mean -= q
                    variance += q
            fresh = share * sum(count * est.answers_within(0.0, horizon, rates[seg]) for seg, count in mix.items())
            means.append(mean)
            variances.append(variance)
            add_mean.append(fresh)
            add_variance.append(fresh)
        ringing_live = sum(
            count * est.answers_within(seconds + 0.5, 600.0, rates[segment])
            for (seconds, segment), count in rang.items()
        )
        return Prediction(means, variances, add_mean, add_variance, p), ringing_live + floor.waiting

    def calls_to_place(self, floor: Floor) -> int:
        """Never fewer calls than progressive dialling places (those cannot be abandoned); more while each adds
        under ``lam`` expected abandons per person reached and all of them stay within the budget: what is
        left of it (or minus what is owed), plus the limit's share of the calls in flight."""
        progressive = max(0, floor.ready - len(floor.ringing) - floor.waiting)
        self._team = max(1, floor.agents)
        if floor.agents < self.settings.min_team:
            return progressive
        lines = int(self.settings.max_lines_per_agent * floor.agents) - len(floor.ringing) - floor.waiting
        if lines <= progressive:
            return progressive
        prediction, live_in_flight = self.predict(floor)
        allowed, limit = self.budget.remaining(floor.now), self.budget.limit
        threshold = self.lam * prediction.answer_probability
        placed, abandons = progressive, prediction.abandons(progressive)
        while placed < lines:
            more = prediction.abandons(placed + 1)
            if more - abandons > threshold:
                self._lam_bound = True
                break
            if more > allowed + limit * prediction.live_answers(live_in_flight, placed + 1):
                self._lam_bound = False
                break
            placed, abandons = placed + 1, more
        return placed
