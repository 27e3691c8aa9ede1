"""The engine over real ansible-runner runs of the toy playbooks with a real restic repository: a host
whose compromise time is older than its oldest backup, or missing, is held for a person before anything
destructive, the rest of its wave goes on, and a person's decision releases it."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.execution import engine
from orchestrator.planning import decisions
from orchestrator.store import Store
from orchestrator.store.models import (
    Host,
    Plan,
    PlanMember,
    PlanWave,
    RestorePoint,
    TriageResult,
    TriageRun,
    utcnow,
)
from orchestrator.store.plans import PlanView, approval_mac
from tests.lab.execution_support import approved_plan, stages_run, toy_inventory, toy_playbooks

pytestmark_restic = pytest.mark.skipif(shutil.which("restic") is None, reason="needs restic")
SNAPSHOT = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)


def _repo(base: Path, hosts: list[str]) -> tuple[Path, Path]:
    base.mkdir()
    repo, password = base / "repo", base / "password"
    password.write_text("correct horse battery staple\n")
    password.chmod(0o600)
    restic = ["restic", "--no-cache", "-r", str(repo), "--password-file", str(password), "--quiet"]
    subprocess.run([*restic, "init"], check=True)
    data = base / "data"
    data.mkdir()
    (data / "report.txt").write_text("quarterly report\n")
    for host in hosts:
        subprocess.run(
            [*restic, "backup", "--host", host, "--time", SNAPSHOT.strftime("%Y-%m-%d %H:%M:%S"), str(data)],
            check=True,
            env={**os.environ, "TZ": "UTC"},
        )
    return repo, password


def _with_triage(store: Store, times: dict[str, datetime | None]) -> None:
    """The approved plan's triage run, with each host's compromise time (re-approved: the run id is
    part of what was approved)."""
    with store.write() as session:
        run = TriageRun(operator="tester", finished_at=utcnow(), host_count=len(times))
        session.add(run)
        session.flush()
        for host, when in times.items():
            session.add(TriageResult(run_id=run.id, host_name=host, verdict="infected", compromise_time=when))
        plan = session.exec(select(Plan).where(Plan.status == "approved")).one()
        plan.triage_run_id = run.id
        waves = list(session.exec(select(PlanWave).where(PlanWave.plan_id == plan.id)))
        rows = list(session.exec(select(PlanMember).where(PlanMember.plan_id == plan.id)))
        plan.approved_hash = plan.content_hash = PlanView(plan, waves, rows).content_hash()
        plan.approval_mac = approval_mac(session, plan, create=True)
        session.add(plan)


@pytestmark_restic
def test_a_backdated_host_is_held_before_the_wipe_the_wave_goes_on_and_a_decision_releases_it(
    tmp_path: Path,
) -> None:
    repo, password = _repo(tmp_path / "restic", ["a", "b", "n"])
    restic_vars = {"recovery_restore_method": "restic", "recovery_restic_repository": str(repo),
                   "recovery_restic_password_file": str(password)}  # fmt: skip
    hosts = {
        "ev": {"group": "evidence_store", "recovery_protected": True},
        "a": restic_vars,  # backdated: older than its only snapshot
        "b": restic_vars,  # honest
        "n": restic_vars,  # no time at all: never the fleet's
        "c": {},
    }
    inv = toy_inventory(tmp_path / "inv", hosts)
    store = Store.open(str(tmp_path / "state.db"))
    members = [("a", "rebuild", 1), ("b", "rebuild", 1), ("n", "rebuild", 1), ("c", "rebuild", 1),
               ("ev", "protected", None)]  # fmt: skip
    approved_plan(store, inv, members)
    _with_triage(store, {"a": datetime(2001, 1, 1, tzinfo=UTC), "b": SNAPSHOT + timedelta(days=5), "n": None,
                         "c": None})  # fmt: skip
    options = dict(
        inventory=[str(inv)],
        operator="tester",
        runs_dir=tmp_path / "runs",
        playbooks=toy_playbooks(tmp_path / "playbooks"),
        validator=lambda hs: {h.name: (True, "clean") for h in hs},
        scanner=lambda _scratch: [],
        max_fail_percentage=25.0,  # 2 held of 4 would be 50 %: holds are not failures
    )
    report = engine.run(store, engine.RunOptions(**options))
    outcome = {h.name: h for h in report.hosts.values()}
    assert report.stopped is None
    assert outcome["b"].outcome == "recovered" and outcome["c"].outcome == "recovered"
    assert outcome["a"].outcome == "held" and "older than the oldest backup" in str(outcome["a"].reason)
    assert outcome["n"].outcome == "held" and "no compromise time" in str(outcome["n"].reason)
    # Contained first like every infected host (isolate, collect: issue 14), nothing destructive after.
    assert stages_run(inv, "a") == ["isolate", "collect"] and stages_run(inv, "n") == ["isolate", "collect"]
    with store.read() as session:
        rows = {h.name: h for h in session.exec(select(Host))}
        points = {p.host_name: p for p in session.exec(select(RestorePoint))}
    assert rows["a"].state == "failed" and "held for a person" in str(rows["a"].state_reason)
    assert points["b"].snapshot_time is not None

    decisions.set_restore_point(store, "alice", "a", SNAPSHOT + timedelta(hours=1), "backup log", {})
    report = engine.run(store, engine.RunOptions(**options))
    outcome = {h.name: h for h in report.hosts.values()}
    assert outcome["a"].outcome == "recovered", outcome["a"]
    assert outcome["n"].outcome == "held"  # b's time never became n's
    with store.read() as session:
        point = session.exec(select(RestorePoint).where(RestorePoint.host_name == "a")).one()
    assert point.cutoff is not None and point.cutoff.replace(tzinfo=UTC) == SNAPSHOT + timedelta(hours=1)
