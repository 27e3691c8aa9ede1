"""Lower bounds on the makespan, so an operator sees how far a plan is from the best possible.

Under the plan's rules each tier's waves take at least the longer of:
- its longest dependency chain: a chain of k hosts needs k waves one after another, each at least as
  long as its host;
- for each limited resource with limit c, the durations of the hosts using it sorted longest first,
  taken c at a time: the i-th longest wave can be no shorter than the ((i-1)c+1)-th longest host,
  because the hosts at least that long cannot fit in fewer waves. This is exact for one resource
  alone, which makes it the tightest bound a per-resource argument gives.
The tiers' bounds add up, since tiers run one after another.

Without the rules (hosts start as soon as their dependencies end and capacity frees, tiers
interleaved), the classic bound remains: the longest dependency chain, and each resource's total work
divided by its limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestrator.planning.model import Bounds, TierBound
from orchestrator.planning.waves import Job

CHAIN = "dependency chain"


def _longest_chains(order: Sequence[str], jobs: Mapping[str, Job], same_tier: bool) -> dict[str, float]:
    """Longest chain of durations ending at each job, itself included."""
    longest: dict[str, float] = {}
    for name in order:
        job = jobs[name]
        before = [longest[d] for d in job.deps if not same_tier or jobs[d].tier == job.tier]
        longest[name] = job.seconds + max(before, default=0.0)
    return longest


def _waves_needed(durations: list[float], limit: int) -> float:
    durations.sort(reverse=True)
    return sum(durations[i] for i in range(0, len(durations), limit))


def compute(order: Sequence[str], jobs: Mapping[str, Job], limits: Mapping[str, int]) -> Bounds:
    in_tier = _longest_chains(order, jobs, same_tier=True)
    by_tier: dict[int, list[str]] = {}
    for name in order:
        by_tier.setdefault(jobs[name].tier, []).append(name)
    tiers: list[TierBound] = []
    for tier in sorted(by_tier):
        names = by_tier[tier]
        per_resource: dict[str, list[float]] = {}
        for name in names:
            for r in jobs[name].resources:
                per_resource.setdefault(r, []).append(jobs[name].seconds)
        capacity_s, binding = 0.0, CHAIN
        for r in sorted(per_resource):
            need = _waves_needed(per_resource[r], limits[r])
            if need > capacity_s:
                capacity_s, binding = need, r
        chain_s = max(in_tier[n] for n in names)
        tiers.append(TierBound(tier, chain_s, capacity_s, binding if capacity_s > chain_s else CHAIN))

    overall = _longest_chains(order, jobs, same_tier=False)
    work: dict[str, float] = {}
    for job in jobs.values():
        for r in job.resources:
            work[r] = work.get(r, 0.0) + job.seconds
    unordered = max([max(overall.values(), default=0.0), *(w / limits[r] for r, w in work.items())])
    return Bounds(tiers=tiers, unordered_s=unordered)
