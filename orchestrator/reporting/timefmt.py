"""Times as people read them: "3h 12m" in tables and reports (ISO 8601 is orchestrator.timefmt's)."""

from __future__ import annotations


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
