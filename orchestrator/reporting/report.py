"""The recovery report's content: one row per host, and the summaries management and the regulator
read (outcomes, time to recover per tier, waves, failures and holds, evidence, personal data).

Built from a few whole-table reads (a report covers every host anyway), joined in Python by host
name; rendering to HTML, CSV or JSON is `orchestrator.reporting.render`'s job.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.host_facts import IDENTITY
from orchestrator.inventory import TIERS
from orchestrator.lifecycle import AFFECTED, CONTAIN, RECONNECT, RECOVERED, STAGES, worse
from orchestrator.reporting import lifecycle, next_steps
from orchestrator.store import Store, audit, plans
from orchestrator.store.measured import seconds
from orchestrator.store.models import (
    EvidenceItem,
    Host,
    PlanMember,
    PlanWave,
    RestorePoint,
    StageRun,
    TriageResult,
    utcnow,
)
from orchestrator.timefmt import iso


def _stage_columns() -> tuple[str, ...]:
    """When each stage finished, in stage order, as its stage file names the column; where the host's
    containment stands follows the isolate stage's."""
    out: list[str] = []
    for stage in STAGES:
        if stage.report_column:
            out.append(stage.report_column)
            if stage.name == CONTAIN[0]:
                out += ["containment", "time_to_containment_s"]
    return tuple(out)


# The per-host row, identical in CSV and JSON: flat values, lists joined with ";".
COLUMNS = (
    "host",
    *IDENTITY,
    "data_categories",
    "verdict",
    "worst_verdict",
    "compromised_at",
    "action",
    "wave",
    "state",
    "outcome",
    "stage",
    "reason",
    "recovery_started_at",
    *_stage_columns(),
    "recovered_at",
    "time_to_recover_s",
    "evidence_items",
    "snapshot_id",
    "snapshot_time",
    "audit_head",  # the same on every row: the log this report was made from (see `audit verify --expect`)
)
# Failures first, then protected hosts found affected, then holds (as `orchestrator status`).
_URGENCY = {"failed": 0, "hold": 2}


@dataclass
class Report:
    generated_at: datetime
    plan: dict[str, Any] | None
    rows: list[dict[str, Any]]
    evidence: dict[str, list[dict[str, Any]]]
    wave_meta: dict[int, dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    tiers: list[dict[str, Any]] = field(default_factory=list)
    waves: list[dict[str, Any]] = field(default_factory=list)
    attention: list[dict[str, Any]] = field(default_factory=list)
    regulator: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    containment: dict[str, Any] = field(default_factory=dict)  # see reporting.next_steps
    decisions: list[dict[str, Any]] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def build(store: Store, now: datetime | None = None) -> Report:
    now = now or utcnow()
    with store.read() as session:
        plan = plans.in_force(session)
        plan_id = plan.id if plan else None
        hosts = session.exec(select(Host).order_by(col(Host.tier), col(Host.name))).all()
        members = _members(session, plan_id)
        triage = _triage(session)
        stages = _stage_times(session)
        evidence = _evidence(session)
        snapshots = _snapshots(session)
        audit_head = audit.head(session)
        wave_meta = (
            {
                w.number: {"tier": w.tier, "estimated_s": w.estimated_s}
                for w in session.exec(select(PlanWave).where(PlanWave.plan_id == plan_id))
            }
            if plan_id
            else {}
        )
        people = next_steps.assess(session, plan)
    rows = [
        _row(h, members.get(h.name), triage.get(h.name), stages.get(h.name), evidence, snapshots)
        for h in hosts
    ]
    report = Report(
        generated_at=now,
        plan=None
        if plan is None
        else {
            "id": plan.id,
            "status": plan.status,
            "created_at": iso(plan.created_at),
            "approved_by": plan.approved_by,
            "approved_at": iso(plan.approved_at),
            "approved_hash": plan.approved_hash,
            "estimated_s": plan.estimated_s,
        },
        rows=rows,
        evidence=evidence,
        wave_meta=wave_meta,
        audit=audit_head,
    )
    for row in rows:
        row["audit_head"] = audit_head["last_hash"] or ""
    report.summary = _summary(rows, now)
    report.tiers = _tiers(rows, report.summary["recovery_started_at"])
    report.waves = _waves(rows, wave_meta)
    report.attention = sorted(
        (r for r in rows if r["outcome"] in ("failed", "hold") or _protected_flagged(r)),
        key=lambda r: (_URGENCY.get(r["outcome"], 1), r["tier"], r["host"]),
    )
    report.regulator = _regulator(rows)
    report.containment = people["containment"]
    report.decisions = people["decisions"]
    report.next_steps = people["next_steps"]
    contained = people["containment"]["hosts"]
    for row in rows:
        entry = contained.get(row["host"])
        row["containment"] = entry["status"] if entry else None
        row["time_to_containment_s"] = entry["time_to_containment_s"] if entry else None
    return report


def _members(session: Session, plan_id: int | None) -> dict[str, PlanMember]:
    if plan_id is None:
        return {}
    return {m.host_name: m for m in session.exec(select(PlanMember).where(PlanMember.plan_id == plan_id))}


def _triage(session: Session) -> dict[str, dict[str, Any]]:
    """Per host: the latest verdict, the worst ever, and the earliest compromise time ever found
    (a rebuilt host triaged clean afterwards was still affected)."""
    found: dict[str, dict[str, Any]] = {}
    query = select(
        TriageResult.host_name, TriageResult.verdict, TriageResult.reason, TriageResult.compromise_time
    )
    for name, verdict, reason, compromised in session.exec(query.order_by(col(TriageResult.id))):
        entry = found.setdefault(name, {"worst": verdict, "compromised": None})
        entry["latest"], entry["reason"] = verdict, reason
        if worse(verdict, entry["worst"]):
            entry["worst"] = verdict
        if compromised and (entry["compromised"] is None or compromised < entry["compromised"]):
            entry["compromised"] = compromised
    return found


def _stage_times(session: Session) -> dict[str, dict[str, Any]]:
    """Per host: first stage start, each stage's last successful end, the last failure message."""
    found: dict[str, dict[str, Any]] = defaultdict(lambda: {"start": None, "ends": {}, "failure": None})
    query = (
        select(
            StageRun.host_name,
            StageRun.stage,
            StageRun.status,
            StageRun.started_at,
            StageRun.finished_at,
            StageRun.message,
        )
        .where(col(StageRun.check_mode).is_(False))
        .order_by(col(StageRun.id))
    )
    for name, stage, status, started, finished, message in session.exec(query):
        entry = found[name]
        if entry["start"] is None or started < entry["start"]:
            entry["start"] = started
        if status == "ok" and finished:
            entry["ends"][stage] = finished
        elif status == "failed":
            entry["failure"] = f"{stage}: {message}" if message else stage
    return found


def _evidence(session: Session) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in session.exec(select(EvidenceItem).order_by(col(EvidenceItem.host_name), col(EvidenceItem.id))):
        found[e.host_name].append(
            {
                "path": e.path,
                "sha256": e.sha256,
                "size": e.size,
                "collected_by": e.collected_by,
                "collected_at": iso(e.collected_at),
                "stored_at": e.stored_at,
            }
        )
    return dict(found)


def _snapshots(session: Session) -> dict[str, RestorePoint]:
    return {r.host_name: r for r in session.exec(select(RestorePoint).order_by(col(RestorePoint.id)))}


def _row(
    host: Host,
    member: PlanMember | None,
    triage: dict[str, Any] | None,
    stages: dict[str, Any] | None,
    evidence: dict[str, list[dict[str, Any]]],
    snapshots: dict[str, RestorePoint],
) -> dict[str, Any]:
    ends = stages["ends"] if stages else {}
    started = stages["start"] if stages else None
    recovered = None
    if host.state == RECOVERED:
        recovered = ends.get(RECONNECT) or host.state_changed_at
    snapshot = snapshots.get(host.name)
    outcome = lifecycle.category(host.state, member.action if member else None)
    reason = host.state_reason or (stages["failure"] if stages and outcome == "failed" else None)
    return {
        "host": host.name,
        "address": host.address,
        "os": host.os,
        "tier": host.tier,
        "role": host.role,
        "site": host.site,
        "protected": host.protected,
        "data_categories": ";".join(host.data_categories or []),
        "verdict": triage["latest"] if triage else None,
        "worst_verdict": triage["worst"] if triage else None,
        "compromised_at": iso(triage["compromised"]) if triage else None,
        "action": member.action if member else None,
        "wave": member.wave if member else None,
        "state": host.state,
        "outcome": outcome,
        "stage": host.stage,
        "reason": reason or (member.reason if member and outcome in ("hold", "protected") else None),
        "recovery_started_at": iso(started),
        **{s.report_column: iso(ends.get(s.name)) for s in STAGES if s.report_column},
        "recovered_at": iso(recovered),
        "time_to_recover_s": round(seconds(started, recovered), 1) if started and recovered else None,
        "evidence_items": len(evidence.get(host.name, ())),
        "snapshot_id": snapshot.snapshot_id if snapshot else None,
        "snapshot_time": iso(snapshot.snapshot_time) if snapshot else None,
    }


def _protected_flagged(row: dict[str, Any]) -> bool:
    """A protected host whose latest triage is infected or suspicious: a person must decide."""
    return bool(row["protected"]) and row["verdict"] in AFFECTED and row["outcome"] != "recovered"


def _summary(rows: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    outcomes = Counter(r["outcome"] for r in rows)
    starts = [r["recovery_started_at"] for r in rows if r["recovery_started_at"]]
    recovered = [r["recovered_at"] for r in rows if r["recovered_at"]]
    started = min(starts) if starts else None
    return {
        "hosts": len(rows),
        "outcomes": {c: outcomes.get(c, 0) for c in lifecycle.CATEGORIES if c != "other" or outcomes.get(c)},
        "verdicts": dict(Counter(r["worst_verdict"] or "not triaged" for r in rows).most_common()),
        "affected": sum(1 for r in rows if r["worst_verdict"] in AFFECTED),
        "recovery_started_at": started,
        "last_recovered_at": max(recovered) if recovered else None,
        "elapsed_s": round((now - datetime.fromisoformat(started)).total_seconds(), 1) if started else None,
        "percent_recovered": round(100.0 * outcomes.get("recovered", 0) / len(rows), 1) if rows else 0.0,
    }


def _tiers(rows: list[dict[str, Any]], recovery_started_at: str | None) -> list[dict[str, Any]]:
    """Time to recover per tier: each host's own time through its path, and when the tier was done."""
    by_tier: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_tier[r["tier"]].append(r)
    result = []
    for tier, members in sorted(by_tier.items()):
        outcomes = Counter(r["outcome"] for r in members)
        times = [r["time_to_recover_s"] for r in members if r["time_to_recover_s"] is not None]
        last = max((r["recovered_at"] for r in members if r["recovered_at"]), default=None)
        done = outcomes.get("recovered", 0) == len(members)
        result.append(
            {
                "tier": tier,
                "name": TIERS.get(tier, ""),
                "hosts": len(members),
                **{c: outcomes.get(c, 0) for c in lifecycle.CATEGORIES if c != "other"},
                "median_time_to_recover_s": round(statistics.median(times), 1) if times else None,
                "max_time_to_recover_s": round(max(times), 1) if times else None,
                "last_recovered_at": last,
                "all_recovered": done,
                "recovered_after_s": round(
                    (
                        datetime.fromisoformat(last) - datetime.fromisoformat(recovery_started_at)
                    ).total_seconds(),
                    1,
                )
                if last and recovery_started_at
                else None,
            }
        )
    return result


def _waves(rows: list[dict[str, Any]], wave_meta: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    by_wave: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["wave"] is not None:
            by_wave[r["wave"]].append(r)
    result = []
    for wave in sorted(set(by_wave) | set(wave_meta)):
        members = sorted(by_wave.get(wave, []), key=lambda r: r["host"])
        outcomes = Counter(r["outcome"] for r in members)
        starts = [r["recovery_started_at"] for r in members if r["recovery_started_at"]]
        ends = [r["recovered_at"] for r in members if r["recovered_at"]]
        result.append(
            {
                "wave": wave,
                "tier": wave_meta.get(wave, {}).get("tier"),
                "hosts": len(members),
                **{c: outcomes.get(c, 0) for c in lifecycle.CATEGORIES if c != "other"},
                "started_at": min(starts) if starts else None,
                "last_recovered_at": max(ends) if ends else None,
                "estimated_s": wave_meta.get(wave, {}).get("estimated_s"),
                "members": members,
            }
        )
    return result


def _regulator(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Breach notification: affected systems holding personal or health data, and their timeline."""
    affected = [
        r for r in rows if r["data_categories"] and (r["worst_verdict"] in AFFECTED or r["compromised_at"])
    ]
    categories: Counter[str] = Counter()
    for r in affected:
        categories.update(r["data_categories"].split(";"))
    return {
        "systems": affected,
        "by_category": dict(sorted(categories.items())),
        "holding_data": sum(1 for r in rows if r["data_categories"]),
        "earliest_compromise": min(
            (r["compromised_at"] for r in affected if r["compromised_at"]), default=None
        ),
        "restored": sum(1 for r in affected if r["outcome"] == "recovered"),
    }
