"""Containment per host and what a person must do next, for `status` and the report.

Containment is counted over the hosts that need it: those the plan rebuilds (infected, suspicious,
or decided) and those nobody could triage (unreachable, error), protected hosts excepted (they are
never isolated by the plan: their finding is a person's call). Each is contained (its isolate stage
finished), requested (the network team was asked), or not yet. Time to containment runs from the
triage that found the host to its isolation or request.

The next steps are short sentences, most urgent first, each naming up to a few hosts and the command
that acts on them; the full lists are in `--json`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from orchestrator.lifecycle import (
    AWAITING,
    CONTAINED,
    FAILED,
    HOLD,
    NOT_YET,
    REBUILD,
    RECOVERED,
    REQUESTED,
    TO_CONTAIN,
    UNKNOWN,
)
from orchestrator.timefmt import iso

if TYPE_CHECKING:  # the pure part below also serves `sqlite_read`, which must not import SQLAlchemy
    from sqlmodel import Session

    from orchestrator.store.models import Plan

SHOWN = 5


def _names(hosts: list[str]) -> str:
    more = f" and {len(hosts) - SHOWN} more" if len(hosts) > SHOWN else ""
    return ", ".join(hosts[:SHOWN]) + more


class Member(Protocol):
    """What the next steps read of a plan member (a `PlanMember` row or `sqlite_read`'s own)."""

    action: str
    verdict: str


class HostFacts(Protocol):
    """What the next steps read of a host."""

    protected: bool
    state: str
    state_reason: str | None


class Contained(Protocol):
    """Where a host stands on containment (`containment.HostContainment`)."""

    status: str
    at: datetime | None


class MemberRow(NamedTuple):
    action: str
    verdict: str


class HostRow(NamedTuple):
    protected: bool
    state: str
    state_reason: str | None


def needs_containment(member: Member, protected: bool) -> bool:
    if protected:
        return False
    return member.action == REBUILD or member.verdict in (*TO_CONTAIN, *UNKNOWN)


def assess(session: Session, plan: Plan | None) -> dict[str, Any]:
    """Containment per host, standing decisions and the next steps for `plan`'s hosts."""
    from sqlmodel import col, select

    from orchestrator.store import containment
    from orchestrator.store import decisions as decisions_lib
    from orchestrator.store.models import Host, PlanMember

    if plan is None:
        return nothing()
    # Columns, not ORM objects: at 50,000 hosts loading every member and host as objects took most
    # of `status` on PostgreSQL (6.5 s of CPU).
    members = {
        name: MemberRow(action, verdict)
        for name, action, verdict in session.exec(
            select(PlanMember.host_name, PlanMember.action, PlanMember.verdict).where(
                PlanMember.plan_id == plan.id
            )
        )
    }
    hosts = {
        name: HostRow(protected, state, reason)
        for name, protected, state, reason in session.exec(
            select(Host.name, Host.protected, Host.state, Host.state_reason).where(
                col(Host.name).in_(list(members))
            )
        )
    }
    targets = containment_targets(members, hosts)
    return summarise(
        members,
        hosts,
        containment.summary(session, targets),
        _found_at(session, plan.triage_run_id, targets),
        decisions_lib.in_force(session, list(members)),
        set(decisions_lib.standing(session, list(members))),
        _request_files(session, plan.id),
    )


def nothing() -> dict[str, Any]:
    """`assess` without a plan."""
    return {"containment": _counts({}), "decisions": [], "next_steps": []}


def containment_targets(members: Mapping[str, Member], hosts: Mapping[str, HostFacts]) -> list[str]:
    """The plan's hosts that need containment, by name."""
    return sorted(n for n, m in members.items() if n in hosts and needs_containment(m, hosts[n].protected))


def summarise(
    members: Mapping[str, Member],
    hosts: Mapping[str, HostFacts],
    where: Mapping[str, Contained],
    found: Mapping[str, datetime],
    decisions: list[dict[str, Any]],
    decided: set[str],
    files: list[str],
) -> dict[str, Any]:
    """Containment per host, the `decisions` in force (`decisions.in_force`) and the next steps,
    from the rows `assess` (or `sqlite_read`) read. `where` covers `containment_targets`; `found` is
    when the plan's triage found each of them; `decided`: the hosts with a standing decision."""
    targets = containment_targets(members, hosts)
    per_host = {}
    for name in targets:
        c = where[name]
        since = found.get(name)
        per_host[name] = {
            "status": c.status,
            "at": iso(c.at),
            "time_to_containment_s": round((c.at - since).total_seconds(), 1) if c.at and since else None,
        }
    return {
        "containment": _counts(per_host),
        "decisions": decisions,
        "next_steps": _steps(members, hosts, per_host, decided, files),
    }


def _found_at(session: Session, run_id: int | None, hosts: list[str]) -> dict[str, datetime]:
    from sqlmodel import col, select

    from orchestrator.store.models import TriageResult

    if run_id is None:
        return {}
    rows = session.exec(
        select(TriageResult.host_name, TriageResult.created_at).where(
            TriageResult.run_id == run_id, col(TriageResult.host_name).in_(hosts)
        )
    )
    return {name: aware(at) for name, at in rows}


def aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _request_files(session: Session, plan_id: int | None) -> list[str]:
    from sqlmodel import col, select

    from orchestrator.store.models import ContainmentRequest

    row = session.exec(
        select(ContainmentRequest)
        .where(ContainmentRequest.plan_id == plan_id)
        .order_by(col(ContainmentRequest.id).desc())
    ).first()
    return list(row.files) if row else []


def _counts(per_host: dict[str, dict[str, Any]]) -> dict[str, Any]:
    counts = dict.fromkeys((CONTAINED, REQUESTED, NOT_YET), 0)
    for entry in per_host.values():
        counts[entry["status"]] += 1
    return {
        "needed": len(per_host),
        "contained": counts[CONTAINED],
        "requested": counts[REQUESTED],
        "not_yet": counts[NOT_YET],
        "hosts": per_host,
    }


def _steps(
    members: Mapping[str, Member],
    hosts: Mapping[str, HostFacts],
    per_host: dict[str, dict[str, Any]],
    standing: set[str],
    files: list[str],
) -> list[str]:
    steps: list[str] = []
    not_yet = sorted(
        n for n, c in per_host.items() if c["status"] == NOT_YET and members[n].action == REBUILD
    )
    if not_yet:
        steps.append(
            f"Contain {len(not_yet)} host(s) still connected ({_names(not_yet)}): orchestrator contain"
        )
    requested = sorted(
        n for n, c in per_host.items() if c["status"] == REQUESTED and hosts[n].state != RECOVERED
    )
    if requested:
        where = f" (list: {files[0]}, nftables: {files[1]})" if len(files) > 1 else ""
        steps.append(
            f"Network team: isolate {len(requested)} host(s) nobody could reach ({_names(requested)}) at their "
            f"switch port or firewall{where}"
        )
    held = sorted(
        n
        for n, m in members.items()
        if m.action == HOLD and n not in standing and n in hosts and not hosts[n].protected
    )
    if held:
        steps.append(
            f"Decide about {len(held)} host(s) on hold ({_names(held)}): orchestrator host decide HOST "
            "--rebuild (out of band) | --verify | --done | --hold --why TEXT"
        )
    flagged = sorted(
        n
        for n, m in members.items()
        if n in hosts
        and hosts[n].protected
        and (m.verdict in TO_CONTAIN or m.action == HOLD)
        and n not in standing
    )
    if flagged:
        steps.append(
            f"Accept or reject the finding on protected host(s) {_names(flagged)}: orchestrator host decide "
            "HOST --verify | --hold --why TEXT"
        )
    waiting: dict[str, list[str]] = defaultdict(list)
    for name, host in hosts.items():
        if host.state == AWAITING:
            waiting[_root(name, hosts)].append(name)
    for dep, names in sorted(waiting.items()):
        steps.append(
            f"{len(names)} host(s) rebuilt and validated wait, isolated, for {dep} ({_names(sorted(names))}): "
            f"bring {dep} back, or release them with orchestrator host decide HOST --release --why TEXT"
        )
    failed = sorted(n for n, h in hosts.items() if h.state == FAILED)
    if failed:
        steps.append(
            f"Look at {len(failed)} failed host(s) ({_names(failed)}): orchestrator status HOST, fix, "
            "then orchestrator run again (or orchestrator host reset HOST --to STAGE)"
        )
    return steps


def _first_dependency(reason: str | None) -> str:
    """The first host named in an "awaiting dependencies: a (on hold), b (...)" reason."""
    text = (reason or "").partition(":")[2].strip()
    return text.split(" ", 1)[0].rstrip(",") or "their dependencies"


def _root(name: str, hosts: Mapping[str, HostFacts]) -> str:
    """The host at the end of a chain of awaiting hosts: the one a person can act on."""
    seen = {name}
    dep = _first_dependency(hosts[name].state_reason)
    while dep in hosts and hosts[dep].state == AWAITING and dep not in seen:
        seen.add(dep)
        dep = _first_dependency(hosts[dep].state_reason)
    return dep
