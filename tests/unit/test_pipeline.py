"""The pipeline on its own (lifecycle.pipeline): the policy the engine drives as its stage runs end and
the planner's estimate drives on simulated time. The drivers here are as small as can be: launch what
it offers, end runs as a clock says, and check what it promises from the outside."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Collection, Mapping, Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.lifecycle import RECONNECT, pipeline
from orchestrator.lifecycle.pipeline import Launch, Pipeline, Work

REBUILD = ("wipe", "reimage", "restore", "validate", RECONNECT)
VERIFY = ("validate", "harden", RECONNECT)
RESOURCES = ("image-server", "restores", "site:a", "tier:1")


class Dependencies:
    """Who may reconnect: hosts whose dependencies have all reconnected (the driver's `waiting`)."""

    def __init__(self, deps: Mapping[str, Sequence[str]]) -> None:
        self.deps = deps
        self.recovered: set[str] = set()
        self.asked: list[list[str]] = []

    def waiting(self, hosts: Sequence[str]) -> Collection[str]:
        self.asked.append(list(hosts))
        return [h for h in hosts if not set(self.deps.get(h, ())) <= self.recovered]


def _drain(p: Pipeline) -> list[Launch]:
    """End every run offered, all ok, until none is: the launches in order."""
    out: list[Launch] = []
    while True:
        offered = p.launches()
        if not offered:
            return out
        for launch in offered:
            out.append(launch)
            p.ended(launch, launch.hosts)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Work], dict[str, list[str]], dict[str, int], int, int]:
    n = draw(st.integers(1, 25))
    names = [f"h{i:02d}" for i in range(n)]
    deps = {
        h: draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=2)) if i else []
        for i, h in enumerate(names)
    }
    work = []
    for name in names:
        path = draw(st.sampled_from([REBUILD, VERIFY, (RECONNECT,)]))
        used = tuple(draw(st.lists(st.sampled_from(RESOURCES), unique=True, max_size=3)))
        work.append(Work(name, draw(st.integers(1, 4)), path, (path, draw(st.integers(0, 1))), used))
    work.sort(key=lambda w: w.wave)  # plan order: wave, then place in the wave
    limits = draw(st.dictionaries(st.sampled_from(RESOURCES), st.integers(1, 3), max_size=4))
    return work, deps, limits, draw(st.integers(1, 6)), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets())
def test_no_limit_is_ever_exceeded_and_every_host_reconnects_after_its_dependencies(fleet) -> None:
    """A random fleet through a clock with random stage times, retries and failures. At every moment:
    the hosts holding a unit of a resource (from their first stage run until they reach reconnect,
    fail or leave) are within its limit, the workers in use within forks, a run's hosts are of one
    wave, stage and attempt, each host runs its stages in order, and none reconnects before
    everything it depends on has."""
    work, deps, limits, forks, seed = fleet
    rng = random.Random(seed)
    by_name = {w.name: w for w in work}
    gate = Dependencies(deps)
    p = Pipeline(work, limits, forks, gate.waiting)
    step = dict.fromkeys(by_name, 0)  # the stage each host is at, as the driver saw it end
    attempt = dict.fromkeys(by_name, 1)
    holding: set[str] = set()
    left: set[str] = set()  # failed: out of the run
    clock, order, ends = 0, itertools.count(), []
    running = 0
    while True:
        for launch in p.launches():
            assert launch.hosts and len(launch.hosts) <= forks
            running += len(launch.hosts)
            assert running <= forks
            for name in launch.hosts:
                assert name not in left
                assert by_name[name].stages[step[name]] == launch.stage
                assert attempt[name] == launch.attempt and by_name[name].wave == launch.wave
                if launch.stage == RECONNECT:
                    assert set(deps[name]) <= gate.recovered, (name, deps[name])
                else:
                    holding.add(name)
            for r, limit in limits.items():
                assert sum(1 for h in holding if r in by_name[h].resources) <= limit, (r, holding)
            heapq.heappush(ends, (clock + rng.randint(1, 4), next(order), launch))
        if not ends:
            break
        clock, _, launch = heapq.heappop(ends)
        running -= len(launch.hosts)
        ok, retry = [], []
        for name in launch.hosts:
            roll = rng.random()
            if roll < 0.8 or attempt[name] > 2:
                ok.append(name)
                step[name] += 1
                attempt[name] = 1
                if launch.stage == RECONNECT:
                    gate.recovered.add(name)
                elif by_name[name].stages[step[name]] == RECONNECT:
                    holding.discard(name)  # reached reconnect: its units are given back
            elif roll < 0.95:
                retry.append(name)
                attempt[name] += 1
            else:
                left.add(name)
                holding.discard(name)
        p.ended(launch, ok, retry)
    assert not p.busy and not holding
    # everything ended: each host reconnected, failed, or waits for a dependency that failed or waits
    for name in by_name:
        done = name in gate.recovered or name in left
        blocked = not set(deps[name]) <= gate.recovered
        assert done or blocked, name
        if blocked and name not in left:
            assert by_name[name].stages[step[name]] == RECONNECT  # parked at reconnect, isolated


def test_parked_hosts_reconnect_after_their_dependency_never_before_in_plan_order() -> None:
    # d (wave 2) is rebuilt while a, b and c (wave 1), which depend on it, verify: they reach reconnect
    # first and are parked; they reconnect in one run, in plan order, after d's reconnection.
    work = [
        Work("c", 1, VERIFY, "verify"),
        Work("a", 1, VERIFY, "verify"),
        Work("b", 1, VERIFY, "verify"),
        Work("d", 2, REBUILD, "rebuild"),
    ]
    gate = Dependencies({"a": ["d"], "b": ["d"], "c": ["d"]})
    p = Pipeline(work, {}, 10, gate.waiting)
    seen: list[tuple[str, tuple[str, ...]]] = []
    while True:
        offered = p.launches()
        if not offered:
            break
        for launch in offered:
            seen.append((launch.stage, launch.hosts))
            if launch.stage == RECONNECT:
                gate.recovered.update(launch.hosts)
            p.ended(launch, launch.hosts)
    reconnects = [hosts for stage, hosts in seen if stage == RECONNECT]
    assert reconnects == [("d",), ("c", "a", "b")]
    assert ["c", "a", "b"] in gate.asked  # parked when they first arrived, before d reconnected
    assert seen.index((RECONNECT, ("d",))) < seen.index((RECONNECT, ("c", "a", "b")))


def test_a_host_whose_dependency_never_reconnects_stays_parked_and_the_run_ends() -> None:
    gate = Dependencies({"a": ["gone"]})
    p = Pipeline([Work("a", 1, VERIFY, "verify")], {}, 4, gate.waiting)
    launches = _drain(p)
    assert [x.stage for x in launches] == ["validate", "harden"]
    assert not p.busy and p.launches() == []


def test_ended_reruns_retried_hosts_with_the_next_attempt_and_gives_back_the_units_of_failed_ones() -> None:
    # image-server=1: r1 waits for r0's unit. r0 fails its wipe, r2 (no limited resource) retries it.
    work = [
        Work("r0", 1, REBUILD, "rebuild", ("image-server",)),
        Work("r1", 1, REBUILD, "rebuild", ("image-server",)),
        Work("r2", 1, REBUILD, "rebuild"),
    ]
    p = Pipeline(work, {"image-server": 1}, 4, lambda hosts: [])
    first = p.launches()
    assert first == [Launch(1, "wipe", 1, ("r0", "r2"))]  # r1 does not fit: r0 holds the unit
    p.ended(first[0], ok=[], retry=["r2"])  # r0 failed
    again = p.launches()
    assert Launch(1, "wipe", 2, ("r2",)) in again  # the same stage, attempt 2
    assert Launch(1, "wipe", 1, ("r1",)) in again  # r0's unit given back: r1 admitted
    assert len(again) == 2
    for launch in again:
        p.ended(launch, launch.hosts)
    rest = _drain(p)
    # one run of the two, in the order they arrived (a retry goes before first attempts)
    assert [(x.stage, x.hosts) for x in rest if x.stage == RECONNECT] == [(RECONNECT, ("r2", "r1"))]
    assert all("r0" not in x.hosts for x in rest)


def test_stop_offers_nothing_more_and_the_runs_under_way_end_as_they_do() -> None:
    p = Pipeline([Work("a", 1, VERIFY, "verify")], {}, 2, lambda hosts: [])
    (launch,) = p.launches()
    p.stop()
    assert p.busy and p.launches() == []
    p.ended(launch, launch.hosts)
    assert not p.busy and p.launches() == []


def test_limits_of_makes_the_wave_size_a_resource_every_host_uses() -> None:
    assert pipeline.limits_of(5, {"image-server": 2}) == {"image-server": 2, pipeline.WAVE_SIZE: 5}
    assert pipeline.limits_of(None, {}) == {}
    assert pipeline.resources("verify", 2, "a", "pxe", "restic") == (pipeline.WAVE_SIZE, "tier:2")
