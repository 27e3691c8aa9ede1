"""What to do with each host, from its verdict: the rules a crisis cell can read back.

Infected or suspicious hosts are rebuilt, never cleaned (tier 0 included: the trust core is
reinstalled). Clean hosts are verified. Hosts nobody could triage wait for a person, and so does every
host that needs them. Protected hosts (backups, evidence store) are never wiped whatever their verdict:
they take the verify path in their wave (whose re-scan stops a dirty one before it reconnects), and a
found infection there is a decision for a person, flagged as such, that the hosts depending on it
wait for. A host restored from backups whose compromise time cannot be trusted on its own waits for a
person too (see `compromise`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.inventory import Host
from orchestrator.planning.model import (
    CLEAN,
    ERROR,
    HOLD,
    INFECTED,
    PROTECTED,
    REBUILD,
    SCHEDULED,
    SUSPICIOUS,
    UNREACHABLE,
    VERIFY,
    Verdict,
)


@dataclass
class Decision:
    action: str
    reason: str
    verdict: str | None
    # For a host on hold, or protected and not clean: why a dependant cannot go ahead.
    blocks: str | None = None


def _detail(verdict: Verdict | None) -> str:
    return f" ({verdict.reason})" if verdict and verdict.reason else ""


def _own(host: Host, verdict: Verdict | None) -> Decision:
    name = verdict.verdict if verdict else None
    detail = _detail(verdict)
    if host.protected:
        if name == CLEAN:
            return Decision(PROTECTED, f"protected, never wiped: clean{detail}; verified only", name)
        if name in (INFECTED, SUSPICIOUS):
            return Decision(
                PROTECTED,
                f"PROTECTED HOST FOUND {name.upper()}{detail}: never wiped, verified only; a person must decide",
                name,
                blocks=f"protected, {name}",
            )
        status = name or "not triaged"
        return Decision(
            HOLD,
            f"protected, never wiped: {status}{detail}; a person must check it",
            name,
            blocks=f"protected, {status}",
        )
    if name in (INFECTED, SUSPICIOUS):
        assert verdict is not None
        if verdict.time_hold:
            return Decision(HOLD, f"{name}{detail}; {verdict.time_hold}", name, blocks="compromise time")
        core = "; tier 0: rebuilt, never cleaned" if host.tier == 0 else ""
        note = f"; {verdict.time_note}" if verdict.time_note else ""
        return Decision(REBUILD, f"{name}{detail}{core}{note}", name)
    if name == CLEAN:
        return Decision(VERIFY, f"clean{detail}", name)
    if name == UNREACHABLE:
        return Decision(HOLD, f"unreachable{detail}: a person must check it", name, blocks="unreachable")
    if name == ERROR:
        return Decision(HOLD, f"triage failed{detail}: a person must check it", name, blocks="triage failed")
    if name is None:
        return Decision(HOLD, "no verdict in the triage run: triage it first", None, blocks="not triaged")
    return Decision(
        HOLD, f"unknown verdict {name!r}: a person must check it", name, blocks=f"verdict {name!r}"
    )


def decide(
    order: Sequence[str],
    hosts: Mapping[str, Host],
    deps: Mapping[str, Sequence[str]],
    verdicts: Mapping[str, Verdict],
) -> dict[str, Decision]:
    """Each host's action and reason. `order` lists dependencies before their dependants, so a hold
    spreads down a whole chain in one pass, naming the host at its root."""
    decisions: dict[str, Decision] = {}
    root_of: dict[str, str] = {}
    for name in order:
        decision = _own(hosts[name], verdicts.get(name))
        if decision.blocks:
            root_of[name] = name
        if decision.action in SCHEDULED:
            blocking = sorted(d for d in deps[name] if d in root_of)
            if blocking:
                via = blocking[0]
                root = root_of[via]
                path = f" via {via}" if via != root else ""
                own = decision.verdict or "not triaged"
                if decision.action == PROTECTED:
                    own = f"protected, {own}"
                decision = Decision(
                    HOLD,
                    f"{own}; waits for {root} ({decisions[root].blocks}){path}",
                    decision.verdict,
                )
                root_of[name] = root
        decisions[name] = decision
    return decisions
