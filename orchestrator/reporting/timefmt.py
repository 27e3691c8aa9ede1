"""Times as people and programs read them: ISO 8601 UTC in JSON, "3h 12m" in tables and reports."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z`; the database hands back UTC, but an input may carry another zone."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def duration(seconds: float | None) -> str:
    """Two units at most: enough to plan with, short enough for a table cell."""
    if seconds is None:
        return "-"
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def short(value: str | None) -> str:
    """`2025-03-01 06:00` (UTC) from the ISO strings the views hold, for table cells."""
    return value.replace("T", " ")[:16] if value else "-"
