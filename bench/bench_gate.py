"""Compliance gate throughput: ``ComplianceGate.evaluate`` against a bare hour check (the ceiling).

Both run in this process on the same subjects and instants, in alternating rounds, and the median of each is
reported with the ratio. Usage: ``.venv/bin/python bench/bench_gate.py [--decisions N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from core.compliance import AccountStatusRule, ComplianceGate, ContactWindowRule, DoNotContactRule, Subject
from core.config import ContactWindow
from core.models import Channel

PHONES = ["+573001234567", "+576015550123", "+525512345678", "+523312345678", "+12125550123", "+18005550199"]
BOGOTA = ZoneInfo("America/Bogota")


def workload(count: int, seed: int = 7) -> list[tuple[Subject, datetime]]:
    rng = random.Random(seed)
    start = datetime(2026, 11, 23, tzinfo=UTC)
    return [
        (
            Subject(Channel.CALL, rng.choice(PHONES), account_status=rng.choice(["active"] * 9 + ["withdrawn"])),
            start + timedelta(seconds=rng.randrange(14 * 86400)),
        )
        for _ in range(count)
    ]


def bare_hour_check(_subject: Subject, at: datetime) -> bool:
    return 7 <= at.astimezone(BOGOTA).hour < 19


def rate(check: Callable[[Subject, datetime], object], items: list[tuple[Subject, datetime]]) -> float:
    began = time.perf_counter()
    for subject, at in items:
        check(subject, at)
    return len(items) / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    window = ContactWindow(start=clock_time(7), end=clock_time(19))
    gate = ComplianceGate("bench", [AccountStatusRule(), DoNotContactRule(), ContactWindowRule(window, BOGOTA)])
    items = workload(args.decisions)
    rate(gate.evaluate, items[:1000])  # warm caches (number → zones)
    gate_rates, bare_rates = [], []
    for _ in range(args.rounds):
        gate_rates.append(rate(gate.evaluate, items))
        bare_rates.append(rate(bare_hour_check, items))
    gate_rate, bare_rate = statistics.median(gate_rates), statistics.median(bare_rates)
    print(f"decisions per round: {args.decisions}, rounds: {args.rounds}")
    print(f"gate.evaluate      {gate_rate:>12,.0f} decisions/s")
    print(f"bare hour check    {bare_rate:>12,.0f} checks/s (ceiling)")
    print(f"ratio              {gate_rate / bare_rate:>12.2f}")


if __name__ == "__main__":
    main()
