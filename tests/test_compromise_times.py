"""Compromise times are checked before they choose a restore point: the rules on their own, then the
engine over real ansible-runner runs of the toy playbooks with a real restic repository (a host whose
time is older than its oldest backup, or missing, is held for a person before anything destructive,
the rest of its wave goes on, and a person's decision releases it), and the plan's holds through the
real CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.execution import decisions, engine
from orchestrator.inventory import Host as InventoryHost
from orchestrator.planning import compromise
from orchestrator.planning.model import Verdict
from orchestrator.planning.store import PlanView, approval_mac
from orchestrator.store import Store
from orchestrator.store.models import (
    AuditEntry,
    Host,
    Plan,
    PlanMember,
    PlanWave,
    RestorePoint,
    TriageResult,
    TriageRun,
    utcnow,
)
from tests.conftest import Cli
from tests.execution_support import approved_plan, stages_run, toy_inventory, toy_playbooks
from tests.test_planning_cli import FLEET, triage

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RULES = compromise.TimeRules()


def test_future_missing_and_outlying_times_are_problems() -> None:
    fleet = [NOW - timedelta(days=d) for d in (1, 1.5, 2, 2, 3, 4)]
    bounds = compromise.fleet_bounds(fleet, NOW, RULES)
    assert bounds is not None
    assert compromise.problem(NOW - timedelta(days=2), NOW, bounds, None, RULES) is None
    assert "in the future" in str(compromise.problem(NOW + timedelta(days=1), NOW, bounds, None, RULES))
    assert compromise.problem(NOW + timedelta(minutes=2), NOW, bounds, None, RULES) is None  # clock skew
    assert "far outside the fleet" in str(
        compromise.problem(datetime(2001, 1, 1, tzinfo=UTC), NOW, bounds, None, RULES)
    )
    assert "oldest backup" in str(
        compromise.problem(NOW - timedelta(days=3), NOW, bounds, NOW - timedelta(days=2), RULES)
    )
    assert "no compromise time" in str(compromise.problem(None, NOW, bounds, None, RULES))
    # too few hosts to speak for the fleet: no fleet rule, the others still hold
    assert compromise.fleet_bounds(fleet[:2], NOW, RULES) is None
    # one liar (or three) does not move the median: the honest hosts stay inside
    liars = [datetime(2001, 1, 1, tzinfo=UTC)] * 3
    bounds = compromise.fleet_bounds([*fleet, *liars], NOW, RULES)
    assert bounds is not None and bounds[0] <= NOW - timedelta(days=4) and bounds[0] > liars[0]
    # a wide window (a long dwell) is the operator's to give
    wide = compromise.TimeRules(window=timedelta(days=400))
    assert (
        compromise.problem(
            datetime(2026, 1, 1, tzinfo=UTC), NOW, compromise.fleet_bounds(fleet, NOW, wide), None, wide
        )
        is None
    )


def _host(name: str, restore: str = "restic", protected: bool = False) -> InventoryHost:
    return InventoryHost(
        name, "127.0.0.1", None, None, "ssh", "linux", 2, "server", [], [], protected, None, "lab", restore,
        100, [], [], None,
    )  # fmt: skip


def test_only_restored_hosts_wait_and_a_decision_replaces_the_estimate() -> None:
    hosts = [_host("a"), _host("b"), _host("c"), _host("img", restore="none"), _host("bkp", protected=True)]
    verdicts = {n: Verdict("infected") for n in ("a", "b", "c", "img", "bkp")}
    times = {"a": NOW - timedelta(days=2), "b": NOW + timedelta(days=3), "c": None, "img": None, "bkp": None}
    out = compromise.annotate(hosts, verdicts, times, {}, {}, NOW, RULES)
    assert out["a"].time_hold is None
    assert "in the future" in str(out["b"].time_hold) and "host restore-point b" in str(out["b"].time_hold)
    assert "no compromise time" in str(out["c"].time_hold)
    assert out["img"].time_hold is None and out["bkp"].time_hold is None  # their time chooses nothing
    decided = {"b": compromise.Decided(NOW - timedelta(days=2), "alice", "EDR says 28 Nov", False, NOW)}
    out = compromise.annotate(hosts, verdicts, times, decided, {}, NOW, RULES)
    assert out["b"].time_hold is None and "alice set it: EDR says 28 Nov" in str(out["b"].time_note)


def test_plan_holds_the_host_visibly_and_a_decision_schedules_it(cli: Cli, tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yml"
    fleet.write_text(FLEET)
    verdicts = {"dc1": "infected", "dc2": "clean", "bkp1": "clean", "db1": "infected", "app1": "suspicious",
                "app2": "suspicious", "ws1": "clean", "ws2": "clean", "ws3": "clean", "ws4": "clean"}  # fmt: skip
    run = triage(cli.db, verdicts)
    store = Store.open(str(cli.db))
    with store.write() as session:  # db1's only indicator was backdated to 2001
        row = session.exec(
            select(TriageResult).where(TriageResult.run_id == run, TriageResult.host_name == "db1")
        ).one()
        row.compromise_time = datetime(2001, 1, 1, tzinfo=UTC)
        session.add(row)
    store.close()
    doc = cli.json("plan", "-i", str(fleet))
    assert doc["summary"]["hold"] >= 1
    shown = cli("plan", "show")
    assert shown.exit_code == 0
    assert "db1" in shown.stdout and "far outside the fleet" in shown.stdout
    status = cli("status", "db1")
    assert status.exit_code == 0 and "far outside the fleet" in status.stdout
    decided = cli(
        "host", "restore-point", "db1", "--before", "2026-01-01T00:00:00Z", "--why", "backup log review"
    )
    assert decided.exit_code == 0, decided.stderr
    assert cli("plan", "-i", str(fleet)).exit_code == 0
    again = cli("plan", "show").stdout
    assert "far outside the fleet" not in again and "backup log review" in again
    with Store.open(str(cli.db)).read() as session:
        entry = session.exec(select(AuditEntry).where(AuditEntry.command == "host restore-point")).one()
    assert entry.host_name == "db1" and entry.details["why"] == "backup log review"
    assert cli("host", "restore-point", "db1", "--why", "x").exit_code == 2  # neither --before nor --accept
    future = cli("host", "restore-point", "db1", "--before", "2099-01-01", "--why", "x")
    assert future.exit_code == 2 and "future" in future.stderr
    assert cli("host", "restore-point", "db1", "--before", "yesterday", "--why", "x").exit_code == 2


# --- the engine, with a real restic repository -------------------------------------------------------

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
    assert stages_run(inv, "a") == [] and stages_run(inv, "n") == []  # nothing destructive ran
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
