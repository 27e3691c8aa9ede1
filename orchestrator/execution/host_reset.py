"""`host reset`: an operator's explicit decision to run a stage again for one host, the only way
backwards through its path (e.g. back to wipe after restore began). Not part of a run: the state
machine (`states.reset`) says which resets are allowed, this records one, audited, in one transaction."""

from __future__ import annotations

from typing import Any

from orchestrator.errors import RefusedError
from orchestrator.execution import states
from orchestrator.lifecycle import EXECUTABLE_ACTIONS
from orchestrator.store import Store, audit
from orchestrator.store import hosts as host_store
from orchestrator.store.plans import load_approved_plan


def reset_host(
    store: Store, operator: str, host: str, to_stage: str, args: dict[str, Any]
) -> tuple[str, str]:
    """Run `to_stage` next for `host`. Audited with the state it left. Returns (old, new) state."""
    with store.write() as session:
        view = load_approved_plan(session)
        member = next((m for m in view.members if m.host_name == host), None)
        if member is None or member.action not in EXECUTABLE_ACTIONS:
            raise RefusedError(f"host {host} is not rebuilt or verified by the approved plan {view.plan.id}")
        row = host_store.locked(session, [host]).get(host)
        if row is None:
            raise RefusedError(f"no host {host} in the database")
        path = states.path_for(member.action, row.protected)
        before = (row.state, row.stage)
        began_restore = states.restore_begun(row, path)
        new = states.reset(row, to_stage, path)
        session.add(row)
        audit.record(
            session,
            operator,
            "host reset",
            args,
            {"from_state": before[0], "from_stage": before[1], "to_state": new, "to_stage": to_stage,
             "after_restore_began": began_restore, "plan": view.plan.id},
            host=host,
        )  # fmt: skip
    return before[0], new
