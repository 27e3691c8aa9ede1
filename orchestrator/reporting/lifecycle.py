"""How reporting reads the host state machine: which bucket a state counts in, which stage it belongs
to, and which stages a host still has ahead of it (for the time-to-completion estimate).

The states, stages and paths are `orchestrator.lifecycle`'s own; this module only groups them
the way the crisis cell talks about them.
"""

from __future__ import annotations

from orchestrator import lifecycle
from orchestrator.errors import RefusedError

STAGES = lifecycle.STAGE_ORDER
ACTIVE_STATE = {state: stage for stage, state in lifecycle.ACTIVE.items()}
DONE_STATE = {state: stage for stage, state in lifecycle.DONE.items() if state != lifecycle.RECOVERED}
# The buckets of `orchestrator status`, in display order ("other": a state this version does not know).
CATEGORIES = ("pending", "in_progress", "awaiting", "recovered", "failed", "hold", "protected", "other")
# States that wait for a person; a protected host whose triage says infected waits too.
NEEDS_PERSON = (lifecycle.FAILED, "hold")
# Every state in the order a host passes through it, for tables and the --state option.
STATE_ORDER = (
    "new",
    "planned",
    *(s for stage in STAGES for s in (lifecycle.ACTIVE[stage], lifecycle.DONE[stage])),
    lifecycle.AWAITING,
    lifecycle.FAILED,
    "hold",
    "protected",
)
PENDING_STATES = tuple(sorted(lifecycle.START_STATES))
IN_PROGRESS_STATES = (*ACTIVE_STATE, *DONE_STATE)


# Plan actions that have their own bucket while the host has not started: `hold` waits for a person,
# `protected` will only be verified (in its wave). The host's state stays `new` or `planned`.
WAITING_ACTIONS = ("hold", "protected")


def category(state: str, action: str | None = None) -> str:
    """The bucket of a host in `state` whose current plan gives it `action`."""
    if state in lifecycle.START_STATES:
        return action if action in WAITING_ACTIONS else "pending"
    if state in ACTIVE_STATE or state in DONE_STATE:
        return "in_progress"
    if state == lifecycle.AWAITING:
        return "awaiting"  # rebuilt and validated, isolated until its dependencies are recovered
    if state in (lifecycle.RECOVERED, lifecycle.FAILED, "hold", "protected"):
        return state
    return "other"


def stage_of(state: str) -> str | None:
    """The stage a host is in or has just finished."""
    return ACTIVE_STATE.get(state) or DONE_STATE.get(state)


def remaining_stages(action: str | None, state: str, protected: bool = False) -> tuple[str, ...]:
    """Stages still to run for a host on its plan path; a stage in progress counts as a whole one.

    Hosts that wait for a person (failed, held) and hosts the plan does not run have none: no
    estimate can say when a person will act. Protected hosts take the verify path in their wave.
    """
    try:
        path = lifecycle.path_for(action or "", protected)
    except RefusedError:
        return ()
    if state in lifecycle.START_STATES:
        return path
    if state in ACTIVE_STATE:
        return _from(path, ACTIVE_STATE[state], include=True)
    if state in DONE_STATE:
        return _from(path, DONE_STATE[state], include=False)
    if state == lifecycle.AWAITING:
        return path[-1:]  # reconnect
    return ()


def _from(path: tuple[str, ...], stage: str, include: bool) -> tuple[str, ...]:
    position = STAGES.index(stage)
    return tuple(s for s in path if STAGES.index(s) > position or (include and s == stage))
