"""The triage a plan was made from, per host: its verdict, reason, compromise time and matches, as
the engine hands them on (the evidence pack's triage file, the playbooks' compromise time, the restore
point's cutoff). A read model of the store so execution need not know the triage tables' shape."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from orchestrator.store.models import CheckMatch, TriageResult


def by_host(session: Session, run_id: int | None) -> dict[str, dict[str, Any]]:
    """Each host's verdict, reason, compromise time and matches (keyed `check_id`) from triage run
    `run_id`; the values as stored (datetimes stay datetimes: each reader formats them)."""
    out: dict[str, dict[str, Any]] = {}
    if run_id is None:
        return out
    results = session.exec(select(TriageResult).where(TriageResult.run_id == run_id))
    by_id: dict[int, dict[str, Any]] = {}
    for r in results:
        entry = {
            "verdict": r.verdict,
            "reason": r.reason,
            "compromise_time": r.compromise_time,
            "matches": [],
        }
        out[r.host_name] = entry
        by_id[int(r.id or 0)] = entry
    if by_id:
        for m in session.exec(select(CheckMatch).where(col(CheckMatch.result_id).in_(list(by_id)))):
            by_id[m.result_id]["matches"].append(
                {
                    "check_id": m.check_id,
                    "title": m.title,
                    "severity": m.severity,
                    "first_seen": m.first_seen,
                    "evidence": m.evidence,
                }
            )
    return out
