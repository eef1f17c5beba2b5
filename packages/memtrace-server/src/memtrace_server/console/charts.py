"""Bar charts as geometry for inline SVG, computed on the server (no script, no remote host)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from memtrace_server.service.overview import DayCount

WIDTH = 600
HEIGHT = 120
GAP = 2


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar: its rectangle and what its tooltip says."""

    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Bars in a ``WIDTH`` x ``HEIGHT`` view box, and a text summary for screen readers."""

    bars: list[Bar]
    width: int
    height: int
    peak: int
    total: int
    first_day: str
    last_day: str


def _day(ns: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ns // 1_000_000_000))


def daily_chart(days: list[DayCount]) -> Chart:
    """Bars of memories per day; a day with none still has a hairline, so gaps show."""
    peak = max((d.count for d in days), default=0)
    slot = WIDTH / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        height = (HEIGHT - 1) * day.count / peak if peak else 0.0
        height = max(height, 1.0)
        bars.append(
            Bar(
                x=round(index * slot + GAP / 2, 2),
                y=round(HEIGHT - height, 2),
                width=round(slot - GAP, 2),
                height=round(height, 2),
                label=f"{_day(day.start_ns)}: {day.count} memories",
            )
        )
    return Chart(
        bars=bars,
        width=WIDTH,
        height=HEIGHT,
        peak=peak,
        total=sum(d.count for d in days),
        first_day=_day(days[0].start_ns) if days else "",
        last_day=_day(days[-1].start_ns) if days else "",
    )
