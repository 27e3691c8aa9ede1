"""Which plan is meant, one home for both questions asked of the plan table:

- `latest(status)`: the newest plan in one status; `plan` and `plan approve` work on the newest draft,
  else the newest approved plan (planning/store.py: `current`).
- `in_force()`: the plan being carried out, which status, reports and host views describe: the newest
  approved plan, else the newest plan of any status (so a fleet with only a draft still shows one).
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from orchestrator.store.models import Plan


def latest(session: Session, status: str) -> Plan | None:
    return session.exec(
        select(Plan).where(Plan.status == status).order_by(col(Plan.id).desc()).limit(1)
    ).first()


def in_force(session: Session) -> Plan | None:
    return (
        latest(session, "approved")
        or session.exec(select(Plan).order_by(col(Plan.id).desc()).limit(1)).first()
    )
