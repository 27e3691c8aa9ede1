"""The host state machine: the one place that says which transition is allowed.

Every state change the engine makes goes through `begin`, `finish`, `fail` or `reset`, inside the
write transaction that records it, so a rule checked here holds whatever the plan file, a crash or a
rerun says. The two rules that protect people, not just data:

- once a host's `restore` has begun it never goes back to `wipe` (nor to `collect`): only an
  operator's audited `reset` moves it backwards;
- a protected host (backup server, evidence store) only ever takes the verify path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator import lifecycle
from orchestrator.errors import RefusedError

if TYPE_CHECKING:  # the command line reads the stage names without loading the database layer
    from orchestrator.store.models import Host

# The vocabulary is the lifecycle's: these names keep the machine's own code short.
REBUILD = lifecycle.REBUILD_STAGES
VERIFY = lifecycle.VERIFY_STAGES
STAGE_ORDER = lifecycle.STAGE_ORDER
REBUILD_ONLY = lifecycle.REBUILD_ONLY
ACTIVE = lifecycle.ACTIVE
DONE = lifecycle.DONE
START_STATES = lifecycle.START_STATES
FAILED = lifecycle.FAILED
RECOVERED = lifecycle.RECOVERED
AWAITING = lifecycle.AWAITING
CONTAIN = lifecycle.CONTAIN
path_for = lifecycle.path_for


@dataclass(frozen=True)
class Position:
    """Where a host stands on its path: the next stage to run, and whether it is resuming one."""

    next_stage: str | None  # None: the path is finished
    resuming: bool  # the stage was begun (or failed) before: this run repeats it


def position(host: Host, path: tuple[str, ...]) -> Position:
    """The next stage of `host` on `path`, from its state alone (the database is the truth after a crash)."""
    state = host.state
    if state in START_STATES:
        return Position(path[0], resuming=False)
    if state == RECOVERED and path[-1] == STAGE_ORDER[-1]:
        return Position(None, resuming=False)
    if state == AWAITING:
        return Position(path[-1], resuming=False)
    stage = host.stage if state == FAILED else lifecycle.stage_of(state)
    if stage is None or stage not in path:
        raise RefusedError(
            f"host {host.name} is in state {state!r}"
            + (f" (stage {host.stage})" if state == FAILED else "")
            + f", which is not on its {'rebuild' if path is REBUILD else 'verify'} path: "
            f"decide, then run 'orchestrator host reset {host.name} --to {path[0]}'"
        )
    if state == FAILED or state == ACTIVE[stage]:
        return Position(stage, resuming=True)
    index = path.index(stage) + 1
    return Position(path[index] if index < len(path) else None, resuming=False)


def check_begin(host: Host, stage: str, path: tuple[str, ...]) -> None:
    """Refuse any transition into `stage` that the machine does not allow."""
    if host.protected and stage in REBUILD_ONLY:
        raise RefusedError(f"host {host.name} is protected: it never enters {stage!r}")
    if stage not in path:
        raise RefusedError(f"stage {stage!r} is not on host {host.name}'s path")
    expected = position(host, path)
    if expected.next_stage != stage:
        raise RefusedError(
            f"host {host.name} ({host.state}) cannot begin {stage!r}: "
            + (
                f"its next stage is {expected.next_stage!r}"
                if expected.next_stage
                else "its path is finished"
            )
        )


def _set(host: Host, state: str, stage: str | None, reason: str | None) -> None:
    host.state = state
    host.stage = stage
    host.state_reason = reason
    from orchestrator.store.models import utcnow  # loaded already: `host` is one of its rows

    host.state_changed_at = utcnow()
    host.version += 1


def begin(host: Host, stage: str, path: tuple[str, ...]) -> None:
    """Enter the stage's "-ing" state (committed before the playbook starts)."""
    check_begin(host, stage, path)
    _set(host, ACTIVE[stage], stage, None)


def finish(host: Host, stage: str) -> None:
    if host.state != ACTIVE[stage]:
        raise RefusedError(f"host {host.name} is {host.state}, not {ACTIVE[stage]}: cannot finish {stage!r}")
    _set(host, DONE[stage], stage, None)


def fail(host: Host, stage: str, reason: str) -> None:
    if host.state != ACTIVE[stage]:
        raise RefusedError(f"host {host.name} is {host.state}, not {ACTIVE[stage]}: cannot fail {stage!r}")
    _set(host, FAILED, stage, reason[:2000])


def await_dependencies(host: Host, stage_done: str, reason: str) -> None:
    """Park a host that finished everything before reconnect: it stays isolated until what it depends
    on is recovered (or a person releases it)."""
    if host.state != DONE[stage_done] or stage_done not in (REBUILD[-2], VERIFY[-2]):
        raise RefusedError(f"host {host.name} is {host.state}: only a validated host awaits its dependencies")
    _set(host, AWAITING, stage_done, reason[:2000])


def still_awaiting(host: Host, reason: str) -> bool:
    """A parked host's reason follows its dependencies as they recover (an operator reading "b
    (restoring)" long after b came back would chase the wrong host); the time it was parked stays.
    True if the reason changed."""
    if host.state != AWAITING:
        raise RefusedError(f"host {host.name} is {host.state}, not awaiting its dependencies")
    if host.state_reason == reason[:2000]:
        return False
    host.state_reason = reason[:2000]
    host.version += 1
    return True


def skip(host: Host, stage: str, path: tuple[str, ...], reason: str) -> None:
    """Pass `stage` without running it (begin and finish in the caller's one transaction), the reason
    kept on the host until its next change and on the StageRun the caller writes."""
    begin(host, stage, path)
    _set(host, DONE[stage], stage, reason[:2000])


def restore_begun(host: Host, path: tuple[str, ...]) -> bool:
    """True once the host has entered restore or anything after it on the rebuild path."""
    if path is not REBUILD or host.state in START_STATES:
        return False
    stage = host.stage if host.state in (FAILED, AWAITING) else lifecycle.stage_of(host.state)
    first = next(s for s in REBUILD if "restore_point" in lifecycle.stage(s).records)
    return stage in REBUILD and REBUILD.index(stage) >= REBUILD.index(first)


def reset(host: Host, to_stage: str, path: tuple[str, ...]) -> str:
    """An operator's decision to run `to_stage` next (audited by the caller). Returns the new state.

    This is the only way backwards, including back to wipe after restore began; it still never
    sends a protected host into a rebuild-only stage.
    """
    if host.protected and to_stage in REBUILD_ONLY:
        raise RefusedError(f"host {host.name} is protected: it can never be reset to {to_stage!r}")
    if to_stage not in path:
        raise RefusedError(f"stage {to_stage!r} is not on host {host.name}'s path ({', '.join(path)})")
    index = path.index(to_stage)
    state = "planned" if index == 0 else DONE[path[index - 1]]
    _set(host, state, path[index - 1] if index else None, f"reset to {to_stage} by operator")
    return state
