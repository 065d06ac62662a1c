"""The KPI chart's day labels stay readable: on any period, no two labels drawn share the same room."""

from __future__ import annotations

import re
from datetime import date, timedelta
from itertools import pairwise

import pytest

from cartera.runtime.kpis import DayKpi
from cartera.web.kpi import TICK_FONT_PX, bar_chart

#: Widest glyphs of a ``dd/mm`` label in DejaVu Sans (the font of the browser tests): digits 0.64 em, "/" 0.34 em.
LABEL_EM = 4 * 0.64 + 0.34
_TICK = re.compile(r'<text x="([0-9.]+)" [^>]*class="tick">([0-9]{2}/[0-9]{2})</text>')


def ticks(days: int) -> list[tuple[float, str]]:
    until = date(2026, 11, 30)
    since = until - timedelta(days=days - 1)
    kpis = [DayKpi("BCO/P1", since + timedelta(days=n), attempts=n + 1, contacts=n) for n in range(days)]
    svg = bar_chart(kpis, since, until, title="t", labels=("a", "c"))
    return [(float(x), label) for x, label in _TICK.findall(svg)]


@pytest.mark.parametrize("days", [1, 7, 10, 14, 31, 92])
def test_day_labels_do_not_run_into_each_other(days: int) -> None:
    drawn = ticks(days)
    assert drawn, "no day labels drawn"
    room = LABEL_EM * TICK_FONT_PX
    for (left, _), (right, label) in pairwise(drawn):
        assert right - left >= room, f"{days} days: {label} starts {right - left:.1f} after the previous label"


def test_a_ten_day_period_labels_its_first_and_last_day_in_order() -> None:
    labels = [label for _, label in ticks(10)]
    assert labels[0] == "21/11"
    assert labels == sorted(labels, key=lambda text: text[3:] + text[:2])
    assert len(labels) >= 4
