"""`orchestrator status HOST`: everything the recovery knows about one host, in the order it happened.

Each part is an indexed lookup by host name, so one host's story costs the same in a fleet of any size.
The view itself is built by `host_summary`, which `sqlite_read` shares.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlmodel import Session, SQLModel, col, select

from orchestrator.errors import OrchestratorError
from orchestrator.reporting import durations, host_summary
from orchestrator.store import Store, audit, plans
from orchestrator.store.models import (
    CheckMatch,
    EvidenceItem,
    Host,
    PlanMember,
    RestorePoint,
    StageEvent,
    StageRun,
    TriageResult,
    TriageRun,
)


def timeline(store: Store, name: str) -> dict[str, Any]:
    """One host's facts, verdicts, plan, stage runs, evidence, restore point and audit entries."""
    with store.read() as session:
        host = session.exec(select(Host).where(Host.name == name)).first()
        if host is None:
            raise OrchestratorError(_unknown(session, name))
        triage = _triage(session, name)
        plan = _plan(session, name)
        stages = _stages(session, name)
        evidence = [
            host_summary.evidence_entry(_row(e))
            for e in session.exec(
                select(EvidenceItem).where(EvidenceItem.host_name == name).order_by(col(EvidenceItem.id))
            )
        ]
        restore = session.exec(
            select(RestorePoint).where(RestorePoint.host_name == name).order_by(col(RestorePoint.id).desc())
        ).first()
        audit_rows = [host_summary.audit_entry(_row(a)) for a in audit.entries(session, [name])]
        medians = durations.stage_medians(session)
    return host_summary.assemble(
        _row(host),
        triage,
        plan,
        stages,
        evidence,
        None if restore is None else _row(restore),
        audit_rows,
        medians,
    )


def _row(obj: SQLModel) -> dict[str, Any]:
    """A table row's columns by name, in the types SQLAlchemy hands back."""
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}  # type: ignore[attr-defined]


def _unknown(session: Session, name: str) -> str:
    return host_summary.unknown(
        name, session.exec(select(Host.name).where(col(Host.name).startswith(name[:2]))).all()
    )


def _triage(session: Session, name: str) -> list[dict[str, Any]]:
    results = session.exec(
        select(TriageResult, TriageRun.started_at)
        .join(TriageRun, col(TriageRun.id) == col(TriageResult.run_id))
        .where(TriageResult.host_name == name)
        .order_by(col(TriageResult.run_id), col(TriageResult.id))
    ).all()
    matches: dict[int, list[dict[str, Any]]] = defaultdict(list)
    ids = [r.id for r, _ in results]
    if ids:
        for m in session.exec(
            select(CheckMatch).where(col(CheckMatch.result_id).in_(ids)).order_by(col(CheckMatch.id))
        ):
            matches[m.result_id].append(
                host_summary.match_entry(m.check_id, m.title, m.severity, m.evidence, m.first_seen)
            )
    return [
        host_summary.triage_entry(_row(r), run_started, matches.get(r.id or 0, []))
        for r, run_started in results
    ]


def _plan(session: Session, name: str) -> dict[str, Any] | None:
    plan = plans.in_force(session)
    if plan is None:
        return None
    member = session.exec(
        select(PlanMember).where(PlanMember.plan_id == plan.id, PlanMember.host_name == name)
    ).first()
    return host_summary.plan_entry(
        plan.id or 0, plan.status, plan.approved_at, None if member is None else _row(member)
    )


def _stages(session: Session, name: str) -> list[dict[str, Any]]:
    runs = session.exec(
        select(StageRun)
        .where(StageRun.host_name == name)
        .order_by(col(StageRun.started_at), col(StageRun.id))
    ).all()
    events: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in session.exec(
        select(StageEvent).where(StageEvent.host_name == name).order_by(col(StageEvent.id))
    ):
        events[e.stage_run_id or 0].append(host_summary.event_entry(e.event, e.task, e.created_at))
    return [host_summary.stage_entry(_row(r), events.get(r.id or 0, [])) for r in runs]
