"""Measured stage durations and the time-to-completion estimate built on them.

The estimate follows how a run proceeds. A wave still needs, in order, every stage that at least one
of its hosts still needs; waves overlap (`lifecycle.pipeline`), sharing the run's workers, so the
whole takes as long as its longest wave or as its hosts' remaining work over the workers, whichever is
more (the planner's estimate comes within a few percent of that bound). Each stage costs the median
duration of its recent successful runs (what this fleet and this network actually take), so the
estimate sharpens as the recovery goes.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.reporting import lifecycle
from orchestrator.timefmt import seconds

if TYPE_CHECKING:  # the estimate is also built by `sqlite_read`, which must not import SQLAlchemy
    from sqlmodel import Session

# Recent runs only: the newest few hundred per stage reflect today's conditions and bound the cost.
SAMPLE = 301


def stage_medians(session: Session, sample: int = SAMPLE) -> dict[str, float]:
    """Median seconds of each stage's recent successful, real (not check-mode) runs."""
    from sqlmodel import col, select

    from orchestrator.store.measured import measured
    from orchestrator.store.models import StageRun

    medians: dict[str, float] = {}
    for stage in lifecycle.STAGES:
        rows = session.exec(
            measured(select(StageRun.started_at, StageRun.finished_at).where(StageRun.stage == stage))
            .order_by(col(StageRun.id).desc())
            .limit(sample)
        ).all()
        if rows:
            medians[stage] = statistics.median(seconds(start, end) for start, end in rows)
    return medians


def remaining_in_wave(hosts: Iterable[tuple[str | None, str]]) -> tuple[str, ...]:
    """Stages a wave still runs, given the (action, state) pairs found among its hosts."""
    needed: set[str] = set()
    for action, state in hosts:
        needed.update(lifecycle.remaining_stages(action, state))
    return tuple(s for s in lifecycle.STAGES if s in needed)


@dataclass
class Estimate:
    eta_s: float
    basis: str  # measured | plan | partial | done
    unmeasured_stages: list[str]
    per_wave_s: dict[int, float]


def remaining_work(hosts_at: Mapping[tuple[str | None, str], int], medians: Mapping[str, float]) -> float:
    """Seconds of measured stages the hosts still need, one worker each: (action, state) -> hosts."""
    return sum(
        count * sum(medians.get(s, 0.0) for s in lifecycle.remaining_stages(action, state))
        for (action, state), count in hosts_at.items()
    )


def estimate(
    stages_by_wave: Mapping[int, tuple[str, ...]],
    medians: Mapping[str, float],
    planned_s: Mapping[int, float],
    started_waves: set[int],
    shared_s: float = 0.0,
) -> Estimate:
    """Seconds to completion and how it was obtained.

    A wave whose stages were all measured costs their medians (`measured`). A wave not yet started
    with an unmeasured stage falls back to the plan's own estimate for it (`plan`). Otherwise only the
    measured stages count and the figure is a lower bound (`partial`, with the stages it lacks). The
    whole is the longest wave, or `shared_s` (the remaining work over the workers) when more.
    """
    basis = "measured" if stages_by_wave else "done"
    missing: set[str] = set()
    per_wave: dict[int, float] = {}
    for wave, stages in sorted(stages_by_wave.items()):
        unmeasured = [s for s in stages if s not in medians]
        if not unmeasured:
            per_wave[wave] = sum(medians[s] for s in stages)
        elif wave not in started_waves and planned_s.get(wave):
            per_wave[wave] = planned_s[wave]
            basis = "plan" if basis == "measured" else basis
        else:
            per_wave[wave] = sum(medians[s] for s in stages if s in medians)
            missing.update(unmeasured)
            basis = "partial"
    return Estimate(
        eta_s=round(max(max(per_wave.values(), default=0.0), shared_s if per_wave else 0.0), 1),
        basis=basis,
        unmeasured_stages=[s for s in lifecycle.STAGES if s in missing],
        per_wave_s=per_wave,
    )
