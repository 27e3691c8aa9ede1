"""What a run is given and what it reports: its options, the hosts it works on, what the operator
confirms, and the outcome per host. Kept apart from the engine so the command line and the reports
read them without the engine's loop."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from orchestrator import inventory as inventory_lib
from orchestrator.execution import DEFAULT_EVIDENCE_PATH, restore_points, runner
from orchestrator.execution.runner import HostResult
from orchestrator.execution.stages.retriage import Validator
from orchestrator.lifecycle import concurrency
from orchestrator.package_data import package_path
from orchestrator.triage import DEFAULT_TIMEOUT

PLAYBOOKS = package_path("orchestrator", "playbooks")


class EngineObserver(runner.Observer, Protocol):
    def wave(self, number: int, hosts: list[str]) -> None: ...

    def stage(self, wave: int, stage: str, attempt: int, hosts: list[str]) -> None: ...

    def stage_end(self, wave: int, stage: str, results: dict[str, HostResult]) -> None: ...

    def note(self, message: str) -> None: ...

    def awaiting(self, hosts: list[str]) -> None: ...


@dataclass(frozen=True)
class Planned:
    """A host this run works on: its plan membership, or a person's decision over it."""

    host_name: str
    action: str
    wave: int | None
    tier: int
    verdict: str | None


@dataclass
class Pending:
    """What the operator confirms before the first destructive stage."""

    waves: list[int]
    rebuild: list[str]
    verify: list[str]


@dataclass
class RunOptions:
    inventory: list[str]
    operator: str
    wave: int | None = None
    check: bool = False
    # Hosts at once; None: the plan's (`plan --forks`), which its waves were packed and estimated for.
    # The engine resolves it when it loads the plan (`forks_for`).
    forks: int | None = None
    max_fail_percentage: float = 25.0
    retries: int = 1
    runs_dir: Path = Path("runs")
    playbooks: Path = PLAYBOOKS
    evidence_host: str | None = None
    evidence_path: str = DEFAULT_EVIDENCE_PATH
    restore_margin: timedelta = restore_points.DEFAULT_MARGIN
    packs: list[str] = field(default_factory=list)
    scan_timeout: float = DEFAULT_TIMEOUT  # per host, for the validate stage's triage re-check
    node: str | None = None  # every stage on this execution node, whatever the inventory says
    contain_forks: int | None = None  # hosts contained at once (default: --forks)
    contain_only: bool = False  # `orchestrator contain`: containment, then stop
    # `inventory` already being loaded (the command line starts it before importing this module).
    prefetched: inventory_lib.Prefetch | None = None
    confirm: Callable[[Pending], bool] | None = None
    observer: EngineObserver | None = None
    validator: Validator | None = None  # the validate stage's re-check (default: triage, recorded)
    scanner: restore_points.Scanner | None = None


def forks_for(given: int | None, plan_params: Mapping[str, Any]) -> tuple[int, int]:
    """The forks a run uses (what it was given, else the plan's) and the plan's own: a run on other
    forks than its plan's drifts from the estimate, so the engine says so and audits both. Plans made
    before `plan --forks` were estimated for the default."""
    planned = plan_params.get("forks")
    plan_forks = planned if isinstance(planned, int) and planned >= 1 else concurrency.DEFAULT_FORKS
    return (given if given is not None else plan_forks), plan_forks


@dataclass
class HostReport:
    name: str
    action: str
    wave: int | None
    state: str
    stage: str | None = None
    reason: str | None = None
    # recovered | awaiting | contained | failed | held | blocked | refused | interrupted | pending | checked
    outcome: str = "pending"


@dataclass
class RunReport:
    plan_id: int
    check: bool
    runs_dir: str
    waves: list[int] = field(default_factory=list)
    stopped: str | None = None
    hosts: dict[str, HostReport] = field(default_factory=dict)
    containment_requested: dict[str, str] = field(default_factory=dict)  # host -> why
    containment_files: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[HostReport]:
        return [h for h in self.hosts.values() if h.outcome in ("failed", "refused")]

    @property
    def held(self) -> list[HostReport]:
        """Hosts waiting for a person's restore-point decision (not counted as the wave's failures)."""
        return [h for h in self.hosts.values() if h.outcome == "held"]

    @property
    def interrupted(self) -> list[HostReport]:
        return [h for h in self.hosts.values() if h.outcome == "interrupted"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan_id,
            "check": self.check,
            "runs_dir": self.runs_dir,
            "waves": self.waves,
            "stopped": self.stopped,
            "hosts": [vars(h) for h in self.hosts.values()],
            "containment_requested": self.containment_requested,
            "containment_files": self.containment_files,
        }
