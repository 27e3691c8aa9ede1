"""`orchestrator status HOST`: everything the recovery knows about one host, in the order it happened.

Each part is an indexed lookup by host name, so one host's story costs the same in a fleet of any size.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.errors import OrchestratorError
from orchestrator.reporting import durations, lifecycle
from orchestrator.store import Store, audit, plans
from orchestrator.store import hosts as host_store
from orchestrator.store.measured import seconds
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
from orchestrator.timefmt import iso

# What a host's timeline shows of its inventory facts: what the host snapshot keeps.
_FACTS = ("name", *host_store.FIELDS, "depends_on")


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
            {
                "path": e.path,
                "sha256": e.sha256,
                "size": e.size,
                "collected_by": e.collected_by,
                "collected_at": iso(e.collected_at),
                "stored_at": e.stored_at,
                "stage_run_id": e.stage_run_id,
            }
            for e in session.exec(
                select(EvidenceItem).where(EvidenceItem.host_name == name).order_by(col(EvidenceItem.id))
            )
        ]
        restore = session.exec(
            select(RestorePoint).where(RestorePoint.host_name == name).order_by(col(RestorePoint.id).desc())
        ).first()
        audit_rows = [
            {
                "id": a.id,
                "ts": iso(a.ts),
                "operator": a.operator,
                "command": a.command,
                "details": a.details,
            }
            for a in audit.entries(session, [name])
        ]
        medians = durations.stage_medians(session)
    remaining = lifecycle.remaining_stages(plan["action"] if plan else None, host.state, host.protected)
    unmeasured = [s for s in remaining if s not in medians]
    return {
        "host": {f: getattr(host, f) for f in _FACTS},
        "state": host.state,
        "stage": host.stage,
        "bucket": lifecycle.category(host.state),
        "state_reason": host.state_reason,
        "state_changed_at": iso(host.state_changed_at),
        "synced_at": iso(host.synced_at),
        "triage": triage,
        "plan": plan,
        "stages": stages,
        "evidence": evidence,
        "restore_point": None
        if restore is None
        else {
            "snapshot_id": restore.snapshot_id,
            "snapshot_time": iso(restore.snapshot_time),
            "cutoff": iso(restore.cutoff),
            "chosen_at": iso(restore.chosen_at),
            "skipped": restore.skipped,
        },
        "audit": audit_rows,
        "remaining_stages": list(remaining),
        "eta_s": round(sum(medians.get(s, 0.0) for s in remaining), 1) if remaining else None,
        "eta_unmeasured_stages": unmeasured,
        "timeline": _merge(host, triage, plan, stages, evidence, audit_rows),
    }


def _unknown(session: Session, name: str) -> str:
    close = difflib.get_close_matches(
        name, session.exec(select(Host.name).where(col(Host.name).startswith(name[:2]))).all(), n=3
    )
    hint = f"; did you mean {', '.join(close)}?" if close else " (run 'orchestrator inventory sync' first?)"
    return f"no host {name!r} in the database{hint}"


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
                {
                    "check_id": m.check_id,
                    "title": m.title,
                    "severity": m.severity,
                    "evidence": m.evidence,
                    "first_seen": iso(m.first_seen),
                }
            )
    return [
        {
            "run_id": r.run_id,
            "run_started_at": iso(run_started),
            "verdict": r.verdict,
            "reason": r.reason,
            "compromise_time": iso(r.compromise_time),
            "duration_s": r.duration_s,
            "created_at": iso(r.created_at),
            "matches": matches.get(r.id or 0, []),
        }
        for r, run_started in results
    ]


def _plan(session: Session, name: str) -> dict[str, Any] | None:
    plan = plans.in_force(session)
    if plan is None:
        return None
    member = session.exec(
        select(PlanMember).where(PlanMember.plan_id == plan.id, PlanMember.host_name == name)
    ).first()
    return {
        "plan_id": plan.id,
        "plan_status": plan.status,
        "approved_at": iso(plan.approved_at),
        "action": member.action if member else None,
        "wave": member.wave if member else None,
        "reason": member.reason if member else "not in the plan",
        "verdict": member.verdict if member else None,
    }


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
        events[e.stage_run_id or 0].append({"event": e.event, "task": e.task, "at": iso(e.created_at)})
    return [
        {
            "id": r.id,
            "stage": r.stage,
            "attempt": r.attempt,
            "status": r.status,
            "check_mode": r.check_mode,
            "plan_id": r.plan_id,
            "wave": r.wave,
            "started_at": iso(r.started_at),
            "finished_at": iso(r.finished_at),
            "duration_s": round(seconds(r.started_at, r.finished_at), 1) if r.finished_at else None,
            "task": r.task,
            "message": r.message,
            "events": events.get(r.id or 0, []),
        }
        for r in runs
    ]


def _merge(
    host: Host,
    triage: list[dict[str, Any]],
    plan: dict[str, Any] | None,
    stages: list[dict[str, Any]],
    evidence: list[dict[str, Any]],
    audit: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One chronological list for the reader who wants the story, not the tables."""
    items: list[dict[str, Any]] = [
        {
            "at": iso(host.synced_at),
            "kind": "inventory",
            "text": f"recorded from inventory (tier {host.tier})",
        }
    ]
    for t in triage:
        checks = ", ".join(m["check_id"] for m in t["matches"])
        items.append(
            {
                "at": t["created_at"],
                "kind": "triage",
                "text": f"triage run {t['run_id']}: {t['verdict']}" + (f" ({checks})" if checks else ""),
            }
        )
        if t["compromise_time"]:
            items.append(
                {"at": t["compromise_time"], "kind": "compromise", "text": "earliest trace of compromise"}
            )
    for s in stages:
        mode = " (check mode)" if s["check_mode"] else ""
        items.append({"at": s["started_at"], "kind": "stage", "text": f"{s['stage']} started{mode}"})
        if s["finished_at"]:
            detail = f": {s['message']}" if s["message"] else ""
            items.append(
                {"at": s["finished_at"], "kind": "stage", "text": f"{s['stage']} {s['status']}{detail}"}
            )
    for e in evidence:
        items.append(
            {
                "at": e["collected_at"],
                "kind": "evidence",
                "text": f"evidence {e['path']} sha256 {e['sha256']}",
            }
        )
    for a in audit:
        items.append({"at": a["ts"], "kind": "audit", "text": f"{a['command']} by {a['operator']}"})
    if plan and plan["action"]:
        wave = f" in wave {plan['wave']}" if plan["wave"] is not None else ""
        text = f"plan {plan['plan_id']} ({plan['plan_status']}): {plan['action']}{wave}"
        items.append({"at": plan["approved_at"], "kind": "plan", "text": text})
    return sorted(items, key=lambda i: (i["at"] is None, i["at"] or ""))
