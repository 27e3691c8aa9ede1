"""People's decisions as `plan show`, `status` and the report list them, built from rows.

Beside the lifecycle's decision names (and free of SQLAlchemy) so that `store.decisions` and
`reporting.sqlite_read`, which reads a SQLite file through the standard library, list them with the
same code. A row is anything
with the columns as attributes: a `HostDecision` or `RestoreDecision`, or `sqlite_read`'s own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrator.timefmt import iso_exact as iso
from orchestrator.timefmt import stamp

RESTORE_POINT = "restore point"  # the `decision` of a restore cutoff in `in_force` lists


def listed(actions: Mapping[str, Any], cutoffs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every standing decision, by host: its action decision, then its restore cutoff."""
    out: list[dict[str, Any]] = []
    for name in sorted(set(actions) | set(cutoffs)):
        if name in actions:
            out.append(as_dict(actions[name], cutoffs.get(name)))
        if name in cutoffs:
            out.append(cutoff_dict(cutoffs[name]))
    return out


def as_dict(row: Any, cutoff: Any = None) -> dict[str, Any]:
    """A decision as listed; `compromised_since` is what the person said with it, while the restore
    cutoff it set is still the one in force."""
    said_with = cutoff if cutoff is not None and cutoff.host_decision_id == row.id else None
    return {
        "host": row.host_name,
        "decision": row.decision,
        "summary": row.decision,
        "why": row.why,
        "by": row.decided_by,
        "at": iso(row.decided_at),
        "compromised_since": iso(said_with.compromised_since) if said_with else None,
    }


def cutoff_dict(row: Any) -> dict[str, Any]:
    """A restore cutoff as listed, the same whichever command recorded it (`via` says which)."""
    return {
        "host": row.host_name,
        "decision": RESTORE_POINT,
        "summary": f"{RESTORE_POINT} before {stamp(row.before)}",
        "why": row.why,
        "by": row.decided_by,
        "at": iso(row.decided_at),
        "restore_before": iso(row.before),
        "compromised_since": iso(row.compromised_since),
        "accepted_estimate": row.accepted,
        "via": "host decide --compromised-since" if row.host_decision_id else "host restore-point",
    }
