"""How many hosts the engine works on at once: one definition, read by the engine as it runs and by the
planner as it estimates, so the plan's figures cannot drift from what a run does.

A stage run hands its hosts to one ansible-playbook with `forks` workers: a worker takes the next host
as soon as it is free, so a stage over many hosts lasts about as long as list scheduling of their
stage times on `forks` workers (exactly `ceil(n / forks)` times the stage when every host takes the same
time). Containment runs its hosts in batches of `contain_forks` (default: `forks`), one stage run per
batch, every isolate batch before the first collect batch.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import TypeVar

DEFAULT_FORKS = 50  # `orchestrator run --forks` and the planner's estimate
T = TypeVar("T")


def contain_batch(forks: int, contain_forks: int | None) -> int:
    """Hosts per containment stage run."""
    return contain_forks or forks


def batches(hosts: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """`hosts` in order, `size` at a time: containment's stage runs."""
    for start in range(0, len(hosts), size):
        yield hosts[start : start + size]


def stage_run_seconds(seconds: Sequence[float], forks: int) -> float:
    """How long one stage run lasts when its hosts take `seconds` each: `forks` workers, each taking
    the next host (in the order given) when free."""
    if len(seconds) <= forks:
        return max(seconds, default=0.0)
    workers = [0.0] * forks
    for s in seconds:
        heapq.heapreplace(workers, workers[0] + s)
    return max(workers)
