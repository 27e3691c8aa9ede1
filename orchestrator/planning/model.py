"""What a plan is made of, independent of how it is stored or shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from orchestrator.lifecycle import ACTIONS
from orchestrator.lifecycle.concurrency import DEFAULT_FORKS


@dataclass(frozen=True)
class Verdict:
    """A host's triage verdict as the planner needs it."""

    verdict: str
    reason: str | None = None
    # For a host restored from backups (planning.compromise): why its compromise time waits for a
    # person, or the person's restore-point decision that replaces it.
    time_hold: str | None = None
    time_note: str | None = None


@dataclass(frozen=True)
class Limits:
    """How much may run at once. `max_wave_size` and each capacity key limit the hosts holding a unit
    at once: a host takes one when its rebuild or verification starts and gives it back when it
    reaches reconnect, whatever its wave (waves are the plan order cut by `max_wave_size`: they order
    the work, they are not barriers). `forks` and `contain_forks` are the engine's workers and hosts
    per containment batch (`orchestrator run --forks`, `--contain-forks`): the estimate assumes the
    engine's defaults unless told otherwise."""

    max_wave_size: int | None = None
    capacities: Mapping[str, int] = field(default_factory=dict)
    forks: int = DEFAULT_FORKS
    contain_forks: int | None = None


@dataclass
class Member:
    host: str
    action: str
    wave: int | None
    tier: int
    priority: int
    verdict: str | None
    reason: str
    estimated_s: float = 0.0


@dataclass
class Wave:
    """Waves order the work but overlap in time: a wave runs from its first stage run to its last
    host's reconnection (seconds from the start of the run), while the next one may already work."""

    number: int
    tier: int
    hosts: list[str]
    start_s: float
    end_s: float

    @property
    def estimated_s(self) -> float:
        return self.end_s - self.start_s


@dataclass
class TierBound:
    """Why the work after containment cannot take less than `bound_s`: the longest chain of own work
    then reconnection after the dependencies, or the resource whose units its hosts hold longest per
    unit, or the engine's forks (since dependencies gate reconnection only, the whole plan has one such
    bound)."""

    tier: int
    chain_s: float
    capacity_s: float
    binding: str  # "dependency chain", "forks" or a capacity key ("image-server", "wave-size", ...)

    @property
    def bound_s(self) -> float:
        return max(self.chain_s, self.capacity_s)


@dataclass
class Bounds:
    """Lower bounds on the makespan (see planning.bounds).

    `lower_bound_s` holds for every plan the engine runs under the same rules (containment first, then
    the work of every wave overlapping up to the capacities and forks, reconnection after the
    dependencies): the plan's distance from it is the planner's to close. `unordered_s` drops
    containment first and keeps only capacity (the --capacity keys, --max-wave-size and the engine's
    forks) and the dependency chains of reconnection: the best any schedule could do.
    """

    tiers: list[TierBound]
    unordered_s: float
    unordered_binding: str = ""  # what binds `unordered_s`: "dependency chain", "forks" or a capacity key
    containment_s: float = 0.0  # containment before wave 1, as the engine batches it

    @property
    def lower_bound_s(self) -> float:
        return self.containment_s + sum(t.bound_s for t in self.tiers)

    @property
    def critical_path_s(self) -> float:
        return sum(t.chain_s for t in self.tiers)

    @property
    def capacity_s(self) -> float:
        return sum(t.capacity_s for t in self.tiers)


@dataclass
class Draft:
    """A plan as computed, before it is stored: every host exactly once in `members`."""

    members: list[Member]
    waves: list[Wave]
    bounds: Bounds
    external_dependencies: int = 0  # hosts depended on but outside the plan (taken as satisfied)
    makespan_s: float = 0.0  # when the last host reconnects (containment included)
    reconnect_at: dict[str, float] = field(default_factory=dict)  # host -> seconds from the start

    @property
    def estimated_s(self) -> float:
        return self.makespan_s

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTIONS, 0)
        for m in self.members:
            counts[m.action] += 1
        return counts
