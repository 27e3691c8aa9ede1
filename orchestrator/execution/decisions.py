"""A person's restore-point decision for one host: the only way a host's restore point is chosen from
anything but its own, checked, compromise time (see `orchestrator.planning.compromise`).

Recorded as a RestoreDecision row and an audit entry in one transaction. The next plan carries it in
the host's reason (so approving that plan approves the decision); a host already in the approved plan
that was held at its restore uses it on the next `run`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select

from orchestrator.errors import OrchestratorError
from orchestrator.execution.restore_points import DEFAULT_MARGIN
from orchestrator.store import Store, audit
from orchestrator.store.models import Host, RestoreDecision, TriageResult, utcnow


def set_restore_point(
    store: Store,
    operator: str,
    host: str,
    before: datetime | None,
    why: str,
    args: dict[str, Any],
) -> RestoreDecision:
    """Restore `host` from its newest clean snapshot before `before`; None accepts its latest triage
    estimate as it is (minus the usual margin). Raises OrchestratorError (nothing written) when the
    host or its estimate is unknown, or the time is in the future."""
    if not why.strip():
        raise OrchestratorError("--why is required: say why this restore point is right")
    with store.write() as session:
        if session.exec(select(Host.id).where(Host.name == host)).first() is None:
            raise OrchestratorError(f"no host {host} in the database: run 'orchestrator triage' first")
        result = session.exec(
            select(TriageResult)
            .where(TriageResult.host_name == host)
            .order_by(col(TriageResult.run_id).desc(), col(TriageResult.id).desc())
            .limit(1)
        ).first()
        estimate = _aware(result.compromise_time) if result and result.compromise_time else None
        if before is None:
            if estimate is None:
                raise OrchestratorError(
                    f"{host} has no compromise time from triage to accept: give --before TIME"
                )
            cutoff = estimate - DEFAULT_MARGIN
        else:
            cutoff = _aware(before)
        if cutoff > utcnow():
            raise OrchestratorError(
                f"restore point before {cutoff.isoformat(timespec='seconds')} lies in the future"
            )
        decision = RestoreDecision(
            host_name=host,
            before=cutoff,
            accepted=before is None,
            why=why.strip(),
            decided_by=operator,
            triage_run_id=result.run_id if result else None,
        )
        session.add(decision)
        audit.record(
            session,
            operator,
            "host restore-point",
            args,
            {
                "before": cutoff.isoformat(),
                "accepted_estimate": before is None,
                "triage_estimate": estimate.isoformat() if estimate else None,
                "triage_run": decision.triage_run_id,
                "why": decision.why,
            },
            host=host,
        )
    return decision


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
