"""The plan as data for people and spreadsheets: the stable JSON shape of `plan`, `plan show`,
`plan diff` and `plan export`, and the CSV rows (documented in docs/commands.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.lifecycle import ACTIONS, PROTECTED, REBUILD, VERIFY
from orchestrator.planning.store import Change, PlanDiff, PlanView
from orchestrator.store.models import Host, PlanMember
from orchestrator.timefmt import as_stored

CSV_COLUMNS = (
    "wave",
    "wave_tier",
    "wave_start_min",
    "wave_end_min",
    "host",
    "action",
    "verdict",
    "reason",
    "tier",
    "priority",
    "site",
    "os",
    "reimage_method",
    "estimated_min",
)


def _schedule(view: PlanView) -> dict[int, tuple[float, float]]:
    """Each wave's start and end, in seconds from the start of the run (containment first). Waves
    overlap: the plan keeps their starts (`wave_start_s`). A plan made before they did ran its waves
    one after another from the end of containment, so its starts are the running sum."""
    params = view.plan.params
    starts = params.get("wave_start_s")
    if starts is None:
        starts, clock = [], float(params.get("bounds", {}).get("containment_s", 0.0))
        for wave in view.waves:
            starts.append(clock)
            clock += wave.estimated_s
    return {w.number: (start, start + w.estimated_s) for w, start in zip(view.waves, starts, strict=True)}


def estimate(view: PlanView) -> dict[str, Any]:
    plan = view.plan
    bounds = plan.params.get("bounds", {})
    tiers = bounds.get("tiers", [])
    return {
        "total_s": plan.estimated_s,
        "lower_bound_s": plan.lower_bound_s,
        "ratio": round(plan.estimated_s / plan.lower_bound_s, 4) if plan.lower_bound_s else None,
        "critical_path_s": sum(t["chain_s"] for t in tiers),
        "capacity_s": sum(t["capacity_s"] for t in tiers),
        "unordered_bound_s": bounds.get("unordered_s", 0.0),
        "unordered_binding": bounds.get("unordered_binding", ""),
        "forks": plan.params.get("forks"),
        "containment_s": bounds.get("containment_s", 0.0),
        "tiers": tiers,
    }


def member_dict(m: PlanMember) -> dict[str, Any]:
    return {
        "host": m.host_name,
        "action": m.action,
        "wave": m.wave,
        "tier": m.tier,
        "priority": m.priority,
        "verdict": m.verdict,
        "reason": m.reason,
        "estimated_s": m.estimated_s,
    }


def plan_document(view: PlanView) -> dict[str, Any]:
    plan = view.plan
    counts = dict.fromkeys(ACTIONS, 0)
    for m in view.members:
        counts[m.action] += 1
    schedule = _schedule(view)
    by_wave = view.wave_members()
    return {
        "plan": {
            "id": plan.id,
            "status": plan.status,
            "created_at": as_stored(plan.created_at),
            "created_by": plan.created_by,
            "triage_run_id": plan.triage_run_id,
            "content_hash": plan.content_hash,
            "approved_by": plan.approved_by,
            "approved_at": as_stored(plan.approved_at),
            "approved_hash": plan.approved_hash,
            "changed_since_approval": view.changed_since_approval,
            "params": plan.params,
        },
        "summary": {"hosts": len(view.members), **counts, "waves": len(view.waves)},
        "estimate": estimate(view),
        "waves": [
            {
                "number": w.number,
                "tier": w.tier,
                "estimated_s": w.estimated_s,
                "start_s": schedule[w.number][0],
                "end_s": schedule[w.number][1],
                "rebuild": sum(1 for m in by_wave[w.number] if m.action == REBUILD),
                "verify": sum(1 for m in by_wave[w.number] if m.action == VERIFY),
                "protected": sum(1 for m in by_wave[w.number] if m.action == PROTECTED),
                "hosts": [m.host_name for m in by_wave[w.number]],
            }
            for w in view.waves
        ],
        "members": [member_dict(m) for m in view.members],
        "decisions": view.decisions,
    }


def csv_rows(view: PlanView, hosts: Mapping[str, Host]) -> list[dict[str, Any]]:
    """One row per host, in running order; hosts on hold last, without a wave."""
    schedule = _schedule(view)
    tiers = {w.number: w.tier for w in view.waves}
    rows = []
    for m in view.members:
        host = hosts.get(m.host_name)
        start, end = schedule.get(m.wave, (None, None)) if m.wave is not None else (None, None)
        rows.append(
            {
                "wave": m.wave if m.wave is not None else "",
                "wave_tier": tiers.get(m.wave, "") if m.wave is not None else "",
                "wave_start_min": round(start / 60) if start is not None else "",
                "wave_end_min": round(end / 60) if end is not None else "",
                "host": m.host_name,
                "action": m.action,
                "verdict": m.verdict or "",
                "reason": m.reason,
                "tier": m.tier,
                "priority": m.priority,
                "site": (host.site if host else None) or "",
                "os": host.os if host else "",
                "reimage_method": (host.reimage_method if host else None) or "",
                "estimated_min": round(m.estimated_s / 60) if m.wave is not None else "",
            }
        )
    return rows


def _change(c: Change) -> dict[str, Any]:
    return {
        "host": c.host,
        "before": {"action": c.before.action, "wave": c.before.wave, "reason": c.before.reason}
        if c.before
        else None,
        "after": {"action": c.after.action, "wave": c.after.wave, "reason": c.after.reason}
        if c.after
        else None,
    }


def diff_document(d: PlanDiff) -> dict[str, Any]:
    return {
        "approved": {
            "id": d.base.id,
            "triage_run_id": d.base.triage_run_id,
            "content_hash": d.base.content_hash,
        },
        "draft": {
            "id": d.target.id,
            "triage_run_id": d.target.triage_run_id,
            "content_hash": d.target.content_hash,
        },
        "changed": d.changed,
        "added": [_change(c) for c in d.added],
        "removed": [_change(c) for c in d.removed],
        "action_changed": [_change(c) for c in d.action_changed],
        "wave_changed": [_change(c) for c in d.wave_changed],
        "unchanged": d.unchanged,
    }
