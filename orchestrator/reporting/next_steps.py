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

import heapq
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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


class Named(NamedTuple):
    """How many hosts a next step is about, and the first `SHOWN` of them by name: a step names a
    few hosts, never a list as long as the fleet."""

    count: int
    first: tuple[str, ...]


def named(names: Iterable[str]) -> Named:
    ordered = sorted(names)
    return Named(len(ordered), tuple(ordered[:SHOWN]))


def _names(hosts: Named) -> str:
    more = f" and {hosts.count - SHOWN} more" if hosts.count > SHOWN else ""
    return ", ".join(hosts.first) + more


NO_HOST = Named(0, ())
# The (containment status, rebuilt, recovered) groups a next step names: rebuilt hosts not contained
# yet, and hosts requested from the network team that are not recovered.
CONTAIN_GROUPS = [(NOT_YET, True, False), (NOT_YET, True, True)]
NETWORK_GROUPS = [(REQUESTED, False, False), (REQUESTED, True, False)]


@dataclass
class Facts:
    """What `status` says about containment and the next steps, as counts and the first hosts of
    each kind: what the default view reads (by aggregate queries, its cost flat in the fleet's
    size), and what the per-host rows of `summarise` boil down to."""

    contained: int = 0
    requested: int = 0
    not_yet: int = 0
    contain: Named = NO_HOST  # rebuilt hosts not contained yet
    network: Named = NO_HOST  # requested from the network team, not recovered
    held: Named = NO_HOST  # held by the plan, no standing decision, not protected
    flagged: Named = NO_HOST  # protected, with a finding nobody decided about
    failed: Named = NO_HOST
    awaiting: dict[str, str | None] = field(default_factory=dict)  # awaiting host -> its state reason


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


def assess(session: Session, plan: Plan | None, per_host: bool = True) -> dict[str, Any]:
    """Containment, standing decisions and the next steps for `plan`'s hosts; with `per_host`,
    where each host needing containment stands (the report, `status --containment`), else counts
    and the first few hosts of each kind only (`status`: its cost flat in the fleet's size)."""
    from sqlmodel import col, select

    from orchestrator.store import containment
    from orchestrator.store import decisions as decisions_lib
    from orchestrator.store.models import Host, PlanMember

    if plan is None:
        return nothing(per_host)
    in_plan = select(PlanMember.host_name).where(PlanMember.plan_id == plan.id)
    decisions = decisions_lib.in_force(session, in_plan)  # type: ignore[arg-type]
    files = _request_files(session, plan.id)
    if not per_host:
        return view(_facts(session, plan.id or 0), decisions, files)
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
            select(Host.name, Host.protected, Host.state, Host.state_reason)
            .join(PlanMember, col(PlanMember.host_name) == col(Host.name))
            .where(PlanMember.plan_id == plan.id)
        )
    }
    targets = containment_targets(members, hosts)
    return summarise(
        members,
        hosts,
        containment.summary(session, targets),
        _found_at(session, plan.triage_run_id, targets),
        decisions,
        set(decisions_lib.standing(session, in_plan)),  # type: ignore[arg-type]
        files,
    )


def _facts(session: Session, plan_id: int) -> Facts:
    """`Facts` by aggregate queries, through SQLAlchemy (`sqlite_read._facts` sends the same to a
    SQLite file): the database counts, and hands back at most `SHOWN` names of each kind."""
    from sqlalchemy import case, exists, func, not_, or_, select  # rows, not sqlmodel's scalars
    from sqlmodel import col

    from orchestrator.store.containment import ISOLATE
    from orchestrator.store.models import ContainmentRequest, Host, HostDecision, PlanMember, StageRun

    name = col(PlanMember.host_name)
    isolated = select(StageRun.host_name).where(
        StageRun.stage == ISOLATE, StageRun.status == "ok", col(StageRun.check_mode).is_(False)
    )
    status = case(
        (name.in_(isolated), CONTAINED),
        (name.in_(select(ContainmentRequest.host_name)), REQUESTED),
        else_=NOT_YET,
    )
    rebuild, protected = col(PlanMember.action) == REBUILD, col(Host.protected).is_(True)
    of_plan = (
        select(name.label("name")).join(Host, col(Host.name) == name).where(PlanMember.plan_id == plan_id)
    )
    targets = (
        of_plan.add_columns(
            status.label("status"),
            rebuild.label("rebuild"),
            (col(Host.state) == RECOVERED).label("recovered"),
        )
        .where(not_(protected), or_(rebuild, col(PlanMember.verdict).in_((*TO_CONTAIN, *UNKNOWN))))
        .subquery()
    )
    by = (targets.c.status, targets.c.rebuild, targets.c.recovered)
    ranked = select(
        *by,
        targets.c.name,
        func.count().over(partition_by=by).label("n"),
        func.row_number().over(partition_by=by, order_by=targets.c.name).label("rank"),
    ).subquery()
    groups: dict[tuple[str, bool, bool], tuple[int, list[str]]] = {}
    for state, rebuild_, recovered_, host, n in session.execute(
        select(*ranked.c[:5]).where(ranked.c.rank <= SHOWN)
    ):
        groups.setdefault((state, bool(rebuild_), bool(recovered_)), (n, []))[1].append(host)

    def first(query: Any) -> list[tuple[str, int]]:
        counted = query.add_columns(func.count().over()).order_by("name").limit(SHOWN)
        return list(session.execute(counted).all())

    undecided = not_(
        exists().where(col(HostDecision.host_name) == name, col(HostDecision.withdrawn_at).is_(None))
    )
    awaiting = of_plan.add_columns(Host.state_reason).where(Host.state == AWAITING)
    return facts_from(
        [(*key, n, names) for key, (n, names) in groups.items()],
        held=first(of_plan.where(PlanMember.action == HOLD, not_(protected), undecided)),
        flagged=first(
            of_plan.where(
                protected,
                or_(col(PlanMember.verdict).in_(TO_CONTAIN), PlanMember.action == HOLD),
                undecided,
            )
        ),
        failed=first(of_plan.where(Host.state == FAILED)),
        awaiting=dict(session.execute(awaiting).all()),  # type: ignore[arg-type]
    )


def facts_from(
    groups: Iterable[tuple[str, bool, bool, int, list[str]]],
    held: list[tuple[str, int]],
    flagged: list[tuple[str, int]],
    failed: list[tuple[str, int]],
    awaiting: dict[str, str | None],
) -> Facts:
    """`Facts` from the aggregate queries' rows: `groups` are the hosts needing containment by
    (status, rebuild, recovered), with how many and at least the first `SHOWN` names of the groups
    a step names; `held`, `flagged`, `failed` are (name, how many in all), the first `SHOWN` by name."""
    sizes = {(status, bool(r), bool(rec)): (n, names) for status, r, rec, n, names in groups}

    def merged(keys: list[tuple[str, bool, bool]]) -> Named:
        found = heapq.nsmallest(SHOWN, (n for k in keys for n in sizes.get(k, (0, []))[1]))
        return Named(sum(sizes.get(k, (0, []))[0] for k in keys), tuple(found))

    def total(status: str) -> int:
        return sum(n for (s, _, _), (n, _) in sizes.items() if s == status)

    def listed(rows: list[tuple[str, int]]) -> Named:
        return Named(rows[0][1] if rows else 0, tuple(r[0] for r in rows))

    return Facts(
        contained=total(CONTAINED),
        requested=total(REQUESTED),
        not_yet=total(NOT_YET),
        contain=merged(CONTAIN_GROUPS),
        network=merged(NETWORK_GROUPS),
        held=listed(held),
        flagged=listed(flagged),
        failed=listed(failed),
        awaiting=awaiting,
    )


def nothing(per_host: bool = True) -> dict[str, Any]:
    """`assess` without a plan."""
    return view(Facts(), [], [], {} if per_host else None)


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
    from per-host rows (`assess` with `per_host`, or `sqlite_read`). `where` covers
    `containment_targets`; `found` is when the plan's triage found each of them; `decided`: the
    hosts with a standing decision. The steps are those `facts_from` gives from aggregates."""
    per_host = {}
    for name in containment_targets(members, hosts):
        c = where[name]
        since = found.get(name)
        per_host[name] = {
            "status": c.status,
            "at": iso(c.at),
            "time_to_containment_s": round((c.at - since).total_seconds(), 1) if c.at and since else None,
        }
    status = {n: c["status"] for n, c in per_host.items()}
    facts = Facts(
        contained=sum(s == CONTAINED for s in status.values()),
        requested=sum(s == REQUESTED for s in status.values()),
        not_yet=sum(s == NOT_YET for s in status.values()),
        contain=named(n for n, s in status.items() if s == NOT_YET and members[n].action == REBUILD),
        network=named(n for n, s in status.items() if s == REQUESTED and hosts[n].state != RECOVERED),
        held=named(
            n
            for n, m in members.items()
            if m.action == HOLD and n not in decided and n in hosts and not hosts[n].protected
        ),
        flagged=named(
            n
            for n, m in members.items()
            if n in hosts
            and hosts[n].protected
            and (m.verdict in TO_CONTAIN or m.action == HOLD)
            and n not in decided
        ),
        failed=named(n for n, h in hosts.items() if h.state == FAILED),
        awaiting={n: h.state_reason for n, h in hosts.items() if h.state == AWAITING},
    )
    return view(facts, decisions, files, per_host)


def view(
    facts: Facts,
    decisions: list[dict[str, Any]],
    files: list[str],
    per_host: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The `containment`, `decisions` and `next_steps` keys of `status` and the report; the
    containment's `hosts` only when `per_host` is given."""
    counts = {
        "needed": facts.contained + facts.requested + facts.not_yet,
        "contained": facts.contained,
        "requested": facts.requested,
        "not_yet": facts.not_yet,
    }
    return {
        "containment": counts if per_host is None else {**counts, "hosts": per_host},
        "decisions": decisions,
        "next_steps": _steps(facts, files),
    }


def _found_at(session: Session, run_id: int | None, hosts: list[str]) -> dict[str, datetime]:
    from sqlmodel import select

    from orchestrator.store.models import TriageResult

    if run_id is None:
        return {}
    wanted = set(hosts)
    rows = session.exec(
        select(TriageResult.host_name, TriageResult.created_at).where(TriageResult.run_id == run_id)
    )
    return {name: aware(at) for name, at in rows if name in wanted}


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


def _steps(facts: Facts, files: list[str]) -> list[str]:
    steps: list[str] = []
    if facts.contain.count:
        steps.append(
            f"Contain {facts.contain.count} host(s) still connected ({_names(facts.contain)}): orchestrator contain"
        )
    if facts.network.count:
        where = f" (list: {files[0]}, nftables: {files[1]})" if len(files) > 1 else ""
        steps.append(
            f"Network team: isolate {facts.network.count} host(s) nobody could reach ({_names(facts.network)}) "
            f"at their switch port or firewall{where}"
        )
    if facts.held.count:
        steps.append(
            f"Decide about {facts.held.count} host(s) on hold ({_names(facts.held)}): orchestrator host decide "
            "HOST --rebuild (out of band) | --verify | --done | --hold --why TEXT"
        )
    if facts.flagged.count:
        steps.append(
            f"Accept or reject the finding on protected host(s) {_names(facts.flagged)}: orchestrator host "
            "decide HOST --verify | --hold --why TEXT"
        )
    waiting: dict[str, list[str]] = defaultdict(list)
    for name in facts.awaiting:
        waiting[_root(name, facts.awaiting)].append(name)
    # One step per host they wait for, the first few of them: the rest in one line.
    groups = sorted(waiting.items())
    for dep, names in groups[:SHOWN]:
        steps.append(
            f"{len(names)} host(s) rebuilt and validated wait, isolated, for {dep} ({_names(named(names))}): "
            f"bring {dep} back, or release them with orchestrator host decide HOST --release --why TEXT"
        )
    if len(groups) > SHOWN:
        rest = groups[SHOWN:]
        steps.append(
            f"{sum(len(n) for _, n in rest)} more host(s) wait, isolated, for {len(rest)} other host(s): "
            "orchestrator status --state awaiting"
        )
    if facts.failed.count:
        steps.append(
            f"Look at {facts.failed.count} failed host(s) ({_names(facts.failed)}): orchestrator status HOST, "
            "fix, then orchestrator run again (or orchestrator host reset HOST --to STAGE)"
        )
    return steps


def _first_dependency(reason: str | None) -> str:
    """The first host named in an "awaiting dependencies: a (on hold), b (...)" reason."""
    text = (reason or "").partition(":")[2].strip()
    return text.split(" ", 1)[0].rstrip(",") or "their dependencies"


def _root(name: str, awaiting: Mapping[str, str | None]) -> str:
    """The host at the end of a chain of awaiting hosts: the one a person can act on."""
    seen = {name}
    dep = _first_dependency(awaiting[name])
    while dep in awaiting and dep not in seen:
        seen.add(dep)
        dep = _first_dependency(awaiting[dep])
    return dep
