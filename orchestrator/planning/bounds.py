"""Lower bounds on the makespan, so an operator sees how far a plan is from the best possible, and why.

A limited resource's unit is held by a host from its first stage after containment until it reaches
reconnect (`lifecycle.pipeline`): a resource's work is its hosts' path less containment and
reconnection.

Capacity only (`unordered_s`, the best any schedule could do): dependencies gate reconnection only, so
a host reconnects no sooner than its own work (every stage before reconnect) and its dependencies'
reconnection allow: the longest such chain is a bound whatever the capacity. Each limited resource
with limit c bounds the makespan by its work divided by c (containment has its own capacity, the
capacity keys do not limit it). The controller's `forks` workers are a capacity like any other: no
stage of any host runs without one, so the whole work of every host (containment and reconnection
included) over `forks` is a bound too. Without it a plan with no --capacity would be compared with
its dependency chains alone, a figure no run on `forks` workers could approach.

Under the engine's rules (`lower_bound_s`): containment comes first and takes what it takes (it is
the same for every plan of these hosts); after it, the pipeline overlaps the waves, so what remains
is bound by the work after containment over `forks`, by each resource's work over its limit plus the
shortest reconnection among its hosts (the host giving back the last unit still reconnects after),
and by the reconnection chains counted from the end of containment. The gap between the two bounds is
what containment first costs; the gap between this one and the estimate is the planner's to close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.planning.model import Bounds, TierBound
from orchestrator.planning.waves import Job

CHAIN = "dependency chain"
FORKS = "forks"


def _reconnect_chains(order: Sequence[str], jobs: Mapping[str, Job], own: Mapping[str, float]) -> float:
    """The longest "own work, then reconnect after the dependencies" chain."""
    done: dict[str, float] = {}
    for name in order:
        job = jobs[name]
        done[name] = max([own[name], *(done[d] for d in job.deps)]) + job.reconnect_s
    return max(done.values(), default=0.0)


def _held(jobs: Mapping[str, Job]) -> dict[str, float]:
    """Per limited resource, the seconds its units are held: a host holds one from its first stage
    after containment until it reaches reconnect (`lifecycle.pipeline`)."""
    held: dict[str, float] = {}
    for job in jobs.values():
        for r in job.resources:
            held[r] = held.get(r, 0.0) + job.wave_s - job.reconnect_s
    return held


def capacity_only(
    order: Sequence[str], jobs: Mapping[str, Job], limits: Mapping[str, int], forks: int
) -> tuple[float, str]:
    """The capacity-only bound and what binds it: "dependency chain", "forks" or a capacity key."""
    work = _held(jobs)
    candidates = [
        (_reconnect_chains(order, jobs, {n: j.work_s for n, j in jobs.items()}), CHAIN),
        (sum(j.seconds for j in jobs.values()) / forks, FORKS),
        *((w / limits[r], r) for r, w in sorted(work.items())),
    ]
    return max(candidates, key=lambda c: c[0])


def compute(
    order: Sequence[str], jobs: Mapping[str, Job], limits: Mapping[str, int], forks: int, containment_s: float
) -> Bounds:
    """Both bounds (see the module docstring); the one under the engine's rules counts from the end
    of containment."""
    after_containment = {n: j.work_s - j.contain_s for n, j in jobs.items()}
    chain_s = _reconnect_chains(order, jobs, after_containment)
    capacity_s, binding = sum(j.wave_s for j in jobs.values()) / forks, FORKS
    last_reconnect: dict[str, float] = {}
    for job in jobs.values():
        for r in job.resources:
            last_reconnect[r] = min(last_reconnect.get(r, job.reconnect_s), job.reconnect_s)
    for r, held in sorted(_held(jobs).items()):
        need = held / limits[r] + last_reconnect[r]
        if need > capacity_s:
            capacity_s, binding = need, r
    unordered, unordered_binding = capacity_only(order, jobs, limits, forks)
    tier = min((j.tier for j in jobs.values()), default=0)
    bound = TierBound(tier, chain_s, capacity_s, binding if capacity_s > chain_s else CHAIN)
    return Bounds(
        tiers=[bound] if jobs else [],
        unordered_s=unordered,
        unordered_binding=unordered_binding,
        containment_s=containment_s,
    )
