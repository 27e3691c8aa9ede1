"""People's decisions about single hosts: recorded with who and why in the same transaction as their
audit entry, withdrawable, honoured by the next plan and the next run.

The rules decide what they can from a verdict; some calls only a person can make: rebuild a host
nobody could reach (through its out-of-band reimage method), accept or reject a protected host's
finding, let a host reconnect without waiting for a held dependency, record a host rebuilt by hand
(`host decide`: a HostDecision, one standing per host), and say where a host's restore point lies
instead of the compromise time the host itself reported (a RestoreDecision).

A restore cutoff is one notion whichever command says it: `host restore-point --before/--accept` and
`host decide --rebuild --compromised-since` both write a RestoreDecision, and the newest one not
withdrawn is the one plans, runs, `status` and the report use (`restore_cutoffs`, the only reader).
So the two spellings cannot disagree: the later one replaces the earlier, and its audit entry names
what it replaced. `--withdraw` withdraws either (a decision withdraws the cutoff that came with it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.errors import OrchestratorError, RefusedError
from orchestrator.lifecycle import (
    DECIDE_DONE,
    DECIDE_HOLD,
    DECIDE_REBUILD,
    DECIDE_RELEASE,
    DECIDE_VERIFY,
    DECISIONS,
)
from orchestrator.store import Store, audit
from orchestrator.store.decisions import (  # noqa: F401 (the read model, read here by the CLI too)
    RESTORE_POINT,
    _aware,
    _iso,
    as_dict,
    cutoff_dict,
    in_force,
    restore_cutoffs,
    said,
    standing,
    standing_cutoffs,
)
from orchestrator.store.models import Host, HostDecision, RestoreDecision, TriageResult, utcnow
from orchestrator.triage.compromise import DEFAULT_MARGIN

MAX_WHY = 500
# What each decision means, for help texts and `status`.
MEANING = {
    DECIDE_REBUILD: "rebuild it (an unreachable host through its out-of-band reimage method)",
    DECIDE_VERIFY: "verify only (a protected host's finding accepted, a clean host nobody could triage)",
    DECIDE_HOLD: "keep it out of the plan (a protected host's finding rejected, a host to look at)",
    DECIDE_RELEASE: "reconnect it without waiting for its held dependencies",
    DECIDE_DONE: "rebuilt by hand: counts as recovered",
}


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
    if compromised_since is not None:
        compromised_since = _aware(compromised_since)
        if compromised_since > utcnow():
            raise OrchestratorError(
                f"--compromised-since {compromised_since.isoformat(timespec='seconds')} lies in the future"
            )
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
        entry = HostDecision(host_name=host, decision=decision, why=text, decided_by=operator)
        session.add(entry)
        session.flush()
        details: dict[str, Any] = {
            "decision": decision, "why": text, "replaces": before.decision if before else None,
            "decision_id": entry.id,
        }  # fmt: skip
        if compromised_since is not None:
            cutoff = RestoreDecision(
                host_name=host,
                before=compromised_since - DEFAULT_MARGIN,
                why=text,
                decided_by=operator,
                compromised_since=compromised_since,
                host_decision_id=entry.id,
            )
            details["restore_point"] = _add_cutoff(session, operator, cutoff)
        audit.record(session, operator, "host decide", args, details, host=host)
    return entry


def _add_cutoff(session: Session, operator: str, cutoff: RestoreDecision) -> dict[str, Any]:
    """Put `cutoff` in force over the host's standing one (withdrawn, replaced); what the audit entry
    says of it, naming what it replaced."""
    replaced = standing_cutoffs(session, [cutoff.host_name]).get(cutoff.host_name)
    if replaced is not None:
        replaced.withdrawn_by, replaced.withdrawn_at = operator, utcnow()
        replaced.withdrawn_why = "replaced by a newer restore-point decision"
        session.add(replaced)
    session.add(cutoff)
    session.flush()
    return {
        "id": cutoff.id,
        "before": _aware(cutoff.before).isoformat(),
        "compromised_since": _aware(cutoff.compromised_since).isoformat()
        if cutoff.compromised_since
        else None,
        "replaces": cutoff_dict(replaced) if replaced is not None else None,
    }


def set_restore_point(
    store: Store,
    operator: str,
    host: str,
    before: datetime | None,
    why: str,
    args: dict[str, Any],
) -> RestoreDecision:
    """`host restore-point`: restore `host` from its newest clean snapshot before `before`; None
    accepts its latest triage estimate as it is (minus the usual margin). Replaces the host's standing
    cutoff, whichever command set it. Raises OrchestratorError (nothing written) when the host or its
    estimate is unknown, or the time is in the future."""
    text = _why(why)
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
            why=text,
            decided_by=operator,
            triage_run_id=result.run_id if result else None,
        )
        said_now = _add_cutoff(session, operator, decision)
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
                "id": said_now["id"],
                "replaces": said_now["replaces"],
            },
            host=host,
        )
    return decision


def withdraw_restore_point(
    store: Store, operator: str, host: str, why: str, args: dict[str, Any]
) -> RestoreDecision:
    """`host restore-point --withdraw`: the host's standing cutoff goes, whichever command set it; its
    own checked compromise time (or a hold for a person) applies again."""
    text = _why(why)
    with store.write() as session:
        row = standing_cutoffs(session, [host]).get(host)
        if row is None:
            raise OrchestratorError(f"host {host} has no standing restore-point decision to withdraw")
        row.withdrawn_by, row.withdrawn_at, row.withdrawn_why = operator, utcnow(), text
        session.add(row)
        audit.record(
            session,
            operator,
            "host restore-point withdraw",
            args,
            {"withdrawn": cutoff_dict(row), "why": text},
            host=host,
        )
    return row


def withdraw(store: Store, operator: str, host: str, why: str, args: dict[str, Any]) -> HostDecision:
    """Withdraw `host`'s standing decision; the rules (or an older decision) apply again."""
    text = _why(why)
    with store.write() as session:
        row = standing(session, [host]).get(host)
        if row is None:
            raise OrchestratorError(f"host {host} has no standing decision to withdraw")
        row.withdrawn_by, row.withdrawn_at, row.withdrawn_why = operator, utcnow(), text
        session.add(row)
        cutoff = standing_cutoffs(session, [host]).get(host)
        came_with = cutoff is not None and cutoff.host_decision_id == row.id
        if cutoff is not None and came_with:
            cutoff.withdrawn_by, cutoff.withdrawn_at, cutoff.withdrawn_why = operator, utcnow(), text
            session.add(cutoff)
        audit.record(
            session,
            operator,
            "host decide withdraw",
            args,
            {"decision": row.decision, "decision_id": row.id, "why": text,
             "restore_point": cutoff_dict(cutoff) if cutoff is not None and came_with else None},
            host=host,
        )  # fmt: skip
    return row


WITHDRAW = "withdraw"


def record(
    store: Store,
    operator: str,
    host: str,
    decision: str,
    why: str,
    args: dict[str, Any],
    compromised_since: datetime | None = None,
) -> dict[str, Any]:
    """`orchestrator host decide`: a decision, or WITHDRAW to withdraw the standing one; what it
    recorded, as listed (with the restore point it set, if any)."""
    if decision == WITHDRAW:
        if compromised_since is not None:
            raise OrchestratorError("--compromised-since goes with --rebuild, not --withdraw")
        said = as_dict(withdraw(store, operator, host, why, args))
        withdrawn = True
    else:
        row = decide(store, operator, host, decision, why, args, compromised_since)
        with store.read() as session:
            cutoff = standing_cutoffs(session, [host]).get(host)
        said_with = cutoff if cutoff is not None and cutoff.host_decision_id == row.id else None
        said = {
            **as_dict(row, said_with),
            **({"restore_before": _iso(said_with.before)} if said_with else {}),
        }
        withdrawn = False
    del said["summary"]  # `host decide --json` keeps its documented keys; lists carry the summary
    return {**said, "withdrawn": withdrawn}


def record_restore_point(
    store: Store,
    operator: str,
    host: str,
    before: datetime | None,
    withdraw_it: bool,
    why: str,
    args: dict[str, Any],
) -> dict[str, Any]:
    """`orchestrator host restore-point`: set (`before`, None to accept the estimate) or withdraw the
    host's restore cutoff; what it recorded, as listed."""
    if withdraw_it:
        return {**cutoff_dict(withdraw_restore_point(store, operator, host, why, args)), "withdrawn": True}
    row = set_restore_point(store, operator, host, before, why, args)
    return {
        **cutoff_dict(row),
        "before": _aware(row.before).isoformat(timespec="seconds"),
        "accepted": row.accepted,
        "decided_by": row.decided_by,
        "withdrawn": False,
    }
