"""Every value a host reports, cut to a bounded size before a pattern or a person reads it.

A check script's output is the host's to forge: a 1 MB "file name", a line of 8 MB, a million items, a
PowerShell object nested a thousand deep. The packs' patterns are written to run in linear time, and
these bounds keep even linear work (and evidence, and the database) small. No real value comes near
them: names are at most 255 bytes on every file system we triage, paths at most 4096 on Linux (32767
on Windows, which no ransom note needs), cron and unit lines a few hundred characters.

A long text keeps its head and its tail, joined by an ellipsis, so a pattern anchored at either end
(`^!!!`, `\\.README\\.txt$`) still sees what a real name would show there.
"""

from __future__ import annotations

import json
from typing import Any

MAX_TEXT = 8192  # characters kept of one value: MAX_TEXT // 2 from each end
MAX_LIST = 256  # elements kept of a list value (strings found in a file, for example)
MAX_FIELDS = 64  # fields kept of one item
MAX_ITEMS = 20_000  # items kept per probe; past it the probe's listing is marked truncated
ELLIPSIS = "\u2026"


def text(value: str) -> str:
    if len(value) <= MAX_TEXT:
        return value
    half = MAX_TEXT // 2
    return value[:half] + ELLIPSIS + value[-half:]


def value(raw: Any) -> Any:
    """A bounded copy: numbers, booleans and None as they are, texts cut, lists shortened (their
    elements bounded), anything nested flattened to bounded JSON text."""
    if raw is None or isinstance(raw, bool | int | float):
        return raw
    if isinstance(raw, str):
        return text(raw)
    if isinstance(raw, list):
        return [v if isinstance(v, bool | int | float) else _flat(v) for v in raw[:MAX_LIST]]
    return _flat(raw)


def _flat(raw: Any) -> str:
    if isinstance(raw, str):
        return text(raw)
    try:
        encoded = json.dumps(raw, default=str, ensure_ascii=False)
    except (ValueError, RecursionError):  # cycles cannot come from JSON; depth can
        encoded = repr(type(raw))
    return text(encoded)


def item(raw: dict[Any, Any]) -> dict[str, Any]:
    """One item with at most MAX_FIELDS fields, names and values bounded."""
    return {text(str(k))[:256]: value(v) for k, v in list(raw.items())[:MAX_FIELDS]}
