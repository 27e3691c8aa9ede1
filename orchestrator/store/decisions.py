"""People's decisions as recorded, one read model for the planner, the engine and the reports: each
host's standing `host decide` decision and its restore cutoff in force (`restore_cutoffs`, the only
reader of RestoreDecision, whichever command wrote it). Recording them is `planning.decisions`' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.lifecycle.decision_view import (  # noqa: F401 (re-exported for planning.decisions)
    RESTORE_POINT,
    as_dict,
    cutoff_dict,
    listed,
)
from orchestrator.store.models import HostDecision, RestoreDecision
from orchestrator.timefmt import iso_exact as _iso  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class Decided:
    """A person's restore-point decision for one host (the newest in force)."""

    before: datetime
    by: str
    why: str
    accepted: bool
    at: datetime
    compromised_since: datetime | None = None  # what the person said, when given as a moment


def standing(session: Session, hosts: list[str] | None = None) -> dict[str, HostDecision]:
    """Each host's standing decision (a new decision withdraws the one it replaces)."""
    query = select(HostDecision).where(col(HostDecision.withdrawn_at).is_(None))
    if hosts is not None:
        query = query.where(col(HostDecision.host_name).in_(hosts))
    out: dict[str, HostDecision] = {}
    for row in session.exec(query.order_by(col(HostDecision.id))):
        out[row.host_name] = row
    return out


def said(row: HostDecision) -> str:
    """How a plan reason or a status line quotes the decision."""
    return f"by {row.decided_by}: {row.why}"


def standing_cutoffs(session: Session, hosts: list[str] | None = None) -> dict[str, RestoreDecision]:
    """Each host's restore cutoff in force: its newest RestoreDecision not withdrawn, whichever
    command recorded it."""
    query = select(RestoreDecision).where(col(RestoreDecision.withdrawn_at).is_(None))
    if hosts is not None:
        query = query.where(col(RestoreDecision.host_name).in_(hosts))
    out: dict[str, RestoreDecision] = {}
    for row in session.exec(query.order_by(col(RestoreDecision.decided_at), col(RestoreDecision.id))):
        out[row.host_name] = row
    return out


def restore_cutoffs(session: Session, hosts: list[str] | None = None) -> dict[str, Decided]:
    """The one source of a person's restore cutoff, for the planner and the engine."""
    return {
        name: Decided(
            _aware(row.before), row.decided_by, row.why, row.accepted, _aware(row.decided_at),
            _aware(row.compromised_since) if row.compromised_since else None,
        )
        for name, row in standing_cutoffs(session, hosts).items()
    }  # fmt: skip


def in_force(session: Session, hosts: list[str]) -> list[dict[str, Any]]:
    """Every standing decision about `hosts`, as `plan show`, `status` and the report list them: a
    host's action decision, then its restore cutoff (shown alike whichever command recorded it)."""
    return listed(standing(session, hosts), standing_cutoffs(session, hosts))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
