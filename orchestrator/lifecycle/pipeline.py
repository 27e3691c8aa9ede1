"""How the engine keeps its workers busy across waves: one policy, driven by the engine as its stage
runs end and by the planner's estimate as simulated time passes, so the plan's figures cannot drift
from what a run does.

Waves order the work; they are not barriers. Dependencies gate reconnection only, so nothing obliges
wave 2's wipe to wait for wave 1's last harden, and an image server limited to 40 hosts at once must
not leave 10 of 50 workers idle while it works:
- A host is *admitted* (its rebuild or verification may start) when each limited resource it uses
  has a free unit. Hosts are admitted in plan order (wave, then their order in the wave); one that does
  not fit now is passed over for later ones that do. It holds its units until it reaches reconnect,
  fails, is held for a person, or the run stops. Admission waits until every ready host is in a
  stage run and workers are still free: units are never taken by hosts that could not start.
- Stage runs are made of ready hosts of one wave, stage, attempt and kind (hosts of one kind take the
  same time at a stage, and a run lasts as long as its slowest host), each host with a worker of its
  own, as many as the `forks` workers left allow. Earlier waves go first, and within a wave the later
  stages: what has started finishes first.
- At reconnect, hosts whose dependencies are not recovered are parked, isolated; every reconnect run
  that recovers a host has the parked hosts checked again.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.lifecycle import REBUILD, RECONNECT, STAGE_ORDER

IMAGE_SERVER = "image-server"
RESTORES = "restores"
WAVE_SIZE = "wave-size"  # --max-wave-size: hosts in flight at once, every host uses one


def resources(
    action: str, tier: int, site: str | None, reimage_method: str | None, restore_method: str | None
) -> tuple[str, ...]:
    """Every capacity key one host uses one unit of while it is worked on (`orchestrator plan
    --capacity`, see planning.capacity)."""
    keys = [WAVE_SIZE, f"tier:{tier}"]
    if action == REBUILD:
        keys.append(IMAGE_SERVER)
        if reimage_method:
            keys.append(f"reimage:{reimage_method}")
        if restore_method and restore_method != "none":
            keys.append(RESTORES)
        if site:
            keys.append(f"site:{site}")
    return tuple(keys)


def limits_of(max_wave_size: int | None, capacities: Mapping[str, int]) -> dict[str, int]:
    """A plan's limits as the pipeline holds them: --max-wave-size is one more resource."""
    out = dict(capacities)
    if max_wave_size is not None:
        out[WAVE_SIZE] = max_wave_size
    return out


@dataclass(frozen=True)
class Work:
    """One host's way through the run."""

    name: str
    wave: int
    stages: tuple[str, ...]  # what remains of its path, in order (reconnect last when it has one)
    kind: Hashable  # hosts of one kind take the same time at a stage (their path and methods)
    resources: tuple[str, ...] = ()  # limited resources it holds a unit of until reconnect


@dataclass(frozen=True)
class Launch:
    """A stage run to start now: `hosts` on `len(hosts)` workers."""

    wave: int
    stage: str
    attempt: int
    hosts: tuple[str, ...]


Waiting = Callable[[Sequence[str]], Collection[str]]  # of these hosts at reconnect, those that must wait


class Pipeline:
    def __init__(self, work: Sequence[Work], limits: Mapping[str, int], forks: int, waiting: Waiting) -> None:
        self.work = {w.name: w for w in work}
        self.position = {w.name: i for i, w in enumerate(work)}  # plan order
        self.limits = dict(limits)
        self.used = dict.fromkeys(self.limits, 0)
        self.free = forks
        self.waiting = waiting
        self.step = {w.name: 0 for w in work}  # index into its stages
        self.attempt = {w.name: 1 for w in work}
        # Not admitted yet, by the limited resources they use, each queue in plan order: a full
        # resource costs one check per queue, not one per host waiting for it.
        self.pending: dict[tuple[str, ...], deque[str]] = {}
        for w in work:
            if w.stages:
                used = tuple(r for r in w.resources if r in self.limits)
                self.pending.setdefault(used, deque()).append(w.name)
        self.holding: set[str] = set()  # admitted hosts holding their units
        self.ready: dict[tuple[int, str, int, Hashable], list[str]] = {}
        self.arriving: list[str] = []  # at reconnect, not checked yet
        self.parked: list[str] = []  # at reconnect, waiting for their dependencies, in plan order
        self.recheck = False
        self.running: dict[Launch, int] = {}  # launch -> its workers
        self.stopped = False

    # --- what the driver calls -----------------------------------------------------------------

    def launches(self) -> list[Launch]:
        """The stage runs to start now (none once stopped); each takes its workers until `ended`."""
        out: list[Launch] = []
        if self.stopped:
            return out
        self._check_reconnect()
        while self.free > 0:
            if not self.ready and not self._admit():
                break
            if not self.ready:
                self._check_reconnect()  # the admitted hosts were all at reconnect
                continue
            key = min(self.ready, key=self._priority)
            hosts = self.ready[key]
            take, rest = hosts[: self.free], hosts[self.free :]
            if rest:
                self.ready[key] = rest
            else:
                del self.ready[key]
            launch = Launch(key[0], key[1], key[2], tuple(take))
            self.running[launch] = len(take)
            self.free -= len(take)
            out.append(launch)
        return out

    def ended(self, launch: Launch, ok: Collection[str], retry: Collection[str] = ()) -> None:
        """A stage run is over: `ok` hosts go on, `retry` hosts run the stage again, the others
        (failed, held for a person, interrupted) leave the run and give back their units."""
        self.free += self.running.pop(launch)
        for name in launch.hosts:
            if name in ok:
                self.attempt[name] = 1
                self.step[name] += 1
                if launch.stage == RECONNECT:
                    self.recheck = True
                self._advance(name)
            elif name in retry:
                self.attempt[name] += 1
                self._advance(name)
            else:
                self._release(name)

    def stop(self) -> None:
        """No further stage runs: those running end as they do."""
        self.stopped = True

    @property
    def busy(self) -> bool:
        return bool(self.running)

    # --- inside --------------------------------------------------------------------------------

    def _priority(self, key: tuple[int, str, int, Hashable]) -> tuple[int, int, int, int]:
        wave, stage, attempt, _ = key
        return (wave, -STAGE_ORDER.index(stage), -attempt, self.position[self.ready[key][0]])

    def _fits(self, used: tuple[str, ...]) -> bool:
        return all(self.used[r] < self.limits[r] for r in used)

    def _admit(self) -> bool:
        """Admit up to `free` hosts that fit, in plan order; False when none could be. A queue whose
        resources are full is done for this call: units are only taken here, never given back."""
        heads = [(self.position[q[0]], used) for used, q in self.pending.items() if q and self._fits(used)]
        heapq.heapify(heads)
        admitted = 0
        while heads and admitted < self.free:
            _, used = heapq.heappop(heads)
            if not self._fits(used):
                continue
            queue = self.pending[used]
            name = queue.popleft()
            if queue:
                heapq.heappush(heads, (self.position[queue[0]], used))
            if self.work[name].stages[self.step[name]] != RECONNECT:
                for r in used:
                    self.used[r] += 1
                self.holding.add(name)
            admitted += 1
            self._advance(name)
        return admitted > 0

    def _advance(self, name: str) -> None:
        work = self.work[name]
        if self.step[name] >= len(work.stages):
            self._release(name)
            return
        stage = work.stages[self.step[name]]
        if stage == RECONNECT:
            self._release(name)
            self.arriving.append(name)
            return
        key = (work.wave, stage, self.attempt[name], work.kind)
        self.ready.setdefault(key, []).append(name)

    def _release(self, name: str) -> None:
        if name in self.holding:
            self.holding.discard(name)
            for r in self.work[name].resources:
                if r in self.limits:
                    self.used[r] -= 1

    def _check_reconnect(self) -> None:
        """The hosts arrived at reconnect, and the parked ones again after a host recovered, go to
        reconnect runs unless `waiting` keeps them parked. Parked hosts stay in plan order as a list
        (those still waiting keep their order; a newly parked one is inserted at its place): a fleet
        with thousands parked is rechecked after every reconnect run, so no sort per recheck."""
        arriving, self.arriving = self.arriving, []
        parked = self.parked if self.recheck else []
        self.recheck = False
        if not arriving and not parked:
            return
        checked = arriving + parked
        wait = set(self.waiting(checked))
        if parked:
            self.parked = [name for name in parked if name in wait]
        for name in checked:
            if name not in wait:
                work = self.work[name]
                key = (work.wave, RECONNECT, self.attempt[name], work.kind)
                self.ready.setdefault(key, []).append(name)
        for name in arriving:
            if name in wait:
                bisect.insort(self.parked, name, key=self.position.__getitem__)
