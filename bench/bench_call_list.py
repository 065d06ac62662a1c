"""The campaign's list order against FIFO, on the pacing bench's simulated call centre (``bench_pacing.CallCentre``,
its pacers, agents, ringing, talk and wrap-up), with a list of debtors instead of anonymous calls.

Each debtor has one number, a balance (log-normal around 1,000,000), a reach of its own (log-normal spread around
``--answer-rate``), an hour profile (morning, flat or evening: the same 8 hours weighted differently) and a chance
that whoever answers is the debtor (0.9 for 70% of numbers, 0.3 for the rest: a relative's or a work line), and days
past due (``DUE_MIX``): the chance that a debtor reached promises to pay falls with them (``PAYMENT``). A debtor is
called at most 3 times a day, 2 hours apart, and not again that day once reached (a right-party contact).

``fifo`` calls the longest due first, as the campaign did; ``value`` is :func:`cartera.contact.listing.rank` with a
:class:`cartera.contact.reach.ReachModel` learned from ``--history`` earlier days on the same weekday (worked FIFO,
the same for each) and, online, from the day's own calls, every due debtor scored again each hour and every 15
simulated minutes (the campaign's ``relearn_minutes``); ``segment`` is the same with the listing's P(payment |
segment) term (``payment_by_segment`` set to ``PAYMENT``, as a creditor who knows its curve would). The measured day
is the next one; each order runs it with the same pacer (``--pacer``: Cartera's predictive, or progressive) and
seed. Usage::

    .venv/bin/python bench/bench_call_list.py --agents 50 --answer-rate 0.3 --hours 8 [--json]
"""

from __future__ import annotations

import argparse
import copy
import heapq
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from bench_pacing import START, TALK_MEAN, TALK_SIGMA, CallCentre, Kind, Scenario, lognormal

from cartera.contact.listing import Candidate, rank
from cartera.contact.pacing import LiveCallSettled, Pacer, PredictivePacer, ProgressivePacer
from cartera.contact.reach import ReachModel
from cartera.contact.segments import Segment, segment_of
from cartera.core.config import ListingConfig

PROFILES = (
    (1.5, 1.4, 1.2, 1.0, 0.8, 0.7, 0.6, 0.5),  # morning
    (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),  # flat
    (0.5, 0.6, 0.7, 0.9, 1.0, 1.2, 1.5, 1.8),  # evening
)
DEBTORS_PER_AGENT = 600
REACH_SIGMA = 0.9
MAX_TRIES, RETRY_S = 3, 2 * 3600.0
RESCORE_S = 15 * 60.0  #: the campaign's ``listing.relearn_minutes``: scores are kept that long (and per hour)
DAY_S = 86_400.0
MONDAY = datetime(2026, 11, 23, tzinfo=UTC)
#: P(a debtor reached promises to pay | days past due): falling with the days, about 0.26 over the population.
PAYMENT: dict[Segment, float] = {"1-30": 0.40, "31-60": 0.30, "61-90": 0.22, "91-180": 0.14, "180+": 0.07}
#: The population's days past due: each segment's share, its days drawn evenly within it (180+: to 720).
DUE_MIX: tuple[tuple[int, int, float], ...] = (
    (1, 30, 0.35),
    (31, 60, 0.20),
    (61, 90, 0.15),
    (91, 180, 0.15),
    (181, 720, 0.15),
)
ORDERS = {"fifo": None, "value": ListingConfig(), "segment": ListingConfig(payment_by_segment=PAYMENT)}


@dataclass
class Debtor:
    id: int
    phone: str
    balance: Decimal
    reach: float
    profile: tuple[float, ...]
    right_party: float
    due_on: date
    last_called: float = -math.inf  #: absolute simulated seconds
    tries: int = 0
    due_at: float = 0.0
    done: bool = False


@dataclass
class Day:
    """One day's list: who is due (a heap by score or by how long due), who waits for a retry, what each call is."""

    debtors: list[Debtor]
    order: str
    model: ReachModel
    week: int
    calls: dict[int, Debtor] = field(default_factory=dict)
    due: list[tuple[float, int]] = field(default_factory=list)  #: (key, id): -value, or how long due
    retries: list[tuple[float, int]] = field(default_factory=list)  #: (due_at, id)
    scored_at: float = -math.inf
    scored_hour: int = -1
    balance_reached: Decimal = Decimal(0)


def candidate(debtor: Debtor) -> Candidate:
    return Candidate(debtor.id, str(debtor.id), debtor.balance, "COP", (debtor.phone,), UTC, due_on=debtor.due_on)


def population(agents: int, answer_rate: float, seed: int) -> list[Debtor]:
    rng = random.Random(f"debtors/{seed}")
    debtors = []
    for n in range(agents * DEBTORS_PER_AGENT):
        reach = answer_rate * math.exp(rng.gauss(-REACH_SIGMA * REACH_SIGMA / 2, REACH_SIGMA))
        balance = Decimal(round(1_000_000 * math.exp(rng.gauss(-0.5, 1.0))))
        right_party = 0.9 if rng.random() < 0.7 else 0.3
        low, high, _ = rng.choices(DUE_MIX, [share for _, _, share in DUE_MIX])[0]
        due_on = MONDAY.date() - timedelta(days=rng.randint(low, high))
        debtors.append(Debtor(n, f"+57300{n:07d}", balance, reach, rng.choice(PROFILES), right_party, due_on))
    return debtors


class ListCallCentre(CallCentre):
    """The pacing bench's call centre dialling the list's debtors: who answers, and whether it is the debtor,
    depends on the number and the hour."""

    def __init__(self, scenario: Scenario, day: Day, pacer: Pacer) -> None:
        super().__init__(scenario, pacer)
        self.day = day
        for debtor in day.debtors:
            debtor.tries, debtor.due_at, debtor.done = 0, START, False
        day.due = [(self.key(debtor), debtor.id) for debtor in day.debtors]
        heapq.heapify(day.due)

    def moment(self) -> datetime:
        return MONDAY + timedelta(weeks=self.day.week, seconds=self.now)

    def hour(self) -> int:
        return int(self.now // 3600)  # Monday: the hour of the week is the hour of the day

    def key(self, debtor: Debtor) -> float:
        """fifo: when last called (never first); value, segment: minus the expected value the campaign's rank gives."""
        config = ORDERS[self.day.order]
        if config is None:
            return debtor.last_called
        return -rank([candidate(debtor)], self.day.model, self.moment(), config)[0].value

    def next_debtor(self) -> Debtor | None:
        day, now = self.day, self.now
        while day.retries and day.retries[0][0] <= now:
            _, debtor_id = heapq.heappop(day.retries)
            heapq.heappush(day.due, (self.key(day.debtors[debtor_id]), debtor_id))
        config = ORDERS[day.order]
        if config is not None and (now - day.scored_at >= RESCORE_S or self.hour() != day.scored_hour):
            due = [candidate(day.debtors[debtor_id]) for _, debtor_id in day.due]
            picks = rank(due, day.model, self.moment(), config)
            day.due = [(-pick.value, pick.account_id) for pick in picks]
            heapq.heapify(day.due)
            day.scored_at, day.scored_hour = now, self.hour()
        if not day.due:
            return None
        return day.debtors[heapq.heappop(day.due)[1]]

    def place(self, calls: int) -> None:
        rng, slot = self.rng, int((self.now - START) // 3600)
        for _ in range(calls):
            debtor = self.next_debtor()
            if debtor is None:
                return
            self.dials += 1
            call = self.dials
            self.day.calls[call] = debtor
            debtor.tries += 1
            debtor.last_called = self.day.week * 7 * DAY_S + self.now
            self.ringing[call] = self.now
            factor = debtor.profile[slot % len(debtor.profile)]
            if rng.random() < min(0.95, debtor.reach * factor):
                self.schedule(self.now + rng.uniform(4.0, 16.0), Kind.ANSWER, call)
            elif rng.random() < 0.6:
                self.schedule(self.now + 25.0, Kind.NO_ANSWER, call)
            else:
                self.schedule(self.now + rng.uniform(1.0, 6.0), Kind.NO_ANSWER, call)

    def retry(self, debtor: Debtor) -> None:
        if not debtor.done and debtor.tries < MAX_TRIES:
            heapq.heappush(self.day.retries, (self.now + RETRY_S, debtor.id))

    def handle(self, kind: Kind, item: int) -> None:
        debtor = self.day.calls.get(item) if kind in (Kind.NO_ANSWER, Kind.GIVE_UP) else None
        abandoned = kind is Kind.GIVE_UP and item in self.answered_at
        super().handle(kind, item)
        if debtor is not None and kind is Kind.NO_ANSWER:
            self.day.model.observe(debtor.phone, self.hour(), reached=False)
            self.retry(debtor)
        elif debtor is not None and abandoned:
            self.retry(debtor)

    def connect(self, call: int) -> None:
        debtor = self.day.calls[call]
        agent = self.ready.pop()
        del self.answered_at[call]
        self.talking[agent] = self.now
        self.pacer.observe(LiveCallSettled(at=self.now, abandoned=False))
        reached = self.rng.random() < debtor.right_party
        self.day.model.observe(debtor.phone, self.hour(), reached=reached)
        if reached:
            self.rpc += 1
            days = (self.moment().date() - debtor.due_on).days
            self.promises += self.rng.random() < PAYMENT[segment_of(days) or "1-30"]
            self.day.balance_reached += debtor.balance
            debtor.done = True
        self.retry(debtor)
        self.schedule(self.now + lognormal(self.rng, TALK_MEAN, TALK_SIGMA), Kind.TALK_END, agent)


def run_day(
    scenario: Scenario, debtors: list[Debtor], order: str, model: ReachModel, *, week: int, pacer: str
) -> ListCallCentre:
    centre = ListCallCentre(scenario, Day(debtors, order, model, week), PACERS[pacer]())
    centre.run()
    return centre


PACERS = {"cartera": PredictivePacer, "progressive": ProgressivePacer}


@dataclass(frozen=True)
class Row:
    pacer: str
    order: str
    agents: int
    answer_rate: float
    history_days: int
    occupancy: float
    abandon_rate: float
    rpc_per_agent_hour: float
    promises_per_agent_hour: float
    balance_reached_per_agent_hour: int
    dials: int
    live_answers: int
    cpu_seconds: float


def compare(scenario: Scenario, history: int, pacer: str = "cartera") -> list[Row]:
    """``history`` days worked FIFO (learned from), then the next day worked by each order from that history."""
    debtors = population(scenario.agents, scenario.answer_rate, scenario.seed)
    learned = ReachModel()
    for week in range(history):
        earlier = Scenario(scenario.agents, scenario.answer_rate, scenario.hours, scenario.seed + 1000 + week)
        run_day(earlier, debtors, "fifo", learned, week=week, pacer=pacer)
    rows = []
    agent_hours = scenario.agents * scenario.hours
    for order in ORDERS:
        started = time.process_time()
        centre = run_day(scenario, copy.deepcopy(debtors), order, copy.deepcopy(learned), week=history, pacer=pacer)
        result = centre.result(time.process_time() - started)
        rows.append(
            Row(
                pacer,
                order,
                scenario.agents,
                scenario.answer_rate,
                history,
                result.occupancy,
                result.abandon_rate,
                result.rpc_per_agent_hour,
                result.promises_per_agent_hour,
                round(float(centre.day.balance_reached) / agent_hours),
                result.dials,
                result.live_answers,
                result.cpu_seconds,
            )
        )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--answer-rate", type=float, default=0.3)
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--history", type=int, default=3, help="earlier days worked FIFO, learned from (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pacer", choices=sorted(PACERS), default="cartera", help="default cartera (predictive)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    if args.agents < 1 or not 0.0 < args.answer_rate < 1.0 or not 0 < args.hours <= 8 or args.history < 0:
        parser.error("--agents at least 1, --answer-rate between 0 and 1, --hours 0 to 8, --history 0 or more")
    rows = compare(Scenario(args.agents, args.answer_rate, args.hours, args.seed), args.history, args.pacer)
    for row in rows:
        if args.json:
            print(json.dumps(asdict(row)), flush=True)
            continue
        print(
            f"{row.agents:>4} agents {row.answer_rate:>4.0%} answer  {row.pacer:<11} {row.order:<7}"
            f" occupancy {row.occupancy:6.1%}  abandoned {row.abandon_rate:5.2%}"
            f"  RPC/agent-h {row.rpc_per_agent_hour:5.2f}  promises/agent-h {row.promises_per_agent_hour:5.2f}"
            f"  balance reached/agent-h {row.balance_reached_per_agent_hour:>12,}  ({row.dials} dials)",
            flush=True,
        )
    if not args.json:
        fifo = rows[0]
        for row in rows[1:]:
            rpc = row.rpc_per_agent_hour / max(fifo.rpc_per_agent_hour, 1e-9)
            promises = row.promises_per_agent_hour / max(fifo.promises_per_agent_hour, 1e-9)
            balance = row.balance_reached_per_agent_hour / max(fifo.balance_reached_per_agent_hour, 1)
            print(
                f"{row.order} / fifo: right-party contacts per agent-hour {rpc:.2f}x, promises {promises:.2f}x,"
                f" balance reached {balance:.2f}x"
            )


if __name__ == "__main__":
    main()
