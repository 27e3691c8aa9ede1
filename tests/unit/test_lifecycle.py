"""The stage table is the one definition the engine, the state machine and the planner read."""

from __future__ import annotations

from orchestrator import lifecycle
from orchestrator.execution import states
from orchestrator.package_data import package_path
from orchestrator.planning import durations


def test_every_stage_has_its_playbook_and_states() -> None:
    playbooks = package_path("orchestrator", "playbooks")
    for stage in lifecycle.STAGES:
        assert (playbooks / stage.playbook).is_file(), stage.playbook
        assert stage.name in states.ACTIVE and stage.name in states.DONE
    assert set(states.REBUILD) | set(states.VERIFY) == set(lifecycle.BY_NAME)


def test_stage_behaviour_is_read_from_the_table() -> None:
    assert tuple(s.name for s in lifecycle.STAGES) == states.STAGE_ORDER
    assert {s.name for s in lifecycle.STAGES if s.destructive} == {"isolate", "wipe", "reimage", "restore"}
    assert durations.METHOD_STAGES == {"reimage": "reimage_method", "restore": "restore_method"}
    assert [s.name for s in lifecycle.STAGES if s.evidence] == ["collect"]
    assert [s.name for s in lifecycle.STAGES if s.retriage] == ["validate"]


def test_a_lab_reimage_runs_on_the_controller_and_others_through_their_node() -> None:
    class Host:
        reimage_method = "lab"
        restore_method = "restic"

    reimage, restore = lifecycle.stage("reimage"), lifecycle.stage("restore")
    assert reimage.on_controller(Host())
    Host.reimage_method = "pxe"
    assert not reimage.on_controller(Host())
    assert not restore.on_controller(Host())
    assert not lifecycle.stage("wipe").on_controller(Host())
