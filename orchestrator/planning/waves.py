"""Hosts into waves: tiers in order, dependencies first, priority inside a tier, limits respected.

Waves run one after another and everything inside a wave runs at once, so a wave lasts as long as its
slowest host and a per-wave count is a concurrency limit. Each tier gets its own waves (tier 0's
before tier 1's, ...), which is the order a crisis cell announces; a host that depends on a host of a
later tier moves to that tier, because a dependency always wins.

Inside a tier this is list scheduling over graphlib's ready set: each wave takes the ready hosts in
order of recovery priority (then longest remaining dependency chain, so the critical path is never
left waiting, then name), skipping any host that would push a resource over its limit. Hosts are
bucketed by the set of limited resources they use, so a full resource costs one check per bucket, not
one per host: 20,000 hosts plan in well under a second.
"""

from __future__ import annotations

import graphlib
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.planning.model import Wave


@dataclass(frozen=True)
class Job:
    """A host to place: what orders it and what it consumes."""

    name: str
    tier: int  # its effective tier (own tier, or a later one a dependency forces)
    priority: int
    seconds: float
    resources: tuple[str, ...]  # the limited resources it uses one unit of
    deps: tuple[str, ...]  # scheduled hosts it waits for


def effective_tiers(
    order: Sequence[str], tiers: Mapping[str, int], deps: Mapping[str, Sequence[str]]
) -> dict[str, int]:
    """Own tier, or the latest tier among its dependencies (dependencies listed before dependants)."""
    effective: dict[str, int] = {}
    for name in order:
        effective[name] = max([tiers[name], *(effective[d] for d in deps[name])])
    return effective


def tails(order: Sequence[str], jobs: Mapping[str, Job]) -> dict[str, float]:
    """Longest chain of durations from each job to the end of its tier, itself included."""
    tail = {name: jobs[name].seconds for name in order}
    for name in reversed(order):
        job = jobs[name]
        for dep in job.deps:
            if jobs[dep].tier == job.tier and tail[dep] < jobs[dep].seconds + tail[name]:
                tail[dep] = jobs[dep].seconds + tail[name]
    return tail


def schedule(order: Sequence[str], jobs: Mapping[str, Job], limits: Mapping[str, int]) -> list[Wave]:
    """Waves for `jobs` (given in dependency order), numbered from 1."""
    tail = tails(order, jobs)
    by_tier: dict[int, list[str]] = {}
    for name in order:
        by_tier.setdefault(jobs[name].tier, []).append(name)
    waves: list[Wave] = []
    for tier in sorted(by_tier):
        for members in _tier_waves(by_tier[tier], jobs, tail, limits):
            waves.append(
                Wave(
                    number=len(waves) + 1,
                    tier=tier,
                    hosts=members,
                    estimated_s=max(jobs[n].seconds for n in members),
                )
            )
    return waves


def _tier_waves(
    names: list[str], jobs: Mapping[str, Job], tail: Mapping[str, float], limits: Mapping[str, int]
) -> list[list[str]]:
    in_tier = set(names)
    sorter = graphlib.TopologicalSorter({n: [d for d in jobs[n].deps if d in in_tier] for n in names})
    sorter.prepare()
    # One priority queue per resource signature: hosts needing the same limited resources.
    buckets: dict[tuple[str, ...], list[tuple[tuple[int, float, str], str]]] = {}
    waves: list[list[str]] = []
    while sorter.is_active():
        for name in sorter.get_ready():
            job = jobs[name]
            heapq.heappush(buckets.setdefault(job.resources, []), ((job.priority, -tail[name], name), name))
        heads = [(bucket[0][0], sig) for sig, bucket in buckets.items() if bucket]
        heapq.heapify(heads)
        used = dict.fromkeys(limits, 0)
        members: list[str] = []
        while heads:
            _, sig = heapq.heappop(heads)
            if any(used[r] >= limits[r] for r in sig):
                continue  # full for this wave: these resources only fill up from here on
            bucket = buckets[sig]
            _, name = heapq.heappop(bucket)
            members.append(name)
            for r in sig:
                used[r] += 1
            if bucket:
                heapq.heappush(heads, (bucket[0][0], sig))
        sorter.done(*members)
        waves.append(members)
    return waves
