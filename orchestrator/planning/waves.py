"""Hosts into waves (the plan order: tier, dependencies, longest first, priority), and the estimate of
how the engine runs them.

Packing. Dependencies do not place hosts: a host whose dependency is not recovered yet is still rebuilt
in its wave, then waits isolated ("awaiting dependencies") and reconnects as soon as what it needs is
recovered. Nor do capacities: the run holds them, host by host, as units free (see Estimate), so a
wave packed within them would only hold back the hosts that use them (wave 1 took every host
without a limited resource and only `limit` of those with one, which then ran `limit` at a time after
everything else had started: x1.10-1.54 of the capacity-only bound on the hospital). Waves are the
plan order cut into waves of --max-wave-size (one wave without it): the order the run admits hosts
in, not barriers. The order is tier (identity and core infrastructure first: what every other host
needs back first, and the order a crisis cell announces), then dependency level within the fleet
(a database before the application on it), then the longest hosts first (started early, none of
them trails the run), recovery priority and name. On the hospital that order costs nothing against
longest-first across tiers (bench/plan.py, seeds 1-10: x1.004-1.024 of the capacity-only bound,
was x1.005-1.023), and a domain controller no longer starts after the workstations.

Estimate. `timeline` replays what the engine does, with the engine's own policy and concurrency:
- containment first: every host on the rebuild path is isolated, then has its evidence collected, in
  batches of the containment capacity (`lifecycle.concurrency`), before any other stage starts;
- then the pipeline (`lifecycle.pipeline`, the very object the engine drives as its stage runs end)
  driven on simulated time: waves order the work but are not barriers. A host is admitted, in plan
  order, when every limited resource it uses has a free unit, and holds its units until it reaches
  reconnect; stage runs group the ready
  hosts of one wave, stage and kind on the `forks` workers left, earlier waves and later stages first,
  and last as long as their slowest host. At reconnect a host whose dependencies are not recovered is
  parked, isolated, and reconnects in a run after they are.
So a wave runs from its first stage run to its last host's reconnection while the next waves already
work, and the makespan is the last reconnection (or containment's end when nothing else runs).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator import lifecycle as states
from orchestrator.lifecycle import RECONNECT, concurrency, pipeline
from orchestrator.planning.model import Wave


@dataclass
class Job:
    """A host to place: what orders it, what it consumes, and its path's stages with their seconds."""

    name: str
    tier: int
    priority: int
    stages: tuple[tuple[str, float], ...]  # its path in order, reconnect last
    resources: tuple[str, ...]  # the limited resources it uses one unit of
    deps: tuple[str, ...]  # scheduled hosts it must not reconnect before
    seconds: float = field(init=False)  # its whole path
    reconnect_s: float = field(init=False)
    contain_s: float = field(init=False)  # the part run by containment, before the waves

    def __post_init__(self) -> None:
        self.seconds = sum(s for _, s in self.stages)
        self.reconnect_s = sum(s for stage, s in self.stages if stage == RECONNECT)
        self.contain_s = sum(s for stage, s in self.stages if stage in states.CONTAIN)

    @property
    def work_s(self) -> float:
        """Every stage before reconnection."""
        return self.seconds - self.reconnect_s

    @property
    def wave_s(self) -> float:
        """What its wave runs for it (reconnect included): its path less containment."""
        return self.seconds - self.contain_s


def schedule(order: Sequence[str], jobs: Mapping[str, Job], wave_size: int | None) -> list[list[str]]:
    """The hosts of each wave, in order: the plan order cut into waves of `wave_size` (one wave when
    there is none). `order` lists every host after its dependencies."""
    level: dict[str, int] = {}
    for name in order:
        level[name] = 1 + max((level[d] for d in jobs[name].deps), default=-1)
    ranked = sorted(order, key=lambda n: (jobs[n].tier, level[n], -jobs[n].wave_s, jobs[n].priority, n))
    size = wave_size or len(ranked) or 1
    return [ranked[i : i + size] for i in range(0, len(ranked), size)]


@dataclass
class Timeline:
    """The run as the engine would make it, in seconds from the start."""

    containment_s: float
    waves: list[Wave]  # numbered from 1, each from its first stage run to its last host's reconnection
    reconnect_at: dict[str, float]

    @property
    def makespan_s(self) -> float:
        """The last event: containment's end when no wave has work, else the last wave's last run."""
        return max([self.containment_s, *(w.end_s for w in self.waves)])


def containment_seconds(jobs: Mapping[str, Job], forks: int, contain_forks: int | None) -> float:
    """Every containment stage over every batch, one stage run at a time (hosts by name, as the engine)."""
    contained = sorted(n for n, j in jobs.items() if any(st in states.CONTAIN for st, _ in j.stages))
    size = concurrency.contain_batch(forks, contain_forks)
    total = 0.0
    for stage in states.CONTAIN:
        seconds = [s for n in contained for st, s in jobs[n].stages if st == stage]
        total += sum(concurrency.stage_run_seconds(b, forks) for b in concurrency.batches(seconds, size))
    return total


class _Reconnection:
    """Who may reconnect: a count of unrecovered dependencies per host, lowered as hosts recover."""

    def __init__(self, jobs: Mapping[str, Job]) -> None:
        self.pending: dict[str, int] = {}
        self.dependants: dict[str, list[str]] = {}
        for n, j in jobs.items():
            deps = set(j.deps)
            self.pending[n] = len(deps)
            for d in deps:
                self.dependants.setdefault(d, []).append(n)
        self.at: dict[str, float] = {}

    def waiting(self, hosts: Sequence[str]) -> list[str]:
        """The pipeline's question at reconnect: which of these hosts must wait."""
        return [h for h in hosts if self.pending[h]]

    def recover(self, hosts: Sequence[str], at: float) -> None:
        for h in hosts:
            self.at[h] = at
            for d in self.dependants.get(h, ()):
                self.pending[d] -= 1


def _work(packed: Sequence[Sequence[str]], jobs: Mapping[str, Job]) -> list[pipeline.Work]:
    """Each host as the engine hands it to the pipeline after containment, in plan order. Its kind is
    its path with the seconds of each stage: hosts of one kind take the same time at every stage."""
    after_containment: dict[tuple[tuple[str, float], ...], tuple[str, ...]] = {}
    for job in jobs.values():
        if job.stages not in after_containment:
            after_containment[job.stages] = tuple(st for st, _ in job.stages if st not in states.CONTAIN)
    return [
        pipeline.Work(
            name, number, after_containment[jobs[name].stages], jobs[name].stages, jobs[name].resources
        )
        for number, hosts in enumerate(packed, start=1)
        for name in hosts
    ]


def timeline(
    packed: Sequence[Sequence[str]],
    jobs: Mapping[str, Job],
    forks: int,
    contain_forks: int | None,
    limits: Mapping[str, int],
) -> Timeline:
    """Replay the run over the packed waves on simulated time (see the module docstring).

    A discrete-event loop: start every stage run the pipeline offers, jump to the next end, tell the
    pipeline of every run ending then (all at once, as the engine learns of the runs done while it
    waited), and so on until nothing runs. Hosts that could never reconnect (a dependency that never
    does) leave the loop with nothing running and no reconnection time, instead of hanging it."""
    containment_s = containment_seconds(jobs, forks, contain_forks)
    reconnection = _Reconnection(jobs)
    flow = pipeline.Pipeline(_work(packed, jobs), limits, forks, reconnection.waiting)
    seconds = {job.stages: dict(job.stages) for job in jobs.values()}  # per kind: stage -> seconds
    spans: dict[int, list[float]] = {}  # wave -> [its first run's start, its last run's end]
    ends: list[tuple[float, int, pipeline.Launch]] = []
    order = itertools.count()  # runs ending at the same time: in the order they started
    clock = containment_s
    while True:
        for launch in flow.launches():
            end = clock + max(seconds[jobs[h].stages][launch.stage] for h in launch.hosts)
            heapq.heappush(ends, (end, next(order), launch))
            span = spans.setdefault(launch.wave, [clock, end])
            span[1] = max(span[1], end)
        if not ends:
            break
        clock = ends[0][0]
        while ends and ends[0][0] == clock:
            _, _, launch = heapq.heappop(ends)
            if launch.stage == RECONNECT:
                reconnection.recover(launch.hosts, clock)
            flow.ended(launch, launch.hosts)
    plan_waves = [
        Wave(number, min(jobs[h].tier for h in hosts), list(hosts), *spans[number])
        for number, hosts in enumerate(packed, start=1)
    ]
    return Timeline(containment_s, plan_waves, reconnection.at)
