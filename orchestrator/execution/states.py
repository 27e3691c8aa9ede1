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

REBUILD = ("isolate", "collect", "wipe", "reimage", "restore", "validate", "reconnect")
VERIFY = ("validate", "harden", "reconnect")
PATHS = {"rebuild": REBUILD, "verify": VERIFY}
# The order stages run in inside a wave: both paths meet at validate and reconnect.
STAGE_ORDER = tuple(s.name for s in lifecycle.STAGES)
REBUILD_ONLY = frozenset(REBUILD) - frozenset(VERIFY)

ACTIVE = {
    "isolate": "isolating",
    "collect": "collecting",
    "wipe": "wiping",
    "reimage": "reimaging",
    "restore": "restoring",
    "validate": "validating",
    "harden": "hardening",
    "reconnect": "reconnecting",
}
DONE = {
    "isolate": "isolated",
    "collect": "collected",
    "wipe": "wiped",
    "reimage": "reimaged",
    "restore": "restored",
    "validate": "validated",
    "harden": "hardened",
    "reconnect": "recovered",
}
START_STATES = frozenset({"new", "planned"})
FAILED = "failed"
RECOVERED = "recovered"
# Containment: the first stages of the rebuild path, run for every infected host at once right after
# approval, whatever its wave, tier or dependencies (an infected host must not wait on the network).
CONTAIN = ("isolate", "collect")
# Rebuilt (or verified) and validated, still isolated: what it depends on is not recovered yet. Only
# reconnect follows; dependencies gate the service, never the rebuild work.
AWAITING = "awaiting-dependencies"
# Stages a host can pass without a connection to it: an out-of-band rebuild (a person decided to
# rebuild an unreachable host through its reimage method) skips the others, with the reason recorded.
OUT_OF_BAND = frozenset({"reimage"})
_STAGE_OF = {state: stage for stage, state in (*ACTIVE.items(), *DONE.items())}


@dataclass(frozen=True)
class Position:
    """Where a host stands on its path: the next stage to run, and whether it is resuming one."""

    next_stage: str | None  # None: the path is finished
    resuming: bool  # the stage was begun (or failed) before: this run repeats it


def path_for(action: str, protected: bool) -> tuple[str, ...]:
    """Protected hosts take the verify path whatever the plan says: checked here, at execution."""
    if protected or action in ("protected", "verify"):
        return VERIFY
    if action == "rebuild":
        return REBUILD
    raise RefusedError(f"action {action!r} is not executable (only rebuild, verify, protected)")


def position(host: Host, path: tuple[str, ...]) -> Position:
    """The next stage of `host` on `path`, from its state alone (the database is the truth after a crash)."""
    state = host.state
    if state in START_STATES:
        return Position(path[0], resuming=False)
    if state == RECOVERED and path[-1] == "reconnect":
        return Position(None, resuming=False)
    if state == AWAITING:
        return Position("reconnect", resuming=False)
    stage = host.stage if state == FAILED else _STAGE_OF.get(state)
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
    if host.state != DONE[stage_done] or stage_done not in ("validate", "harden"):
        raise RefusedError(f"host {host.name} is {host.state}: only a validated host awaits its dependencies")
    _set(host, AWAITING, stage_done, reason[:2000])


def skip(host: Host, stage: str, path: tuple[str, ...], reason: str) -> None:
    """Pass `stage` without running it (begin and finish in the caller's one transaction), the reason
    kept on the host until its next change and on the StageRun the caller writes."""
    begin(host, stage, path)
    _set(host, DONE[stage], stage, reason[:2000])


def restore_begun(host: Host, path: tuple[str, ...]) -> bool:
    """True once the host has entered restore or anything after it on the rebuild path."""
    if path is not REBUILD or host.state in START_STATES:
        return False
    stage = host.stage if host.state in (FAILED, AWAITING) else _STAGE_OF.get(host.state)
    return stage in REBUILD and REBUILD.index(stage) >= REBUILD.index("restore")


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
