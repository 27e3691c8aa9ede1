"""Where containment stands, one read model for the engine, `status` and the report: each host
isolated by its isolate stage, requested from the network team, or not yet; and the MAC address triage
saw on a host, for the network team's request. Requesting is `execution.containment`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from orchestrator import lifecycle
from orchestrator.lifecycle import CONTAINED, NOT_YET, REQUESTED
from orchestrator.store.models import CheckMatch, ContainmentRequest, StageRun, TriageResult

MAC = re.compile(r"\b([0-9a-f]{2}(?::[0-9a-f]{2}){5})\b", re.IGNORECASE)
ISOLATE = lifecycle.CONTAIN[0]  # the stage whose success is a host's containment


def macs_seen(session: Session, hosts: Sequence[str]) -> dict[str, str]:
    """A MAC address triage saw on each host (in any match's evidence), the newest first."""
    rows = session.exec(
        select(TriageResult.host_name, CheckMatch.evidence)
        .join(CheckMatch, col(CheckMatch.result_id) == col(TriageResult.id))
        .where(col(TriageResult.host_name).in_(list(hosts)))
        .order_by(col(TriageResult.id).desc())
    )
    out: dict[str, str] = {}
    for name, evidence in rows:
        found = MAC.search(evidence or "")
        if found and name not in out:
            out[name] = found.group(1).lower()
    return out


@dataclass
class HostContainment:
    status: str  # contained | requested | not yet
    at: datetime | None = None  # when it was isolated, or when the network team was asked
    reason: str | None = None


def summary(session: Session, hosts: Sequence[str]) -> dict[str, HostContainment]:
    """Where each of `hosts` stands: isolated by its isolate stage, requested, or not yet."""
    out = {h: HostContainment(NOT_YET) for h in hosts}
    isolated = session.exec(
        select(StageRun.host_name, StageRun.finished_at)
        .where(StageRun.stage == ISOLATE, StageRun.status == "ok", col(StageRun.check_mode).is_(False))
        .order_by(col(StageRun.id))
    )
    for name, at in isolated:
        if name in out and out[name].status == NOT_YET:
            out[name] = HostContainment(CONTAINED, at)
    for row in session.exec(select(ContainmentRequest).order_by(col(ContainmentRequest.id))):
        if row.host_name in out and out[row.host_name].status == NOT_YET:
            out[row.host_name] = HostContainment(REQUESTED, row.requested_at, row.reason)
    return out
