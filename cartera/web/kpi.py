"""The KPI page's chart: attempts and contacts per day, drawn as an inline SVG."""

from __future__ import annotations

import math
from datetime import date, timedelta
from html import escape

from cartera.runtime.kpis import DayKpi

TICK_FONT_PX = 11  #: the day labels' font size, as app.css draws them (``.chart .tick``)
#: A ``dd/mm`` label's width in ems (four digits and a slash, DejaVu Sans), plus a gap of half an em.
TICK_LABEL_EM = 3.4


def bar_chart(kpis: list[DayKpi], since: date, until: date, title: str, labels: tuple[str, str]) -> str:
    """An inline SVG: attempts (light) and contacts (dark) on each day of the period, all portfolios summed."""
    days: dict[date, list[int]] = {since + timedelta(days=n): [0, 0] for n in range((until - since).days + 1)}
    for kpi in kpis:
        if kpi.day in days:
            days[kpi.day][0] += kpi.attempts
            days[kpi.day][1] += kpi.contacts
    ordered = sorted(days.items())
    if not ordered:
        return ""
    width, height, pad = max(320, 24 * len(ordered) + 56), 200, 28
    top = max(values[0] for _, values in ordered) or 1
    step = (width - 2 * pad) / len(ordered)
    every = max(-(-len(ordered) // 15), math.ceil(TICK_LABEL_EM * TICK_FONT_PX / step))  # labels never touch
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" class="axis"/>',
    ]
    for index, (day, (attempts, contacts)) in enumerate(ordered):
        x = pad + index * step + step * 0.15
        for value, css, shrink in ((attempts, "bar-attempts", 0.0), (contacts, "bar-contacts", 0.2)):
            bar = (height - 2 * pad) * value / top
            parts.append(
                f'<rect class="{css}" x="{x + step * shrink / 2:.1f}" y="{height - pad - bar:.1f}" '
                f'width="{step * (0.7 - shrink):.1f}" height="{bar:.1f}">'
                f"<title>{day:%d/%m}: {value}</title></rect>"
            )
        if index % every == 0:
            parts.append(
                f'<text x="{x + step * 0.35:.1f}" y="{height - pad + 14}" text-anchor="middle" class="tick">'
                f"{day:%d/%m}</text>"
            )
    parts += [
        f'<text x="{pad}" y="14" class="legend"><tspan class="key-attempts">■</tspan> {escape(labels[0])} '
        f'<tspan class="key-contacts">■</tspan> {escape(labels[1])} (max {top})</text>',
        "</svg>",
    ]
    return "".join(parts)
