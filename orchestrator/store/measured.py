"""What counts as a measured stage time, one rule for the planner's estimates (planning/store.py) and
the reports' time to completion (reporting/durations.py): a stage run that finished `ok`, for real
(not in check mode); its time is finished minus started, never negative (a clock stepped back must not
make a stage look free). Each reader aggregates these samples its own way.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col

from orchestrator.store.models import StageRun
from orchestrator.timefmt import seconds  # noqa: F401 (the one rule; here beside the query's)


def measured(query: Any) -> Any:
    """`query` (a select over StageRun) limited to the runs whose time is a measurement."""
    return query.where(
        StageRun.status == "ok",
        col(StageRun.check_mode).is_(False),
        col(StageRun.finished_at).is_not(None),
    )
