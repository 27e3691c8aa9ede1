"""Verdicts and hosts in, a draft plan out: pure, deterministic, no database and no Click."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence

from orchestrator.errors import OrchestratorError
from orchestrator.inventory import Host, find_cycles
from orchestrator.lifecycle import SCHEDULED
from orchestrator.planning import actions, bounds, capacity, waves
from orchestrator.planning.durations import Durations
from orchestrator.planning.model import Draft, Limits, Member, Verdict


def dependency_order(deps: Mapping[str, Sequence[str]]) -> list[str]:
    """Every host after the hosts it depends on; a cycle is refused with its path. Which of the
    valid orders this is changes nothing downstream: every choice there is made by an explicit key."""
    try:
        return list(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError:
        cycle = find_cycles(dict(deps), limit=1)[0]
        raise OrchestratorError(f"dependency cycle: {' -> '.join(cycle)}") from None


def build(
    hosts: Sequence[Host],
    verdicts: Mapping[str, Verdict],
    limits: Limits,
    durations: Durations,
    decisions: Mapping[str, tuple[str, str]] | None = None,
) -> Draft:
    """The draft plan for `hosts`. Dependencies on hosts outside `hosts` (a `--limit` that leaves
    them out) are taken as someone else's business; `external_dependencies` counts those hosts.
    `decisions`: people's standing decisions, host -> (decision, "by WHO: WHY")."""
    by_name = {h.name: h for h in hosts}
    deps = {n: [d for d in h.depends_on_hosts if d in by_name] for n, h in by_name.items()}
    external = len({d for h in hosts for d in h.depends_on_hosts if d not in by_name})
    order = dependency_order(deps)
    decisions = actions.decide(order, by_name, deps, verdicts, decisions)

    scheduled = [n for n in order if decisions[n].action in SCHEDULED]
    in_plan = set(scheduled)
    sched_deps = {n: tuple(d for d in deps[n] if d in in_plan) for n in scheduled}
    resource_limits = dict(limits.capacities)
    if limits.max_wave_size is not None:
        resource_limits[capacity.WAVE_SIZE] = limits.max_wave_size

    jobs: dict[str, waves.Job] = {}
    stages_cache: dict[tuple[str, str | None, str | None], tuple[tuple[str, float], ...]] = {}
    for name in scheduled:
        host = by_name[name]
        action = decisions[name].action
        key = (action, host.reimage_method, host.restore_method)
        if key not in stages_cache:
            stages_cache[key] = durations.path_seconds(*key)
        used = capacity.resources(action, host.tier, host.site, host.reimage_method, host.restore_method)
        jobs[name] = waves.Job(
            name=name,
            tier=host.tier,
            priority=host.priority,
            stages=stages_cache[key],
            resources=tuple(r for r in used if r in resource_limits),
            deps=sched_deps[name],
        )
    packed = waves.schedule(scheduled, jobs, limits.max_wave_size)
    run = waves.timeline(packed, jobs, limits.forks, limits.contain_forks, resource_limits)
    plan_waves = run.waves

    members: list[Member] = []
    for wave in plan_waves:
        for name in wave.hosts:
            host, decision, job = by_name[name], decisions[name], jobs[name]
            reason = decision.reason
            members.append(
                Member(
                    name,
                    decision.action,
                    wave.number,
                    host.tier,
                    host.priority,
                    decision.verdict,
                    reason,
                    job.seconds,
                )
            )
    for name in sorted(n for n in by_name if n not in in_plan):
        host, decision = by_name[name], decisions[name]
        members.append(
            Member(name, decision.action, None, host.tier, host.priority, decision.verdict, decision.reason)
        )
    return Draft(
        members=members,
        waves=plan_waves,
        bounds=bounds.compute(scheduled, jobs, resource_limits, limits.forks, run.containment_s),
        external_dependencies=external,
        makespan_s=run.makespan_s,
        reconnect_at=run.reconnect_at,
    )
