"""Segments of accounts by days past due (tramos de mora), and quotas: the share of the value-ordered calls each
segment gets, so a list is not worked only where the balances are largest."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Literal, TypeVar

Segment = Literal["1-30", "31-60", "61-90", "91-180", "180+"]
SEGMENTS: tuple[Segment, ...] = ("1-30", "31-60", "61-90", "91-180", "180+")
_UPPER: tuple[tuple[int, Segment], ...] = ((30, "1-30"), (60, "31-60"), (90, "61-90"), (180, "91-180"))

T = TypeVar("T")


def days_past_due(due_on: date | None, today: date) -> int | None:
    """Days from ``due_on`` to ``today`` (never negative); ``None`` when the due day is unknown."""
    return None if due_on is None else max((today - due_on).days, 0)


def segment_of(days_past_due: int | None) -> Segment | None:
    """The segment of an account ``days_past_due`` days past due; ``None`` when not past due or unknown."""
    if days_past_due is None or days_past_due < 1:
        return None
    return next((segment for upper, segment in _UPPER if days_past_due <= upper), "180+")


def by_quota(items: Sequence[T], segment: Callable[[T], Segment | None], quotas: Mapping[Segment, float]) -> list[T]:
    """``items`` (best first) interleaved so that every stretch of the result from its start gives each segment
    with a quota that share of the places, as nearly as its items allow; the segments without one (and the items
    of no segment) share the places left, in the given order. Each segment keeps its items' order; a segment
    that runs out leaves its places to the others. No quotas: ``items`` as given."""
    if not quotas:
        return list(items)
    rest = 1.0 - sum(quotas.values())
    groups: dict[Segment | None, list[int]] = {}
    for index, item in enumerate(items):
        key = segment(item)
        groups.setdefault(key if key in quotas else None, []).append(index)
    weights = {key: quotas[key] if key is not None else rest for key in groups}
    taken = dict.fromkeys(groups, 0)
    order: list[T] = []
    while len(order) < len(items):
        live = [key for key in groups if taken[key] < len(groups[key])]

        def due(key: Segment | None) -> tuple[float, int]:
            weight = weights[key]
            behind = (taken[key] + 1) / weight if weight > 1e-9 else float("inf")
            return behind, groups[key][taken[key]]

        chosen = min(live, key=due)
        order.append(items[groups[chosen][taken[chosen]]])
        taken[chosen] += 1
    return order
