"""Pacing on a simulated call centre: the real pacers of ``cartera.contact.pacing`` on a simulated clock.

A discrete-event simulation (its own event queue): ``--agents`` agents logged in for ``--hours`` from 09:00,
each ready, talking or in wrap-up. A dialled debtor answers in person with a probability that varies by hour
of day (around ``--answer-rate``), by the debtor's segment of days past due (1.5x for 1-30 days down to 0.5x for
180+, the five segments equally common) and by debtor (log-normal spread), after 4 to 16 s of ringing;
otherwise the line rings out after 25 s (60%) or fails after 1 to 6 s (busy, unreachable, 40%). A person who
answers and finds no agent within 2 s is abandoned. Talk is log-normal with a mean of 180 s, wrap-up log-normal
around 30 s. Of those answering, 70% are the right party; 25% of right-party contacts promise to pay. The pacer
is asked for new calls after every instant at which something happened (and every second), and hears every
outcome with its call's segment; it sees the segments of the calls ringing and of the list's next
``LOOKAHEAD`` debtors (drawn in advance).

Occupancy is talk plus wrap-up time over staffed time; the abandonment rate is abandoned over answered in
person. Usage::

    .venv/bin/python bench/bench_pacing.py --agents 50 --answer-rate 0.3 --hours 8 --json
    .venv/bin/python bench/bench_pacing.py --matrix [--json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from cartera.contact.pacing import (
    AdaptSettings,
    AgentCycle,
    DialEnded,
    Floor,
    LiveCallSettled,
    Pacer,
    PredictivePacer,
    ProgressivePacer,
    RatioPacer,
    VicidialPacer,
)
from cartera.contact.pacing.vicidial import hhmm
from cartera.contact.segments import SEGMENTS, Segment

START = 9 * 3600.0
#: live-answer rate by hour from 09:00, relative to the day's mean
HOUR_FACTORS = (0.85, 1.0, 1.1, 0.95, 0.8, 0.95, 1.15, 1.2)
RIGHT_PARTY = 0.7
PROMISE = 0.25
TALK_MEAN, TALK_SIGMA = 180.0, 0.6
WRAP_MEAN, WRAP_SIGMA = 30.0, 0.3
RING_OUT = 25.0
DEBTOR_SIGMA = 0.5
#: live-answer rate by segment of days past due, relative to the day's mean (segments equally common: mean 1)
SEGMENT_FACTORS: dict[Segment, float] = dict(zip(SEGMENTS, (1.5, 1.2, 1.0, 0.8, 0.5), strict=True))
#: debtors of the list the pacer sees ahead (their segments)
LOOKAHEAD = 20
#: a debtor of the list: its segment and its own answer factor
ListDebtor: TypeAlias = tuple[Segment, float]


class Kind(IntEnum):
    ANSWER = 0
    NO_ANSWER = 1
    GIVE_UP = 2
    TALK_END = 3
    WRAP_END = 4
    TICK = 5


@dataclass(frozen=True)
class Scenario:
    agents: int
    answer_rate: float
    hours: float
    seed: int = 1


@dataclass(frozen=True)
class Result:
    strategy: str
    agents: int
    answer_rate: float
    hours: float
    occupancy: float
    abandon_rate: float
    rpc_per_agent_hour: float
    promises_per_agent_hour: float
    dials: int
    live_answers: int
    abandoned: int
    cpu_seconds: float


def lognormal(rng: random.Random, mean: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(mean) - sigma * sigma / 2, sigma)


class CallCentre:
    """One run: the agents, the lines and the event queue, driven by one pacer."""

    def __init__(self, scenario: Scenario, pacer: Pacer) -> None:
        self.scenario, self.pacer = scenario, pacer
        self.rng = random.Random(scenario.seed)
        self.list_rng = random.Random(scenario.seed + 1)
        self.now = START
        self.end = START + scenario.hours * 3600.0
        self.queue: list[tuple[float, int, Kind, int]] = []
        self.seq = 0
        self.ready: list[int] = list(range(scenario.agents))
        self.talking: dict[int, float] = {}
        self.wrapping: dict[int, tuple[float, float]] = {}
        self.ringing: dict[int, float] = {}
        self.segments: dict[int, Segment] = {}
        self.upcoming: deque[ListDebtor] = deque()
        self.waiting: deque[int] = deque()
        self.answered_at: dict[int, float] = {}
        self.busy_seconds = 0.0
        self.dials = self.live = self.abandoned = self.rpc = self.promises = 0

    def schedule(self, at: float, kind: Kind, item: int) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, item))

    def run(self) -> None:
        self.schedule(self.now, Kind.TICK, 0)
        while self.queue:
            at = self.queue[0][0]
            if at >= self.end:
                break
            self.now = at
            while self.queue and self.queue[0][0] == at:
                _, _, kind, item = heapq.heappop(self.queue)
                self.handle(kind, item)
            self.place(self.pacer.calls_to_place(self.floor()))
        for started in self.talking.values():
            self.busy_seconds += self.end - started
        for started, _ in self.wrapping.values():
            self.busy_seconds += self.end - started

    def floor(self) -> Floor:
        now = self.now
        return Floor(
            now=now,
            time_of_day=now % 86_400,
            ready=len(self.ready),
            talking=tuple(now - started for started in self.talking.values()),
            wrapping=tuple(now - started for started, _ in self.wrapping.values()),
            ringing=tuple(now - dialled for dialled in self.ringing.values()),
            waiting=len(self.waiting),
            ringing_segments=tuple(self.segments.get(call) for call in self.ringing),
            next_segments=tuple(segment for segment, _ in self.upcoming),
        )

    def hour_factor(self) -> float:
        return HOUR_FACTORS[int((self.now - START) // 3600) % len(HOUR_FACTORS)]

    def next_on_list(self) -> ListDebtor:
        """The list's next debtor; the ``LOOKAHEAD`` after it are drawn too."""
        while len(self.upcoming) <= LOOKAHEAD:
            rng = self.list_rng
            factor = math.exp(rng.gauss(-DEBTOR_SIGMA * DEBTOR_SIGMA / 2, DEBTOR_SIGMA))
            self.upcoming.append((rng.choice(SEGMENTS), factor))
        return self.upcoming.popleft()

    def place(self, calls: int) -> None:
        rng = self.rng
        for _ in range(calls):
            self.dials += 1
            call = self.dials
            self.ringing[call] = self.now
            segment, debtor = self.next_on_list()
            self.segments[call] = segment
            rate = self.scenario.answer_rate * self.hour_factor() * SEGMENT_FACTORS[segment] * debtor
            if rng.random() < min(0.95, rate):
                self.schedule(self.now + rng.uniform(4.0, 16.0), Kind.ANSWER, call)
            elif rng.random() < 0.6:
                self.schedule(self.now + RING_OUT, Kind.NO_ANSWER, call)
            else:
                self.schedule(self.now + rng.uniform(1.0, 6.0), Kind.NO_ANSWER, call)

    def handle(self, kind: Kind, item: int) -> None:
        now = self.now
        if kind is Kind.TICK:
            self.schedule(now + 1.0, Kind.TICK, 0)
        elif kind is Kind.NO_ANSWER:
            self.dial_ended(item, live=False)
        elif kind is Kind.ANSWER:
            self.dial_ended(item, live=True)
            self.live += 1
            self.answered_at[item] = now
            if self.ready:
                self.connect(item)
            else:
                self.waiting.append(item)
                self.schedule(now + 2.0, Kind.GIVE_UP, item)
        elif kind is Kind.GIVE_UP:
            if item in self.answered_at:
                self.waiting.remove(item)
                del self.answered_at[item]
                self.abandoned += 1
                self.pacer.observe(LiveCallSettled(at=now, abandoned=True))
        elif kind is Kind.TALK_END:
            started = self.talking.pop(item)
            self.busy_seconds += now - started
            self.wrapping[item] = (now, now - started)
            self.schedule(now + lognormal(self.rng, WRAP_MEAN, WRAP_SIGMA), Kind.WRAP_END, item)
        elif kind is Kind.WRAP_END:
            started, talked = self.wrapping.pop(item)
            self.busy_seconds += now - started
            self.pacer.observe(AgentCycle(talk=talked, wrap=now - started))
            self.ready.append(item)
            if self.waiting:
                self.connect(self.waiting.popleft())

    def dial_ended(self, call: int, *, live: bool) -> None:
        dialled, now = self.ringing.pop(call), self.now
        self.pacer.observe(DialEnded(now, int(now // 3600) % 24, now - dialled, live, self.segments.pop(call, None)))

    def connect(self, call: int) -> None:
        agent = self.ready.pop()
        del self.answered_at[call]
        self.talking[agent] = self.now
        self.pacer.observe(LiveCallSettled(at=self.now, abandoned=False))
        if self.rng.random() < RIGHT_PARTY:
            self.rpc += 1
            self.promises += self.rng.random() < PROMISE
        self.schedule(self.now + lognormal(self.rng, TALK_MEAN, TALK_SIGMA), Kind.TALK_END, agent)

    def result(self, cpu_seconds: float) -> Result:
        scenario = self.scenario
        agent_hours = scenario.agents * scenario.hours
        return Result(
            strategy=self.pacer.name,
            agents=scenario.agents,
            answer_rate=scenario.answer_rate,
            hours=scenario.hours,
            occupancy=round(self.busy_seconds / (agent_hours * 3600.0), 4),
            abandon_rate=round(self.abandoned / self.live, 4) if self.live else 0.0,
            rpc_per_agent_hour=round(self.rpc / agent_hours, 3),
            promises_per_agent_hour=round(self.promises / agent_hours, 3),
            dials=self.dials,
            live_answers=self.live,
            abandoned=self.abandoned,
            cpu_seconds=round(cpu_seconds, 2),
        )


def vicidial(scenario: Scenario) -> Pacer:
    """ADAPT_TAPERED with its defaults, except the latest calling time: the end of the simulated shift, as a
    centre sets it (the default 21:00 leaves a 09:00-17:00 day untapered until 11:00, and barely after)."""
    return VicidialPacer(AdaptSettings(adaptive_latest_server_time=hhmm(START + scenario.hours * 3600.0)))


STRATEGIES: dict[str, Callable[[Scenario], Pacer]] = {
    "progressive": lambda _: ProgressivePacer(),
    "ratio": lambda _: RatioPacer(dial_ratio=1.5),
    "vicidial": vicidial,
    "cartera": lambda _: PredictivePacer(),
}


def simulate(scenario: Scenario, strategy: str) -> Result:
    centre = CallCentre(scenario, STRATEGIES[strategy](scenario))
    started = time.process_time()
    centre.run()
    return centre.result(time.process_time() - started)


def show(result: Result, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.__dict__), flush=True)
    else:
        print(
            f"{result.agents:>4} agents {result.answer_rate:>4.0%} answer  {result.strategy:<12}"
            f" occupancy {result.occupancy:6.1%}  abandoned {result.abandon_rate:5.2%}"
            f"  RPC/agent-h {result.rpc_per_agent_hour:5.2f}  promises/agent-h {result.promises_per_agent_hour:5.2f}"
            f"  ({result.dials} dials, {result.cpu_seconds:.1f} s CPU)",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--answer-rate", type=float, default=0.3)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--strategies", default=",".join(STRATEGIES), help="comma-separated, of " + ", ".join(STRATEGIES)
    )
    parser.add_argument("--matrix", action="store_true", help="10, 50 and 200 agents at 10%% and 30%% answer")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    strategies = [name.strip() for name in args.strategies.split(",") if name.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"unknown strategies: {', '.join(unknown)}")
    if args.agents < 1 or not 0.0 < args.answer_rate < 1.0 or args.hours <= 0:
        parser.error("--agents must be at least 1, --answer-rate between 0 and 1, --hours positive")
    cells = (
        [(agents, rate) for rate in (0.1, 0.3) for agents in (10, 50, 200)]
        if args.matrix
        else [(args.agents, args.answer_rate)]
    )
    for agents, rate in cells:
        for strategy in strategies:
            show(simulate(Scenario(agents, rate, args.hours, args.seed), strategy), args.json)


if __name__ == "__main__":
    main()
