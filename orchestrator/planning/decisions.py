"""People's decisions about single hosts (`orchestrator host decide`): recorded with who and why in
the same transaction as their audit entry, withdrawable, honoured by the next plan and the next run.

The rules decide what they can from a verdict; some calls only a person can make: rebuild a host
nobody could reach (through its out-of-band reimage method), accept or reject a protected host's
finding, let a host reconnect without waiting for a held dependency, record a host rebuilt by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.errors import OrchestratorError, RefusedError
from orchestrator.planning.model import (
    DECIDE_DONE,
    DECIDE_HOLD,
    DECIDE_REBUILD,
    DECIDE_RELEASE,
    DECIDE_VERIFY,
    DECISIONS,
)
from orchestrator.store import Store, audit
from orchestrator.store.models import Host, HostDecision, utcnow

MAX_WHY = 500
# What each decision means, for help texts and `status`.
MEANING = {
    DECIDE_REBUILD: "rebuild it (an unreachable host through its out-of-band reimage method)",
    DECIDE_VERIFY: "verify only (a protected host's finding accepted, a clean host nobody could triage)",
    DECIDE_HOLD: "keep it out of the plan (a protected host's finding rejected, a host to look at)",
    DECIDE_RELEASE: "reconnect it without waiting for its held dependencies",
    DECIDE_DONE: "rebuilt by hand: counts as recovered",
}


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


def for_planner(rows: dict[str, HostDecision]) -> dict[str, tuple[str, str]]:
    return {name: (row.decision, said(row)) for name, row in rows.items()}


def _why(why: str) -> str:
    text = " ".join(why.split())
    if not text:
        raise OrchestratorError("--why: say why (it is kept in the audit log and shown with the host)")
    if len(text) > MAX_WHY:
        raise OrchestratorError(f"--why: at most {MAX_WHY} characters, got {len(text)}")
    return text


def decide(
    store: Store,
    operator: str,
    host: str,
    decision: str,
    why: str,
    args: dict[str, Any],
    compromised_since: datetime | None = None,
) -> HostDecision:
    """Record `decision` for `host` (replacing any standing one), audited in the same transaction."""
    if decision not in DECISIONS:
        raise OrchestratorError(f"unknown decision {decision!r} (decisions: {', '.join(DECISIONS)})")
    if compromised_since is not None and decision != DECIDE_REBUILD:
        raise OrchestratorError(
            "--compromised-since goes with --rebuild (it sets the restore point's cutoff)"
        )
    if compromised_since is not None and compromised_since.tzinfo is None:
        compromised_since = compromised_since.replace(tzinfo=UTC)
    text = _why(why)
    with store.write() as session:
        row = session.exec(select(Host).where(Host.name == host)).first()
        if row is None:
            raise OrchestratorError(
                f"no host {host} in the database: plan it first ('orchestrator plan' records the hosts)"
            )
        if row.protected and decision == DECIDE_REBUILD:
            raise RefusedError(
                f"host {host} is protected: it is never wiped; decide --verify (finding accepted) or --hold"
            )
        before = standing(session, [host]).get(host)
        if before is not None:
            before.withdrawn_by, before.withdrawn_at = operator, utcnow()
            before.withdrawn_why = "replaced by a new decision"
            session.add(before)
        entry = HostDecision(
            host_name=host,
            decision=decision,
            why=text,
            decided_by=operator,
            compromised_since=compromised_since,
        )
        session.add(entry)
        session.flush()
        audit.record(
            session,
            operator,
            "host decide",
            args,
            {"decision": decision, "why": text, "replaces": before.decision if before else None,
             "decision_id": entry.id,
             "compromised_since": compromised_since.isoformat() if compromised_since else None},
            host=host,
        )  # fmt: skip
    return entry


def withdraw(store: Store, operator: str, host: str, why: str, args: dict[str, Any]) -> HostDecision:
    """Withdraw `host`'s standing decision; the rules (or an older decision) apply again."""
    text = _why(why)
    with store.write() as session:
        row = standing(session, [host]).get(host)
        if row is None:
            raise OrchestratorError(f"host {host} has no standing decision to withdraw")
        row.withdrawn_by, row.withdrawn_at, row.withdrawn_why = operator, utcnow(), text
        session.add(row)
        audit.record(
            session,
            operator,
            "host decide withdraw",
            args,
            {"decision": row.decision, "decision_id": row.id, "why": text},
            host=host,
        )
    return row


def as_dict(row: HostDecision) -> dict[str, Any]:
    return {
        "host": row.host_name,
        "decision": row.decision,
        "why": row.why,
        "by": row.decided_by,
        "at": row.decided_at.isoformat() if row.decided_at else None,
        "compromised_since": row.compromised_since.isoformat() if row.compromised_since else None,
    }


WITHDRAW = "withdraw"


def record(
    store: Store,
    operator: str,
    host: str,
    decision: str,
    why: str,
    args: dict[str, Any],
    compromised_since: datetime | None = None,
) -> HostDecision:
    """`orchestrator host decide`: a decision, or WITHDRAW to withdraw the standing one."""
    if decision == WITHDRAW:
        if compromised_since is not None:
            raise OrchestratorError("--compromised-since goes with --rebuild, not --withdraw")
        return withdraw(store, operator, host, why, args)
    return decide(store, operator, host, decision, why, args, compromised_since)
