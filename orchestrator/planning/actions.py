"""What to do with each host, from its verdict: the rules a crisis cell can read back.

Infected or suspicious hosts are rebuilt, never cleaned (tier 0 included: the trust core is
reinstalled). Clean hosts are verified. Hosts nobody could triage wait for a person. Protected hosts
(backups, evidence store) are never wiped whatever their verdict: they take the verify path in their
wave (whose re-scan stops a dirty one before it reconnects), and a found infection there is a decision
for a person, flagged as such. A host restored from backups whose compromise time cannot be trusted
on its own waits for a person too (see `compromise`).

A host whose dependency is held is still rebuilt or verified: a dependency gates when a host may
reconnect (the engine keeps it isolated, "awaiting dependencies"), never its containment or rebuild.
Its reason names the held host at the root of the chain.

A person's standing decision (`orchestrator host decide`) replaces the rule for that host, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.inventory import Host
from orchestrator.lifecycle import (
    CLEAN,
    DECIDE_DONE,
    DECIDE_HOLD,
    DECIDE_REBUILD,
    DECIDE_VERIFY,
    ERROR,
    HOLD,
    INFECTED,
    PROTECTED,
    REBUILD,
    SCHEDULED,
    SUSPICIOUS,
    UNREACHABLE,
    VERIFY,
)
from orchestrator.planning.model import Verdict


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


def _person(host: Host, own: Decision, decision: str, said: str) -> Decision:
    """A person's decision (`said`: "by WHO: WHY") over the rule's `own` decision."""
    if decision == DECIDE_REBUILD and not host.protected:
        return Decision(REBUILD, f"{own.verdict or 'not triaged'}; rebuild decided {said}", own.verdict)
    if decision == DECIDE_VERIFY:
        action = PROTECTED if host.protected else VERIFY
        return Decision(action, f"{own.verdict or 'not triaged'}; verify decided {said}", own.verdict)
    if decision == DECIDE_HOLD:
        return Decision(HOLD, f"{own.verdict or 'not triaged'}; held {said}", own.verdict, blocks="held")
    if decision == DECIDE_DONE:
        return Decision(HOLD, f"{own.verdict or 'not triaged'}; rebuilt by hand {said}", own.verdict)
    return own  # release: a matter for reconnection only (the engine), or a rebuild of a protected host


def decide(
    order: Sequence[str],
    hosts: Mapping[str, Host],
    deps: Mapping[str, Sequence[str]],
    verdicts: Mapping[str, Verdict],
    decisions_by_people: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, Decision]:
    """Each host's action and reason. `order` lists dependencies before their dependants, so the held
    host at the root of a chain is named in one pass. `decisions_by_people`: host -> (decision,
    "by WHO: WHY")."""
    people = decisions_by_people or {}
    decisions: dict[str, Decision] = {}
    root_of: dict[str, str] = {}
    for name in order:
        decision = _own(hosts[name], verdicts.get(name))
        if name in people:
            decision = _person(hosts[name], decision, *people[name])
            time_note = verdicts[name].time_note if name in verdicts else None
            if decision.action == REBUILD and time_note and time_note not in decision.reason:
                decision.reason = f"{decision.reason}; {time_note}"
        if decision.blocks:
            root_of[name] = name
        blocking = sorted(d for d in deps[name] if d in root_of)
        if blocking and decision.action in SCHEDULED:
            via = blocking[0]
            root = root_of[via]
            path = f" via {via}" if via != root else ""
            released = people.get(name, ("", ""))[0] == "release"
            wait = "released from" if released else "reconnects after"
            decision = Decision(
                decision.action,
                f"{decision.reason}; {wait} {root} ({decisions[root].blocks}){path}",
                decision.verdict,
                decision.blocks,
            )
            if not released:
                root_of.setdefault(name, root)
        decisions[name] = decision
    return decisions
