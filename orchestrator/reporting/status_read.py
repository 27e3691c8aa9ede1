"""What `orchestrator status` reads: the standard library's sqlite3 when it can (`sqlite_read`: a
new process answers in a fraction of SQLAlchemy's import time), else the SQLAlchemy views, which
open, create or migrate the store as every other command does. Both give the same view."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrator.reporting import sqlite_read
from orchestrator.reporting.selection import HostFilter

if TYPE_CHECKING:
    from orchestrator.store import Store


def fleet(
    db: str,
    open_store: Callable[[], Store],
    flt: HostFilter,
    attention_limit: int | None = None,
    containment: bool = False,
) -> dict[str, Any]:
    """`fleet.status` for `--db DB`; `open_store` opens it for the SQLAlchemy path."""
    now = datetime.now(UTC)
    if flt == HostFilter():  # filters (and -l's Ansible patterns) take the SQLAlchemy path
        lean = sqlite_read.fleet_status(db, attention_limit, now, containment)
        if lean is not None:
            return lean
    from orchestrator.reporting import fleet as fleet_lib

    return fleet_lib.status(open_store(), flt, attention_limit, now, containment)


def host(db: str, open_store: Callable[[], Store], name: str) -> dict[str, Any]:
    """`host_view.timeline` for `--db DB`."""
    lean = sqlite_read.host_timeline(db, name)
    if lean is not None:
        return lean
    from orchestrator.reporting import host_view

    return host_view.timeline(open_store(), name)
