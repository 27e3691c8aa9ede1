"""Plans in the database: the one draft, its approval, and the approved plan execution may run.

A plan is written once and never edited: re-planning supersedes the draft with a new one, approval
supersedes the previously approved plan. Execution loads the approved plan through
`load_approved_plan`, which recomputes the content hash and refuses a plan changed since approval.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, col, select

from orchestrator.errors import OrchestratorError, RefusedError
from orchestrator.inventory import Host as InventoryHost
from orchestrator.planning import compromise, decisions
from orchestrator.planning import durations as durations_lib
from orchestrator.planning.model import Draft, Limits, Verdict
from orchestrator.planning.planner import build
from orchestrator.store import analyze, plans
from orchestrator.store import decisions as decisions_store
from orchestrator.store import hosts as host_store
from orchestrator.store.measured import measured, seconds
from orchestrator.store.models import (
    Host,
    Plan,
    PlanMember,
    PlanWave,
    StageRun,
    TriageResult,
    TriageRun,
    utcnow,
)
from orchestrator.store.plan_content import content_hash
from orchestrator.store.plans import (  # noqa: F401 (read here)
    APPROVED,
    DRAFT,
    SUPERSEDED,
    PlanView,
    approval_mac,
    load_approved_plan,
)


@dataclass
class NewDraft:
    view: PlanView
    draft: Draft
    triage_run: TriageRun
    superseded: list[int] = field(default_factory=list)


def _checked(
    session: Session,
    run: TriageRun,
    hosts: Sequence[InventoryHost],
    verdicts: dict[str, Verdict],
    rules: compromise.TimeRules,
) -> dict[str, Verdict]:
    """The verdicts with each restored host's compromise time checked (see `planning.compromise`)."""
    times = dict(
        session.exec(
            select(TriageResult.host_name, TriageResult.compromise_time).where(TriageResult.run_id == run.id)
        ).all()
    )
    names = [h.name for h in hosts]
    return compromise.annotate(
        hosts, verdicts, times, decisions_store.restore_cutoffs(session, names), {}, utcnow(), rules
    )


def fleet_triages() -> Any:
    """Triage runs of the fleet, which plans are made from (a validate stage's re-check is not one)."""
    return select(TriageRun).where(col(TriageRun.stage).is_(None))


def latest_triage(session: Session) -> tuple[TriageRun, dict[str, Verdict]]:
    """The newest triage run and its verdicts; a plan needs one that finished and found something."""
    run = session.exec(fleet_triages().order_by(col(TriageRun.id).desc()).limit(1)).first()
    if run is None:
        raise OrchestratorError("no triage run in the database: run 'orchestrator triage' first")
    if run.finished_at is None:
        raise OrchestratorError(
            f"triage run {run.id} has not finished: wait for it, or run 'orchestrator triage' again"
        )
    # Columns, not ORM objects: 50,000 TriageResult objects took seconds of every plan.
    results = session.exec(
        select(TriageResult.host_name, TriageResult.verdict, TriageResult.reason)
        .where(TriageResult.run_id == run.id)
        .order_by(col(TriageResult.id))
    )
    verdicts = {name: Verdict(verdict, reason) for name, verdict, reason in results}  # the last row wins
    if not verdicts:
        raise OrchestratorError(f"triage run {run.id} has no verdict for any host: nothing to plan from")
    return run, verdicts


def measured_durations(session: Session) -> dict[tuple[str, str | None], tuple[float, int]]:
    """Median seconds and sample count of each stage's finished, real (not check-mode) runs; the
    reimage and restore stages per method, from the host snapshot."""
    rows = session.exec(
        measured(
            select(
                StageRun.stage,
                StageRun.started_at,
                StageRun.finished_at,
                Host.reimage_method,
                Host.restore_method,
            ).join(Host, col(Host.name) == col(StageRun.host_name), isouter=True)
        )
    )
    samples: dict[tuple[str, str | None], list[float]] = {}
    for stage, started, finished, reimage, restore in rows:
        method = {"reimage": reimage, "restore": restore}.get(stage)
        samples.setdefault((stage, method), []).append(seconds(started, finished))
    return {key: (statistics.median(values), len(values)) for key, values in samples.items()}


def create_draft(
    session: Session,
    hosts: Sequence[InventoryHost],
    limits: Limits,
    durations: durations_lib.Durations,
    *,
    operator: str,
    params: Mapping[str, Any],
    time_rules: compromise.TimeRules | None = None,
) -> NewDraft:
    """Plan from the latest triage, snapshot the hosts, and make the result the only draft."""
    run, verdicts = latest_triage(session)
    rules = time_rules or compromise.TimeRules()
    verdicts = _checked(session, run, hosts, verdicts, rules)
    if not any(h.name in verdicts for h in hosts):
        raise OrchestratorError(
            f"triage run {run.id} has no verdict for any of the {len(hosts)} host(s) to plan"
        )
    durations = durations.with_measured(measured_durations(session))
    people = decisions.for_planner(decisions.standing(session, [h.name for h in hosts]))
    draft = build(hosts, verdicts, limits, durations, people)

    superseded = [p.id for p in session.exec(select(Plan).where(Plan.status == DRAFT)) if p.id is not None]
    for plan_id in superseded:
        old = session.get(Plan, plan_id)
        assert old is not None
        old.status = SUPERSEDED
        session.add(old)
    host_store.sync(session, hosts)
    bounds = draft.bounds
    plan = Plan(
        created_by=operator,
        status=DRAFT,
        triage_run_id=run.id,
        params={
            **params,
            "max_wave_size": limits.max_wave_size,
            "compromise_time_window_s": rules.window.total_seconds(),
            "capacities": dict(limits.capacities),
            "forks": limits.forks,
            "contain_forks": limits.contain_forks,
            "durations_file": durations.file,
            "durations": durations.describe(),
            "external_dependencies": draft.external_dependencies,
            "decisions": {name: {"decision": d, "said": text} for name, (d, text) in sorted(people.items())},
            # Waves overlap: each one's start, in seconds from the start of the run (its end is the
            # start plus its plan_wave.estimated_s), so no schema change for a figure only shown.
            "wave_start_s": [w.start_s for w in draft.waves],
            "bounds": {
                "unordered_s": bounds.unordered_s,
                "unordered_binding": bounds.unordered_binding,
                "containment_s": bounds.containment_s,
                "tiers": [
                    {"tier": t.tier, "chain_s": t.chain_s, "capacity_s": t.capacity_s, "binding": t.binding}
                    for t in bounds.tiers
                ],
            },
        },
        content_hash=content_hash(
            run.id,
            ((w.number, w.tier) for w in draft.waves),
            ((m.host, m.action, m.wave, m.verdict, m.reason) for m in draft.members),
        ),
        estimated_s=draft.estimated_s,
        lower_bound_s=bounds.lower_bound_s,
    )
    session.add(plan)
    session.flush()
    connection = session.connection()
    if draft.waves:
        connection.execute(
            insert(PlanWave),
            [
                {"plan_id": plan.id, "number": w.number, "tier": w.tier, "estimated_s": w.estimated_s}
                for w in draft.waves
            ],
        )
    connection.execute(
        insert(PlanMember),
        [
            {
                "plan_id": plan.id,
                "wave": m.wave,
                "host_name": m.host,
                "action": m.action,
                "reason": m.reason,
                "tier": m.tier,
                "priority": m.priority,
                "verdict": m.verdict,
                "estimated_s": m.estimated_s,
            }
            for m in draft.members
        ],
    )
    analyze.after_bulk_write(session, [PlanMember.__tablename__], len(draft.members))
    return NewDraft(view=plans.view(session, plan), draft=draft, triage_run=run, superseded=superseded)


def current(session: Session, *, approved: bool = False) -> PlanView:
    """The plan being worked on (the draft if there is one, else the approved plan), or the approved one."""
    plan = (
        plans.latest(session, APPROVED)
        if approved
        else (plans.latest(session, DRAFT) or plans.latest(session, APPROVED))
    )
    if plan is None:
        what = "no approved plan" if approved else "no plan yet"
        raise OrchestratorError(f"{what}: run 'orchestrator plan', then 'orchestrator plan approve'")
    return plans.view(session, plan)


def approve(session: Session, by: str, expect_hash: str | None = None) -> tuple[PlanView, int | None]:
    """Approve the draft; return it and the id of the approved plan it supersedes."""
    plan = plans.latest(session, DRAFT)
    if plan is None:
        raise RefusedError("no draft plan to approve: run 'orchestrator plan' first")
    view = plans.view(session, plan)
    digest = view.content_hash()
    if digest != plan.content_hash:
        raise RefusedError(
            f"draft plan {plan.id} was changed after it was made: run 'orchestrator plan' again"
        )
    newest = session.exec(fleet_triages().order_by(col(TriageRun.id).desc()).limit(1)).first()
    if newest is not None and newest.id != plan.triage_run_id:
        then = "once it finishes" if newest.finished_at is None else "again"
        raise RefusedError(
            f"draft plan {plan.id} comes from triage run {plan.triage_run_id}, but run {newest.id} is newer: "
            f"run 'orchestrator plan' {then}"
        )
    if expect_hash and not digest.startswith(expect_hash.lower()):
        raise RefusedError(
            f"draft plan {plan.id} has hash {digest[:12]}, not {expect_hash}: it changed since you reviewed it"
        )
    previous = plans.latest(session, APPROVED)
    if previous is not None:
        previous.status = SUPERSEDED
        session.add(previous)
    plan.status = APPROVED
    plan.approved_by = by
    plan.approved_at = utcnow()
    plan.approved_hash = digest
    plan.approval_mac = plans.approval_mac(session, plan, create=True)
    session.add(plan)
    session.flush()
    return view, previous.id if previous else None


@dataclass
class Change:
    host: str
    before: PlanMember | None
    after: PlanMember | None


@dataclass
class PlanDiff:
    base: Plan
    target: Plan
    added: list[Change]
    removed: list[Change]
    action_changed: list[Change]
    wave_changed: list[Change]
    unchanged: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.action_changed or self.wave_changed)


def diff(session: Session) -> PlanDiff:
    """What the draft would change compared with the approved plan, host by host."""
    approved = plans.latest(session, APPROVED)
    if approved is None:
        raise OrchestratorError("no approved plan to compare with: 'orchestrator plan show' shows the draft")
    draft = plans.latest(session, DRAFT)
    if draft is None:
        raise OrchestratorError("no draft plan: run 'orchestrator plan' (after a new triage) to make one")
    before = {m.host_name: m for m in plans.view(session, approved).members}
    after = {m.host_name: m for m in plans.view(session, draft).members}
    result = PlanDiff(approved, draft, [], [], [], [], 0)
    for host in sorted(before.keys() | after.keys()):
        old, new = before.get(host), after.get(host)
        change = Change(host, old, new)
        if old is None:
            result.added.append(change)
        elif new is None:
            result.removed.append(change)
        elif old.action != new.action:
            result.action_changed.append(change)
        elif old.wave != new.wave:
            result.wave_changed.append(change)
        else:
            result.unchanged += 1
    return result


def host_snapshot(session: Session, view: PlanView) -> dict[str, Host]:
    """The hosts of a plan as last synced (site, OS, methods), for exports."""
    names = {m.host_name for m in view.members}
    return {h.name: h for h in session.exec(select(Host)) if h.name in names}
