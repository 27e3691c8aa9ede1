"""Resumption after a crash: stage runs a dead orchestrator left "running" are marked interrupted,
and each host continues from its state (the engine repeats the stage a host was caught inside).

Only the waves this run has claimed are touched: a held claim means a live run (see `locks`), so a
"running" stage run in a claimed wave can only be a dead one's; other waves' may be a live run's."""

from __future__ import annotations

from sqlmodel import col, select

from orchestrator.store import Store, audit
from orchestrator.store.models import StageRun, utcnow


def mark_interrupted(store: Store, operator: str, waves: list[int]) -> int:
    """Mark the stage runs left "running" in `waves` interrupted, audited as `run resume`; how many."""
    with store.write() as session:
        running = select(StageRun).where(StageRun.status == "running", col(StageRun.wave).in_(waves))
        stale = list(session.exec(running))
        for run in stale:
            run.status = "interrupted"
            run.finished_at = utcnow()
            run.message = "the orchestrator stopped during this stage; the next run resumes it"
            session.add(run)
        if stale:
            audit.record(
                session,
                operator,
                "run resume",
                details={"waves": waves, "interrupted_stage_runs": [r.id for r in stale]},
            )
    return len(stale)
