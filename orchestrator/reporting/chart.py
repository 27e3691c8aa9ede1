"""Geometry of the report's recovery timeline, drawn as inline SVG by the template.

Each tier is a step line of the share of its hosts recovered over time, so "tier 0 was back at
08:10, the clinical systems by noon" reads straight off the chart; below it, one bar per wave from
its first stage start to its last recovery. No plotting library: a few coordinates suffice and the
report must stay one self-contained file.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

WIDTH, PLOT_HEIGHT, LEFT, RIGHT, TOP = 960, 260, 56, 16, 16
BAR_HEIGHT, BAR_GAP = 12, 4
MAX_POINTS = 400  # per series: plenty for 900 pixels, and the file stays small at 100,000 hosts
TIER_COLOURS = {0: "#7b2cbf", 1: "#d62828", 2: "#f77f00", 3: "#1d7874"}
_STEPS = (60, 300, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400, 2 * 86_400, 7 * 86_400)


@dataclass
class Chart:
    width: int = WIDTH
    height: int = 0
    plot: dict[str, float] = field(default_factory=dict)
    series: list[dict[str, Any]] = field(default_factory=list)
    x_ticks: list[dict[str, Any]] = field(default_factory=list)
    y_ticks: list[dict[str, Any]] = field(default_factory=list)
    bars: list[dict[str, Any]] = field(default_factory=list)


def timeline(rows: list[dict[str, Any]], waves: list[dict[str, Any]]) -> Chart | None:
    """None when nothing has run yet: an empty chart would only suggest a broken report."""
    starts = [_dt(r["recovery_started_at"]) for r in rows if r["recovery_started_at"]]
    if not starts:
        return None
    ends = [_dt(r["recovered_at"]) for r in rows if r["recovered_at"]]
    t0 = min(starts)
    last = max([*ends, *starts])
    # A margin on the right so a wave that has just started still shows as a bar, with its label.
    t1 = last + max(timedelta(minutes=1), (last - t0) * 0.06)
    span = (t1 - t0).total_seconds()
    plot_width = WIDTH - LEFT - RIGHT
    started_waves = [w for w in waves if w["started_at"]]
    height = TOP + PLOT_HEIGHT + 40 + len(started_waves) * (BAR_HEIGHT + BAR_GAP) + 8

    def x(t: datetime) -> float:
        return round(LEFT + plot_width * (t - t0).total_seconds() / span, 1)

    def y(share: float) -> float:
        return round(TOP + PLOT_HEIGHT * (1 - share), 1)

    chart = Chart(height=height, plot={"left": LEFT, "top": TOP, "width": plot_width, "height": PLOT_HEIGHT})
    totals: dict[int, int] = defaultdict(int)
    done: dict[int, list[datetime]] = defaultdict(list)
    for r in rows:
        totals[r["tier"]] += 1
        if r["recovered_at"]:
            done[r["tier"]].append(_dt(r["recovered_at"]))
    for tier in sorted(totals):
        times = sorted(done[tier])
        points = [(x(t0), y(0.0))]
        stride = max(1, len(times) // MAX_POINTS)
        for i in range(stride - 1, len(times), stride):
            share = (i + 1) / totals[tier]
            points.append((x(times[i]), points[-1][1]))
            points.append((x(times[i]), y(share)))
        if times and len(times) % stride:
            points.append((x(times[-1]), points[-1][1]))
            points.append((x(times[-1]), y(len(times) / totals[tier])))
        points.append((x(t1), points[-1][1]))
        chart.series.append(
            {
                "tier": tier,
                "colour": TIER_COLOURS.get(tier, "#555"),
                "points": " ".join(f"{px},{py}" for px, py in points),
                "label": f"tier {tier}: {len(times)}/{totals[tier]}",
            }
        )
    chart.y_ticks = [{"y": y(s), "label": f"{int(s * 100)}%"} for s in (0, 0.25, 0.5, 0.75, 1.0)]
    step = next((s for s in _STEPS if span / s <= 8), _STEPS[-1])
    tick = datetime.fromtimestamp(math.ceil(t0.timestamp() / step) * step, UTC)  # on round times
    while tick <= t1:
        label = tick.strftime("%H:%M") if span < 2 * 86_400 else tick.strftime("%d %b %H:%M")
        chart.x_ticks.append({"x": x(tick), "label": label})
        tick += timedelta(seconds=step)
    top = TOP + PLOT_HEIGHT + 40
    for i, w in enumerate(started_waves):
        start = _dt(w["started_at"])
        running = bool(w["in_progress"] or w["pending"])
        end = t1 if running or not w["last_recovered_at"] else _dt(w["last_recovered_at"])
        left, width = x(start), max(2.0, round(x(end) - x(start), 1))
        label_left = left + width > WIDTH - 80  # no room on the right: label before the bar
        chart.bars.append(
            {
                "x": left,
                "y": top + i * (BAR_HEIGHT + BAR_GAP),
                "width": width,
                "height": BAR_HEIGHT,
                "label": f"wave {w['wave']}" + (" (running)" if running else ""),
                "label_x": round(left - 4 if label_left else left + width + 4, 1),
                "label_anchor": "end" if label_left else "start",
                "colour": TIER_COLOURS.get(w["tier"], "#888") if w["tier"] is not None else "#888",
                "done": not running,
            }
        )
    return chart


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value)
