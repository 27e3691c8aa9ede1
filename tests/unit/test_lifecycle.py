"""The lifecycle is the one definition the engine, the state machine, the planner and the reports read:
one data file per stage, found by listing the folder."""

from __future__ import annotations

import pytest

from orchestrator import lifecycle
from orchestrator.errors import OrchestratorError, RefusedError
from orchestrator.execution import states
from orchestrator.package_data import package_path
from orchestrator.planning import durations
from orchestrator.reporting import lifecycle as report_lifecycle


def test_every_stage_file_has_its_playbook_and_states() -> None:
    playbooks = package_path("orchestrator", "playbooks")
    files = sorted(p.stem for p in package_path("orchestrator", "lifecycle", "stages").glob("*.yml"))
    assert sorted(lifecycle.BY_NAME) == files
    for stage in lifecycle.STAGES:
        assert (playbooks / stage.playbook).is_file(), stage.playbook
        assert stage.name in states.ACTIVE and stage.name in states.DONE
    assert set(states.REBUILD) | set(states.VERIFY) == set(lifecycle.BY_NAME)


def test_paths_and_states_come_from_the_stage_files() -> None:
    assert lifecycle.REBUILD_STAGES == (
        "isolate",
        "collect",
        "wipe",
        "reimage",
        "restore",
        "validate",
        "reconnect",
    )
    assert lifecycle.VERIFY_STAGES == ("validate", "harden", "reconnect")
    assert lifecycle.CONTAIN == ("isolate", "collect")
    assert lifecycle.RECOVERED == "recovered" == lifecycle.DONE["reconnect"]
    assert lifecycle.path_for("rebuild", protected=True) is lifecycle.VERIFY_STAGES
    assert lifecycle.path_for("protected", protected=False) is lifecycle.VERIFY_STAGES
    with pytest.raises(RefusedError, match="not executable"):
        lifecycle.path_for("hold", protected=False)
    # Reporting and planning read the same table, not a copy.
    assert report_lifecycle.STAGES is lifecycle.STAGE_ORDER
    assert durations.STAGES is lifecycle.STAGE_ORDER
    assert durations.STAGES_BY_ACTION["protected"] is lifecycle.VERIFY_STAGES


def test_stage_behaviour_is_read_from_the_table() -> None:
    assert {s.name for s in lifecycle.STAGES if s.destructive} == {"isolate", "wipe", "reimage", "restore"}
    assert {s.name for s in lifecycle.STAGES if s.own_connection} == {"isolate", "collect", "wipe"}
    assert durations.METHOD_STAGES == {"reimage": "reimage_method", "restore": "restore_method"}
    assert [s.name for s in lifecycle.STAGES if "evidence" in s.records] == ["collect"]
    assert [s.name for s in lifecycle.STAGES if "retriage" in s.records] == ["validate"]
    assert [s.name for s in lifecycle.STAGES if "restore_point" in s.records] == ["restore"]


def test_default_durations_are_each_stages_own_figure() -> None:
    shipped = durations.load()
    assert shipped.file == durations.SHIPPED
    assert shipped.stage_seconds("collect", None) == 30 * 60
    assert shipped.stage_seconds("reimage", "lab") == 2 * 60
    assert shipped.stage_seconds("reimage", "unknown-method") == 45 * 60
    assert shipped.host_seconds("verify", None, None) == (20 + 15 + 5) * 60


def test_a_stage_file_that_does_not_say_what_the_engine_needs_is_refused() -> None:
    with pytest.raises(OrchestratorError, match=r"stages/x\.yml"):
        lifecycle._stage("x", {"order": 1, "states": ["x-ing"], "paths": ["rebuild"]})
    with pytest.raises(OrchestratorError, match="records are"):
        lifecycle._stage("x", {"order": 1, "states": ["a", "b"], "paths": ["rebuild"], "records": ["photos"]})
    with pytest.raises(OrchestratorError, match="only"):
        lifecycle._stage("x", {"order": 1, "states": ["a", "b"], "paths": ["rebuild"], "colour": "red"})
    with pytest.raises(OrchestratorError, match="report_column"):
        lifecycle._stage("x", {"order": 1, "states": ["a", "b"], "paths": ["rebuild"], "report_column": 3})


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


def test_one_ranking_of_verdicts_worst_first() -> None:
    assert sorted(lifecycle.WORST_FIRST) == sorted(lifecycle.VERDICTS)
    assert lifecycle.WORST_FIRST[0] == lifecycle.INFECTED and lifecycle.WORST_FIRST[-1] == lifecycle.CLEAN
    assert lifecycle.worse(lifecycle.SUSPICIOUS, lifecycle.CLEAN)
    assert lifecycle.worse(lifecycle.INFECTED, lifecycle.SUSPICIOUS)
    assert not lifecycle.worse(lifecycle.CLEAN, lifecycle.UNREACHABLE)
    assert not lifecycle.worse(lifecycle.ERROR, lifecycle.ERROR)
    assert not lifecycle.worse("not a verdict", lifecycle.CLEAN)  # ranks as clean


def test_the_reports_stage_times_are_named_by_the_stage_files() -> None:
    from orchestrator.reporting.report import COLUMNS

    named = {s.name: s.report_column for s in lifecycle.STAGES if s.report_column}
    assert named == {"isolate": "isolated_at", "collect": "evidence_collected_at", "restore": "restored_at"}
    start = COLUMNS.index("recovery_started_at")
    assert COLUMNS[start : start + 7] == (
        "recovery_started_at",
        "isolated_at",
        "containment",
        "time_to_containment_s",
        "evidence_collected_at",
        "restored_at",
        "recovered_at",
    )
