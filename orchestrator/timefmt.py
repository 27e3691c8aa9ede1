"""Every ISO 8601 rendering of a time, in one place, at the bottom of the package (it imports nothing
of ours), so services, triage and the store read and write times by the same rules.

Three renderings exist because three outputs already depend on them (NO behaviour change in issue 16);
which one a caller uses says what its output promises:

- `iso`: UTC, whole seconds, `Z`: what people and `status`/`report` JSON read.
- `iso_exact`: full precision, a stored naive time taken as UTC (`+00:00`): triage JSON.
- `as_stored`: the value's own `isoformat()`, zone or not: the plan document (`plan --json`, `plan
  export`) and the playbooks' extra vars and triage file; anything that is not a datetime passes
  through, so it also serves as a `json.dumps(default=...)`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`; the database hands back UTC, but an input may carry another zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def iso_exact(moment: datetime | None) -> str | None:
    """ISO 8601 at full precision (SQLite hands datetimes back without their zone; they were stored in
    UTC)."""
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def as_stored(value: Any) -> Any:
    """A datetime's own `isoformat()`; None and any other value unchanged."""
    return value.isoformat() if isinstance(value, datetime) else value


def stamp(moment: datetime) -> str:
    """A moment as people's decisions and the planner's reasons quote it: UTC, seconds, a space."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(start: datetime, end: datetime) -> float:
    """A measured stage's time: never negative (a clock stepped back must not make a stage look free)."""
    return max(0.0, (end - start).total_seconds())
