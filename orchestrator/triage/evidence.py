"""Evidence as it is stored: the items that made a check match, bounded in size and scrubbed of every
secret the inventory holds.

Bounded, because a host with a million encrypted files must not put a million lines in the database;
scrubbed, because an attacker's autologon value or a leaked config file may well contain the very
password the orchestrator used to log in, and that must never reach the database or a report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from orchestrator.store.audit import SECRET_NAME
from orchestrator.triage.packs import TIME_FIELDS, item_time, parse_time

MAX_ITEMS = 20
MAX_FIELD = 300
MAX_TOTAL = 4000
TRUNCATED = "[truncated]"
REDACTED = "***"
_ORDER = (
    "path",
    "name",
    "value",
    "line_no",
    "line",
    "ext",
    "count",
    "status",
    "start_type",
    "log",
    "id",
    "action",
)


class Scrubber:
    """Replaces every known secret value, longest first so one secret inside another is fully hidden."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text


def _value(name: str, value: Any) -> str:
    if name in TIME_FIELDS:
        moment = parse_time(value)
        if moment is not None:
            return moment.astimezone(UTC).isoformat(timespec="seconds")
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def format_item(item: dict[str, Any]) -> str:
    keys = [k for k in _ORDER if k in item] + sorted(k for k in item if k not in _ORDER)
    # A registry value named like a password (Winlogon DefaultPassword) is evidence that it is set,
    # not a value to copy: LockBit stores real, stolen credentials there.
    secret_value = bool(item.get("value")) and bool(SECRET_NAME.search(str(item.get("name") or "")))
    parts = []
    for key in keys:
        value = (
            REDACTED + f" ({len(str(item[key]))} characters)"
            if key == "value" and secret_value
            else item[key]
        )
        if value is None or value == "" or value == []:
            continue
        text = _value(key, value)
        if len(text) > MAX_FIELD:
            text = text[:MAX_FIELD] + TRUNCATED
        parts.append(f"{key}={text}")
    return " ".join(parts)


def render(items: list[dict[str, Any]], scrub: Scrubber, absent: bool = False) -> str:
    """One line per item, at most MAX_ITEMS lines and MAX_TOTAL characters, with a marker when cut."""
    if absent:
        return "none found (their absence is the indicator)"
    # Earliest first: when the list is cut, what remains is what dates the compromise.
    items = sorted(items, key=lambda i: t.timestamp() if (t := item_time(i)) else float("inf"))
    lines: list[str] = []
    size = 0
    for index, item in enumerate(items):
        line = scrub(format_item(item))
        if index >= MAX_ITEMS or size + len(line) > MAX_TOTAL:
            lines.append(f"{TRUNCATED} {len(items) - index} more item(s) not shown")
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def earliest(items: list[dict[str, Any]]) -> datetime | None:
    times = [t for t in (item_time(i) for i in items) if t is not None]
    return min(times) if times else None
