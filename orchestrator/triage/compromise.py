"""Whether a host's compromise time, as triage estimated it, may choose its restore point on its own:
the checks the planner applies to the whole fleet (`planning.compromise`) and the engine applies again
to one host just before its restore. See `planning.compromise` for why each rule exists.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orchestrator.timefmt import stamp

# How far before the compromise time a restore point must lie (the clock of the first clue is not
# the attacker's first step).
DEFAULT_MARGIN = timedelta(hours=1)
MAD_SCALE = 1.4826  # a normal distribution's standard deviation, in MADs


@dataclass(frozen=True)
class TimeRules:
    window: timedelta = timedelta(days=7)
    mads: float = 5.0
    skew: timedelta = timedelta(minutes=5)
    min_fleet: int = 3


def utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fleet_bounds(
    times: Iterable[datetime], now: datetime, rules: TimeRules
) -> tuple[datetime, datetime] | None:
    """The range of times the fleet makes plausible, or None with too few hosts to say."""
    seconds = sorted(utc(t).timestamp() for t in times if utc(t) <= now + rules.skew)
    if len(seconds) < rules.min_fleet:
        return None
    median = statistics.median(seconds)
    mad = statistics.median(abs(s - median) for s in seconds)
    half = max(rules.mads * MAD_SCALE * mad, rules.window.total_seconds())
    return datetime.fromtimestamp(median - half, UTC), datetime.fromtimestamp(median + half, UTC)


def problem(
    moment: datetime | None,
    now: datetime,
    bounds: tuple[datetime, datetime] | None,
    oldest_backup: datetime | None,
    rules: TimeRules,
) -> str | None:
    """Why this compromise time may not choose a restore point on its own (None: it may)."""
    if moment is None:
        return "no compromise time from triage (another host's is never used)"
    moment = utc(moment)
    if moment > now + rules.skew:
        return f"compromise time {stamp(moment)} is in the future"
    if oldest_backup is not None and moment <= utc(oldest_backup):
        return f"compromise time {stamp(moment)} is older than the oldest backup ({stamp(oldest_backup)})"
    if bounds is not None and not bounds[0] <= moment <= bounds[1]:
        return (
            f"compromise time {stamp(moment)} is far outside the fleet's "
            f"({stamp(bounds[0])} to {stamp(bounds[1])})"
        )
    return None
