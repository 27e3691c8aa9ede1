"""The host state machine: every allowed path walks, every forbidden transition is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.errors import RefusedError
from orchestrator.execution import states
from orchestrator.store.models import Host


def host(state: str = "planned", stage: str | None = None, protected: bool = False) -> Host:
    return Host(name="h1", state=state, stage=stage, protected=protected)


@pytest.mark.parametrize("path", [states.REBUILD, states.VERIFY])
def test_a_path_walks_to_recovered(path: tuple[str, ...]) -> None:
    h = host()
    for stage in path:
        assert states.position(h, path).next_stage == stage
        states.begin(h, stage, path)
        states.finish(h, stage)
    assert h.state == "recovered"
    assert states.position(h, path).next_stage is None
    assert h.version == 2 * len(path)


def test_a_crash_inside_a_stage_resumes_that_stage() -> None:
    h = host()
    states.begin(h, "isolate", states.REBUILD)
    pos = states.position(h, states.REBUILD)
    assert pos == states.Position("isolate", resuming=True)
    states.begin(h, "isolate", states.REBUILD)  # the rerun re-enters the same stage
    assert h.state == "isolating"


def test_failed_retries_the_same_stage_only() -> None:
    h = host("wiped", "wipe")
    states.begin(h, "reimage", states.REBUILD)
    states.fail(h, "reimage", "unreachable")
    assert (h.state, h.stage, h.state_reason) == ("failed", "reimage", "unreachable")
    with pytest.raises(RefusedError):
        states.begin(h, "wipe", states.REBUILD)
    with pytest.raises(RefusedError):
        states.begin(h, "restore", states.REBUILD)
    states.begin(h, "reimage", states.REBUILD)


@pytest.mark.parametrize(
    "state,stage",
    [
        ("restoring", "restore"),
        ("failed", "restore"),
        ("restored", "restore"),
        ("validating", "validate"),
        ("recovered", "reconnect"),
    ],
)
def test_never_back_to_wipe_or_collect_once_restore_began(state: str, stage: str) -> None:
    h = host(state, stage)
    assert states.restore_begun(h, states.REBUILD)
    for earlier in ("isolate", "collect", "wipe", "reimage"):
        with pytest.raises(RefusedError):
            states.begin(h, earlier, states.REBUILD)


def test_operator_reset_is_the_only_way_back_and_is_explicit() -> None:
    h = host("failed", "validate")
    assert states.reset(h, "wipe", states.REBUILD) == "collected"
    assert h.state_reason == "reset to wipe by operator"
    states.begin(h, "wipe", states.REBUILD)


def test_protected_hosts_only_take_the_verify_path() -> None:
    h = host(protected=True)
    assert states.path_for("rebuild", protected=True) is states.VERIFY
    for stage in ("isolate", "collect", "wipe", "reimage", "restore"):
        with pytest.raises(RefusedError, match="protected"):
            states.begin(h, stage, states.REBUILD)
        with pytest.raises(RefusedError, match="protected"):
            states.reset(h, stage, states.REBUILD)
    states.begin(h, "validate", states.VERIFY)


def test_a_state_from_the_other_path_needs_a_person() -> None:
    with pytest.raises(RefusedError, match="host reset h1 --to isolate"):
        states.position(host("hardened", "harden"), states.REBUILD)


def test_hold_is_not_executable() -> None:
    with pytest.raises(RefusedError):
        states.path_for("hold", protected=False)


_ALL_STATES = ["new", "planned", "failed", "recovered", *states.ACTIVE.values(), *states.DONE.values()]


@given(
    state=st.sampled_from(_ALL_STATES),
    stage=st.sampled_from(states.STAGE_ORDER),
    target=st.sampled_from(states.STAGE_ORDER),
    path=st.sampled_from([states.REBUILD, states.VERIFY]),
    protected=st.booleans(),
)
def test_begin_only_moves_forward_or_repeats(state, stage, target, path, protected) -> None:
    h = host(state, stage if state == "failed" else None, protected)
    try:
        before = states.position(h, path)
    except RefusedError:
        before = None
    try:
        states.begin(h, target, path)
    except RefusedError:
        return
    assert before is not None and before.next_stage == target
    assert not (protected and target in states.REBUILD_ONLY)
    assert target in path


def test_an_awaiting_host_keeps_its_parking_time_while_its_reason_follows_the_dependencies() -> None:
    h = host()
    for stage in states.REBUILD[:-1]:
        states.begin(h, stage, states.REBUILD)
        states.finish(h, stage)
    states.await_dependencies(h, states.REBUILD[-2], "awaiting dependencies: a (restoring), b (new)")
    parked_at, version = h.state_changed_at, h.version
    assert not states.still_awaiting(h, "awaiting dependencies: a (restoring), b (new)")
    assert h.version == version
    assert states.still_awaiting(h, "awaiting dependencies: b (failed)")
    assert h.state == "awaiting-dependencies" and h.state_reason == "awaiting dependencies: b (failed)"
    assert h.state_changed_at == parked_at and h.version == version + 1
    states.begin(h, states.REBUILD[-1], states.REBUILD)
    with pytest.raises(RefusedError):
        states.still_awaiting(h, "awaiting dependencies: b (failed)")
