"""Lower bounds on the makespan, so an operator sees how far a plan is from the best possible.

Dependencies gate reconnection only, so a host reconnects no sooner than its own work (every stage
before reconnect) and its dependencies' reconnection allow: the longest such chain is a bound
whatever the capacity. Each limited resource with limit c bounds the makespan by its total work
divided by c (capacity only: the "unordered" bound, the best any schedule could do).

Under the plan's rules (waves one after another, each as long as its slowest host) a resource's hosts
sorted longest first, taken c at a time, give a tighter bound: the i-th longest wave can be no shorter
than the ((i-1)c+1)-th longest host, because the hosts at least that long cannot fit in fewer waves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.planning.model import Bounds, TierBound
from orchestrator.planning.waves import Job

CHAIN = "dependency chain"


def _reconnect_chains(order: Sequence[str], jobs: Mapping[str, Job]) -> float:
    """The longest "own work, then reconnect after the dependencies" chain."""
    done: dict[str, float] = {}
    for name in order:
        job = jobs[name]
        done[name] = max([job.work_s, *(done[d] for d in job.deps)]) + job.reconnect_s
    return max(done.values(), default=0.0)


def _waves_needed(durations: list[float], limit: int) -> float:
    durations.sort(reverse=True)
    return sum(durations[i] for i in range(0, len(durations), limit))


def compute(order: Sequence[str], jobs: Mapping[str, Job], limits: Mapping[str, int]) -> Bounds:
    chain_s = _reconnect_chains(order, jobs)
    per_resource: dict[str, list[float]] = {}
    for job in jobs.values():
        for r in job.resources:
            per_resource.setdefault(r, []).append(job.seconds)
    capacity_s, binding = 0.0, CHAIN
    work: dict[str, float] = {}
    for r in sorted(per_resource):
        work[r] = sum(per_resource[r])
        need = _waves_needed(per_resource[r], limits[r])
        if need > capacity_s:
            capacity_s, binding = need, r
    unordered = max([chain_s, *(w / limits[r] for r, w in work.items())])
    tier = min((j.tier for j in jobs.values()), default=0)
    bound = TierBound(tier, chain_s, capacity_s, binding if capacity_s > chain_s else CHAIN)
    return Bounds(tiers=[bound] if jobs else [], unordered_s=unordered)
