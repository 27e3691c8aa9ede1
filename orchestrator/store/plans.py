"""The stored plan as everyone reads it (the engine, the planner, the reports): which plan is meant,
the plan with its waves and members (`PlanView`), and the approved plan execution may run, its approval
checked with the audit key. Making and approving plans is `planning.store`'s job.

Which plan is meant, one home for both questions asked of the plan table:

- `latest(status)`: the newest plan in one status; `plan` and `plan approve` work on the newest draft,
  else the newest approved plan (planning/store.py: `current`).
- `in_force()`: the plan being carried out, which status, reports and host views describe: the newest
  approved plan, else the newest plan of any status (so a fleet with only a draft still shows one).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, select

from orchestrator.errors import RefusedError
from orchestrator.store import audit
from orchestrator.store import decisions as decisions_store
from orchestrator.store.models import Plan, PlanMember, PlanWave
from orchestrator.store.plan_content import content_hash

DRAFT = "draft"
APPROVED = "approved"
SUPERSEDED = "superseded"


def latest(session: Session, status: str) -> Plan | None:
    return session.exec(
        select(Plan).where(Plan.status == status).order_by(col(Plan.id).desc()).limit(1)
    ).first()


def in_force(session: Session) -> Plan | None:
    return (
        latest(session, APPROVED) or session.exec(select(Plan).order_by(col(Plan.id).desc()).limit(1)).first()
    )


@dataclass
class PlanView:
    """A stored plan with its waves and members (members ordered by wave, then priority)."""

    plan: Plan
    waves: list[PlanWave]
    members: list[PlanMember]
    # People's standing decisions about its hosts (`host decide`), as shown with the plan: the next
    # run honours them without re-planning, the next plan builds them in.
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def content_hash(self) -> str:
        return content_hash(
            self.plan.triage_run_id,
            ((w.number, w.tier) for w in self.waves),
            ((m.host_name, m.action, m.wave, m.verdict, m.reason) for m in self.members),
        )

    @property
    def changed_since_approval(self) -> bool:
        return self.plan.approved_hash is not None and self.content_hash() != self.plan.approved_hash

    def wave_members(self) -> dict[int, list[PlanMember]]:
        out: dict[int, list[PlanMember]] = {w.number: [] for w in self.waves}
        for m in self.members:
            if m.wave is not None:
                out[m.wave].append(m)
        return out


def view(session: Session, plan: Plan) -> PlanView:
    waves = list(
        session.exec(select(PlanWave).where(PlanWave.plan_id == plan.id).order_by(col(PlanWave.number)))
    )
    members = list(
        session.exec(select(PlanMember).where(PlanMember.plan_id == plan.id).order_by(col(PlanMember.id)))
    )
    decided = decisions_store.in_force(session, [m.host_name for m in members])
    return PlanView(plan=plan, waves=waves, members=members, decisions=decided)


def load_approved_plan(session: Session) -> PlanView:
    """The plan execution may run: approved, and unchanged since (its content hash recomputed from the
    rows). Raises RefusedError otherwise."""
    plan = latest(session, APPROVED)
    if plan is None:
        raise RefusedError(
            "no approved plan: run 'orchestrator plan', review it, then 'orchestrator plan approve'"
        )
    found = view(session, plan)
    if found.content_hash() != plan.approved_hash:
        raise RefusedError(
            f"plan {plan.id} changed since {plan.approved_by} approved it (content hash mismatch): "
            "run 'orchestrator plan' and approve again"
        )
    if plan.approval_mac is None:
        raise RefusedError(
            f"plan {plan.id} was approved before approvals were keyed (or its approval record was "
            "emptied): run 'orchestrator plan' and approve again"
        )
    if not hmac.compare_digest(plan.approval_mac, approval_mac(session, plan)):
        raise RefusedError(
            f"plan {plan.id}'s approval does not verify with the audit key: its rows or its approval were "
            "changed behind the orchestrator's back (or --audit-key names another key); "
            "run 'orchestrator audit verify', then plan and approve again"
        )
    return found


def approval_mac(session: Session, plan: Plan, create: bool = False) -> str:
    """HMAC with the audit key over who approved which content of which plan: whoever can write the
    database can recompute the plain content hash, not this."""
    key = audit.writing_key(session) if create else audit.session_key(session)
    if key.get() is None:
        raise RefusedError(f"no audit key at {key.path}: cannot check the plan's approval (see --audit-key)")
    message = f"orchestrator plan approval\0{plan.id}\0{plan.approved_by}\0{plan.approved_hash}"
    return key.mac(message.encode())
