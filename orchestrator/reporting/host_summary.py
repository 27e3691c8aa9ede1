"""`orchestrator status HOST`'s view built from the rows its queries return.

Kept apart from the queries (and free of SQLAlchemy) so that both readers build it the same way:
`host_view` through SQLAlchemy (any database) and `sqlite_read` through the standard library's
sqlite3 (the new-process `status HOST` on a SQLite file). Each builder takes one row's values in the
types SQLAlchemy hands back (aware UTC datetimes, bools, parsed JSON); `sqlite_read` converts first.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.host_facts import FIELDS
from orchestrator.reporting import durations, lifecycle
from orchestrator.timefmt import iso

# What a host's timeline shows of its inventory facts: what the host row mirrors, its name and
# dependencies.
FACTS = ("name", *FIELDS, "depends_on")
# The host row's columns the view reads besides its facts.
PROGRESS = ("state", "stage", "state_reason", "state_changed_at", "synced_at")


def unknown(name: str, candidates: Iterable[str]) -> str:
    """The error for a host not in the database, with close names (`candidates` share its first two
    characters)."""
    close = difflib.get_close_matches(name, list(candidates), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else " (run 'orchestrator inventory sync' first?)"
    return f"no host {name!r} in the database{hint}"


def match_entry(check_id: str, title: str, severity: str, evidence: str, first_seen: datetime | None) -> dict:
    return {
        "check_id": check_id,
        "title": title,
        "severity": severity,
        "evidence": evidence,
        "first_seen": iso(first_seen),
    }


def triage_entry(row: Mapping[str, Any], run_started: datetime | None, matches: list[dict]) -> dict[str, Any]:
    """A `triage_result` row (with its run's start and its matches)."""
    return {
        "run_id": row["run_id"],
        "run_started_at": iso(run_started),
        "verdict": row["verdict"],
        "reason": row["reason"],
        "compromise_time": iso(row["compromise_time"]),
        "duration_s": row["duration_s"],
        "created_at": iso(row["created_at"]),
        "matches": matches,
    }


def plan_entry(
    plan_id: int, plan_status: str, approved_at: datetime | None, member: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The host's place in the current plan (`member`: its `plan_member` row, if any)."""
    return {
        "plan_id": plan_id,
        "plan_status": plan_status,
        "approved_at": iso(approved_at),
        "action": member["action"] if member else None,
        "wave": member["wave"] if member else None,
        "reason": member["reason"] if member else "not in the plan",
        "verdict": member["verdict"] if member else None,
    }


def stage_entry(row: Mapping[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """A `stage_run` row with its events."""
    started, finished = row["started_at"], row["finished_at"]
    return {
        "id": row["id"],
        "stage": row["stage"],
        "attempt": row["attempt"],
        "status": row["status"],
        "check_mode": row["check_mode"],
        "plan_id": row["plan_id"],
        "wave": row["wave"],
        "started_at": iso(started),
        "finished_at": iso(finished),
        "duration_s": round(durations.seconds(started, finished), 1) if finished else None,
        "task": row["task"],
        "message": row["message"],
        "events": events,
    }


def event_entry(event: str, task: str | None, created_at: datetime | None) -> dict[str, Any]:
    return {"event": event, "task": task, "at": iso(created_at)}


def evidence_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "path": row["path"],
        "sha256": row["sha256"],
        "size": row["size"],
        "collected_by": row["collected_by"],
        "collected_at": iso(row["collected_at"]),
        "stored_at": row["stored_at"],
        "stage_run_id": row["stage_run_id"],
    }


def audit_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "ts": iso(row["ts"]),
        "operator": row["operator"],
        "command": row["command"],
        "details": row["details"],
    }


def assemble(
    host: Mapping[str, Any],
    triage: list[dict[str, Any]],
    plan: dict[str, Any] | None,
    stages: list[dict[str, Any]],
    evidence: list[dict[str, Any]],
    restore: Mapping[str, Any] | None,
    audit: list[dict[str, Any]],
    medians: dict[str, float],
) -> dict[str, Any]:
    """The whole view; `host` holds `FACTS` and `PROGRESS`, `restore` the newest restore point."""
    remaining = lifecycle.remaining_stages(plan["action"] if plan else None, host["state"], host["protected"])
    unmeasured = [s for s in remaining if s not in medians]
    return {
        "host": {f: host[f] for f in FACTS},
        "state": host["state"],
        "stage": host["stage"],
        "bucket": lifecycle.category(host["state"]),
        "state_reason": host["state_reason"],
        "state_changed_at": iso(host["state_changed_at"]),
        "synced_at": iso(host["synced_at"]),
        "triage": triage,
        "plan": plan,
        "stages": stages,
        "evidence": evidence,
        "restore_point": None
        if restore is None
        else {
            "snapshot_id": restore["snapshot_id"],
            "snapshot_time": iso(restore["snapshot_time"]),
            "cutoff": iso(restore["cutoff"]),
            "chosen_at": iso(restore["chosen_at"]),
            "skipped": restore["skipped"],
        },
        "audit": audit,
        "remaining_stages": list(remaining),
        "eta_s": round(sum(medians.get(s, 0.0) for s in remaining), 1) if remaining else None,
        "eta_unmeasured_stages": unmeasured,
        "timeline": _merge(host, triage, plan, stages, evidence, audit),
    }


def _merge(
    host: Mapping[str, Any],
    triage: Sequence[dict[str, Any]],
    plan: dict[str, Any] | None,
    stages: Sequence[dict[str, Any]],
    evidence: Sequence[dict[str, Any]],
    audit: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One chronological list for the reader who wants the story, not the tables."""
    items: list[dict[str, Any]] = [
        {
            "at": iso(host["synced_at"]),
            "kind": "inventory",
            "text": f"recorded from inventory (tier {host['tier']})",
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
