"""Dependencies gate reconnection, never the rebuild: which validated hosts must stay isolated
because something they depend on is not recovered yet."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlmodel import col, select

from orchestrator import inventory as inventory_lib
from orchestrator.lifecycle import DECIDE_DONE, DECIDE_RELEASE, RECOVERED
from orchestrator.store import Store
from orchestrator.store.models import Host, HostDecision, PlanMember


def waiting(
    store: Store,
    hosts: Sequence[str],
    plan: Mapping[str, PlanMember],
    inventory: inventory_lib.Inventory,
    decisions: Mapping[str, HostDecision],
    running: set[str],
) -> dict[str, str]:
    """Hosts that may not reconnect yet, and why: something they depend on (any host of the plan,
    held ones included) is not recovered, and no person released them or recorded it rebuilt by
    hand. Hosts outside the plan are someone else's business (as for the planner); `running` are the
    hosts this run works on (the others of the plan are on hold)."""
    deps = {h: [d for d in inventory.hosts[h].depends_on_hosts if d in plan] for h in hosts}
    needed = sorted({d for ds in deps.values() for d in ds})
    with store.read() as session:
        dep_states = {h.name: h.state for h in session.exec(select(Host).where(col(Host.name).in_(needed)))}
    out: dict[str, str] = {}
    for host, ds in deps.items():
        decided = decisions.get(host)
        if decided is not None and decided.decision == DECIDE_RELEASE:
            continue
        pending = [
            d
            for d in ds
            if dep_states.get(d) != RECOVERED
            and not (d in decisions and decisions[d].decision == DECIDE_DONE)
        ]
        if pending:
            why = []
            for d in pending[:5]:
                held = d not in running
                state = dep_states.get(d) or "new"
                why.append(f"{d} ({'on hold: ' + (plan[d].verdict or 'not triaged') if held else state})")
            more = f" and {len(pending) - 5} more" if len(pending) > 5 else ""
            out[host] = f"awaiting dependencies: {', '.join(why)}{more}"
    return out
