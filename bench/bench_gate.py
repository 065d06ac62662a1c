"""Compliance engine throughput: ``ComplianceGate.evaluate`` with realistic histories, against a bare function
that checks only the hour in the site's zone (the ceiling).

The workload mimics a collections floor: Colombian, Mexican, Peruvian, Chilean and US debtors (some in
Massachusetts) under their law packs, 5% of them with hours they asked for, every number of a stated line
type, each with the contacts of the last two weeks (0 to 15 calls and texts, some answered) as
:func:`~cartera.contact.compliance.history.load`
hands them over, a few closed accounts, opt-outs and pending promises, at
instants spread over two weeks (so about half fall outside the windows and take the path that computes the
next allowed time). Both run in this process on the same items, in alternating rounds, timed in
CPU seconds of the process, and the median of each is reported with the ratio.

Usage: ``.venv/bin/python bench/bench_gate.py [--decisions N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from cartera.contact.compliance import ComplianceGate, Contact, DebtorHours, History, LineType, Subject, build_policy
from cartera.contact.compliance.packs import week_hours
from cartera.core.models import Channel

BOGOTA = ZoneInfo("America/Bogota")
#: (portfolio, country, numbers, share of the work)
FLOOR = [
    ("BANCO/CO", "CO", ["+573001234567", "+573104567890", "+576015550123", "+576042345678"], 0.55),
    ("BANCO/MX", "MX", ["+525512345678", "+523312345678", "+526641234567"], 0.15),
    ("BANCO/PE", "PE", ["+51912345678", "+5114123456"], 0.10),
    ("BANCO/CL", "CL", ["+56221234567"], 0.10),
    ("BANK/US", "US", ["+12125550123", "+13125550123", "+16025550123"], 0.05),
    ("BANK/US-MA", "US", ["+16175550123", "+16175550188", "+15085550123"], 0.05),
]
#: hours debtors asked for (5% of them; half with the instrument that lets Ley 2300 replace the law's hours)
REQUESTS = [
    DebtorHours((("mon-fri", "18:00-20:30"),), week_hours({"mon-fri": "18:00-20:30"}), "grabación #1"),
    DebtorHours((("mon-sat", "09:00-12:00"),), week_hours({"mon-sat": "09:00-12:00"}), None),
]
Item = tuple[Subject, datetime]


def workload(count: int, seed: int = 7) -> list[Item]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 23, tzinfo=UTC)
    weights = [share for *_, share in FLOOR]
    items: list[Item] = []
    for n in range(count):
        portfolio, country, numbers, _ = rng.choices(FLOOR, weights)[0]
        at = start + timedelta(seconds=rng.randrange(14 * 86400))
        phone = rng.choice(numbers)
        contacts = sorted(
            (
                Contact(
                    at.timestamp() - rng.randrange(14 * 86400),
                    rng.choice([Channel.CALL, Channel.CALL, Channel.CALL, Channel.SMS]),
                    phone,
                    True,
                    rng.random() < 0.15,
                )
                for _ in range(rng.randrange(16))
            ),
            key=lambda c: -c.ts,
        )
        talked = [c.ts for c in contacts if c.conversation]
        promise = (at + timedelta(days=rng.randrange(-5, 10))).date() if rng.random() < 0.1 else None
        subject = Subject(
            channel=Channel.SMS if rng.random() < 0.2 else Channel.CALL,
            phone=phone,
            account_ref=f"A-{n}",
            account_status=rng.choice(["active"] * 19 + ["withdrawn"]),
            portfolio=portfolio,
            country=country,
            opted_out=frozenset({Channel.SMS}) if rng.random() < 0.03 else frozenset(),
            history=History(tuple(contacts), max(talked) if talked else None, promise),
            text="Reply STOP to opt out" if country == "US" else None,
            requested_hours=rng.choice(REQUESTS) if rng.random() < 0.05 else None,
            line_types={number: rng.choice(list(LineType)) for number in numbers},
        )
        items.append((subject, at))
    return items


def site_gate() -> ComplianceGate:
    """A Colombian site working portfolios of five countries, each under its own country's pack."""
    authorised = ("call", "sms")
    return ComplianceGate(
        "bench",
        country="CO",
        fallback_zone=BOGOTA,
        default=build_policy("co", [], authorised),
        portfolios={name: build_policy(name.split("/")[1].lower(), [], authorised) for name, *_ in FLOOR},
    )


def bare_hour_check(_subject: Subject, at: datetime) -> bool:
    return 7 <= at.astimezone(BOGOTA).hour < 19


def rate(check: Callable[[Subject, datetime], object], items: list[Item]) -> float:
    """Checks per second of this process's CPU time (one core; other processes on the machine do not count)."""
    began = time.process_time()
    for subject, at in items:
        check(subject, at)
    return len(items) / (time.process_time() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    gate = site_gate()
    items = workload(args.decisions)
    allowed = sum(gate.evaluate(subject, at).allowed for subject, at in items)  # also warms the caches
    gate_rates, bare_rates = [], []
    for _ in range(args.rounds):
        gate_rates.append(rate(gate.evaluate, items))
        bare_rates.append(rate(bare_hour_check, items))
    gate_rate, bare_rate = statistics.median(gate_rates), statistics.median(bare_rates)
    contacts = statistics.mean(len(subject.history.contacts) for subject, _ in items)
    print(f"decisions per round: {args.decisions}, rounds: {args.rounds}, allowed: {allowed / len(items):.0%}")
    print(f"history per decision: {contacts:.1f} contacts on average; first day {date(2026, 11, 23)}")
    print(f"gate.evaluate      {gate_rate:>12,.0f} decisions/s")
    print(f"bare hour check    {bare_rate:>12,.0f} checks/s (ceiling)")
    print(f"ratio              {gate_rate / bare_rate:>12.3f}")


if __name__ == "__main__":
    main()
