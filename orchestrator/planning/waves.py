"""Hosts into waves: capacity first, tier and priority for the order, dependencies for reconnection.

Waves run one after another and everything inside a wave runs at once, so a wave lasts as long as its
slowest host and a per-wave count is a concurrency limit. Dependencies do not place hosts: a host
whose dependency is not recovered yet is still rebuilt in its wave, then waits isolated ("awaiting
dependencies") and reconnects as soon as what it needs is recovered. So waves are packed by capacity
alone: the longest hosts first (a wave lasts as long as its slowest host, so hosts of one length
together waste no wave time), then tier (the order a crisis cell announces), recovery priority and
name. Reconnection keeps the tier order: waves are run in order and a host reconnects only after
everything it depends on.

The packing is list scheduling: each wave takes hosts in that order, skipping any host that would push
a resource over its limit. Hosts are bucketed by the set of limited resources they use, so a full
resource costs one check per bucket, not one per host: 20,000 hosts plan in well under a second.

The estimate follows the engine: each wave's rebuild work (every stage before reconnect) takes its
slowest host; a host reconnects at the end of its wave, or once its dependencies have reconnected
(the engine's sweep), whichever is later.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.planning.model import Wave


@dataclass(frozen=True)
class Job:
    """A host to place: what orders it and what it consumes."""

    name: str
    tier: int
    priority: int
    seconds: float  # its whole path, reconnect included
    resources: tuple[str, ...]  # the limited resources it uses one unit of
    deps: tuple[str, ...]  # scheduled hosts it must not reconnect before
    reconnect_s: float = 0.0  # the part of `seconds` that is reconnection

    @property
    def work_s(self) -> float:
        """The rebuild (or verify) work before reconnection: what overlaps across waves."""
        return self.seconds - self.reconnect_s


def schedule(order: Sequence[str], jobs: Mapping[str, Job], limits: Mapping[str, int]) -> list[Wave]:
    """Waves for `jobs`, numbered from 1; a wave's tier is the lowest tier it serves."""
    buckets: dict[tuple[str, ...], list[tuple[tuple[float, int, int, str], str]]] = {}
    for name in order:
        job = jobs[name]
        key = (-job.seconds, job.tier, job.priority, name)
        buckets.setdefault(job.resources, []).append((key, name))
    for bucket in buckets.values():
        heapq.heapify(bucket)
    waves: list[Wave] = []
    while any(buckets.values()):
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
        waves.append(
            Wave(
                number=len(waves) + 1,
                tier=min(jobs[n].tier for n in members),
                hosts=members,
                estimated_s=max(jobs[n].work_s for n in members) + max(jobs[n].reconnect_s for n in members),
            )
        )
    return waves


def reconnect_times(
    order: Sequence[str], jobs: Mapping[str, Job], plan_waves: Sequence[Wave]
) -> dict[str, float]:
    """When each host reconnects, in seconds from the start, as the engine runs the waves (see the
    module docstring). `order` lists dependencies before their dependants."""
    work_end: dict[str, float] = {}
    clock = 0.0
    for wave in plan_waves:
        work = max(jobs[n].work_s for n in wave.hosts)
        for n in wave.hosts:
            work_end[n] = clock + work
        clock += wave.estimated_s
    done: dict[str, float] = {}
    for name in order:
        job = jobs[name]
        done[name] = max([work_end[name], *(done[d] for d in job.deps)]) + job.reconnect_s
    return done


def makespan(plan_waves: Sequence[Wave], reconnected: Mapping[str, float]) -> float:
    """When the last wave ends or the last host reconnects."""
    return max([sum(w.estimated_s for w in plan_waves), *reconnected.values()], default=0.0)
