"""What a plan is made of, independent of how it is stored or shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

REBUILD = "rebuild"
VERIFY = "verify"
HOLD = "hold"
PROTECTED = "protected"
ACTIONS = (REBUILD, VERIFY, HOLD, PROTECTED)
SCHEDULED = (REBUILD, VERIFY, PROTECTED)  # the actions that take a place in a wave

CLEAN = "clean"
SUSPICIOUS = "suspicious"
INFECTED = "infected"
UNREACHABLE = "unreachable"
ERROR = "error"
VERDICTS = (CLEAN, SUSPICIOUS, INFECTED, UNREACHABLE, ERROR)


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
    """How much may run at once. A wave is the unit of concurrency: everything in a wave runs in
    parallel, so a per-wave count is a concurrency limit."""

    max_wave_size: int | None = None
    capacities: Mapping[str, int] = field(default_factory=dict)


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
    number: int
    tier: int
    hosts: list[str]
    estimated_s: float


@dataclass
class TierBound:
    """Why a tier's waves cannot take less than `bound_s`: its longest dependency chain, or the
    resource whose hosts need the most waves."""

    tier: int
    chain_s: float
    capacity_s: float
    binding: str  # "dependency chain" or a capacity key ("image-server", "wave-size", ...)

    @property
    def bound_s(self) -> float:
        return max(self.chain_s, self.capacity_s)


@dataclass
class Bounds:
    """Lower bounds on the makespan.

    `lower_bound_s` holds for every plan made under the same rules (waves one after another, tiers in
    order, dependencies, capacities): the plan's distance from it is the planner's to close.
    `unordered_s` drops the rules a crisis cell chose (tier order, waves as barriers) and keeps only
    dependencies and capacity, so the gap between the two is the price of those rules.
    """

    tiers: list[TierBound]
    unordered_s: float

    @property
    def lower_bound_s(self) -> float:
        return sum(t.bound_s for t in self.tiers)

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

    @property
    def estimated_s(self) -> float:
        return sum(w.estimated_s for w in self.waves)

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTIONS, 0)
        for m in self.members:
            counts[m.action] += 1
        return counts
