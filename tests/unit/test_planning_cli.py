"""`orchestrator plan`, `plan show | diff | approve | export` on real database files (PostgreSQL: tests/lab/test_postgresql.py),
with triage runs written straight into the real tables."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator import inventory
from orchestrator.errors import RefusedError
from orchestrator.execution.run_model import forks_for
from orchestrator.planning import Limits, document, durations
from orchestrator.planning import store as plan_store
from orchestrator.store import Store
from orchestrator.store.models import Plan, PlanWave, StageRun, TriageResult, TriageRun, utcnow
from orchestrator.store.plans import PlanView
from tests.conftest import HOSPITAL, Cli

FLEET = """\
all:
  children:
    dcs:
      hosts:
        dc1: {ansible_host: 127.77.0.1}
        dc2: {ansible_host: 127.77.0.2}
      vars: {recovery_tier: 0, recovery_priority: 10, recovery_site: north}
    backup:
      hosts:
        bkp1: {ansible_host: 127.77.0.3}
      vars: {recovery_tier: 0, recovery_protected: true, recovery_site: north}
    db:
      hosts:
        db1: {ansible_host: 127.77.0.4}
      vars: {recovery_tier: 1, recovery_depends_on: [dcs], recovery_site: north}
    app:
      hosts:
        app1: {ansible_host: 127.77.0.5}
        app2: {ansible_host: 127.77.0.6}
      vars: {recovery_tier: 1, recovery_priority: 20, recovery_depends_on: [db], recovery_site: south}
    ws:
      hosts:
        ws1: {ansible_host: 127.77.0.7}
        ws2: {ansible_host: 127.77.0.8}
        ws3: {ansible_host: 127.77.0.9}
        ws4: {ansible_host: 127.77.0.10}
      vars:
        recovery_role: workstation
        recovery_tier: 3
        recovery_depends_on: [app]
        recovery_site: north
        recovery_restore_method: none
  vars: {recovery_reimage_method: pxe, recovery_restore_method: restic}
"""

FIRST = {
    "dc1": "infected",
    "dc2": "clean",
    "bkp1": "clean",
    "db1": "infected",
    "app1": "clean",
    "app2": "suspicious",
    "ws1": "clean",
    "ws2": "infected",
    "ws3": "infected",
    "ws4": "unreachable",
}


@pytest.fixture
def fleet(tmp_path: Path) -> str:
    path = tmp_path / "fleet.yml"
    path.write_text(FLEET)
    return str(path)


def triage(db: str | Path, verdicts: dict[str, str], finished: bool = True) -> int:
    """A triage run as the triage engine records it."""
    store = Store.open(str(db))
    with store.write() as session:
        run = TriageRun(
            operator="tester", finished_at=utcnow() if finished else None, host_count=len(verdicts)
        )
        session.add(run)
        session.flush()
        for host, verdict in verdicts.items():
            reason = "ransom note found" if verdict == "infected" else None
            # Affected hosts date their compromise (two days ago, like the rest of the fleet): a
            # restored host without one waits for a person.
            when = utcnow() - timedelta(days=2) if verdict in ("infected", "suspicious") else None
            session.add(
                TriageResult(
                    run_id=run.id, host_name=host, verdict=verdict, reason=reason, compromise_time=when
                )
            )
        run_id = run.id
    store.close()
    assert run_id is not None
    return run_id


def audit_commands(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    rows = [r[0] for r in con.execute("SELECT command FROM audit_log ORDER BY id")]
    con.close()
    return rows


def approved_plan(db: Path) -> plan_store.PlanView:
    store = Store.open(str(db))
    try:
        with store.read() as session:
            return plan_store.load_approved_plan(session)
    finally:
        store.close()


def test_plan_show_approve_and_the_execution_gate(cli: Cli, fleet: str) -> None:
    run = triage(cli.db, FIRST)
    doc = cli.json("plan", "-i", fleet, "--capacity", "site:north=1")
    assert doc["plan"]["status"] == "draft" and doc["plan"]["triage_run_id"] == run
    assert doc["summary"] == {"hosts": 10, "rebuild": 5, "verify": 3, "hold": 1, "protected": 1, "waves": 1}
    # One wave without --max-wave-size (the run holds site:north=1 host by host), in plan order: tier
    # first (the domain controllers and the backup server), then a host after those it depends on
    # (db1 before the applications on it), then the longest first (a rebuild with a restore, 145
    # minutes after containment, before a verify's 40: app2 before app1; the workstations' 85 before
    # ws1's 40), then priority (dc2's 10 before bkp1's default).
    order = ["dc1", "dc2", "bkp1", "db1", "app2", "app1", "ws2", "ws3", "ws1"]
    assert [(w["tier"], w["hosts"]) for w in doc["waves"]] == [(0, order)]
    members = {m["host"]: m for m in doc["members"]}
    assert members["ws4"]["action"] == "hold" and members["ws4"]["wave"] is None
    assert members["bkp1"]["action"] == "protected"
    assert doc["estimate"]["lower_bound_s"] <= doc["estimate"]["total_s"]
    assert audit_commands(cli.db) == ["plan"]

    shown = cli.json("plan", "show")
    assert shown["plan"]["content_hash"] == doc["plan"]["content_hash"] and shown["members"] == doc["members"]
    with pytest.raises(RefusedError, match="no approved plan"):
        approved_plan(cli.db)

    result = cli("plan", "approve", "--by", "Dr Martin")
    assert result.exit_code == 0, result.stderr
    assert f"hash {doc['plan']['content_hash']}" in result.stdout
    assert audit_commands(cli.db) == ["plan", "plan approve"]
    view = approved_plan(cli.db)
    assert view.plan.approved_by == "Dr Martin" and view.plan.approved_hash == doc["plan"]["content_hash"]
    assert sorted(m.host_name for m in view.wave_members()[1]) == sorted(order)

    con = sqlite3.connect(cli.db)
    con.execute("UPDATE plan_member SET action = 'rebuild' WHERE host_name = 'bkp1'")
    con.commit()
    con.close()
    with pytest.raises(RefusedError, match="changed since Dr Martin approved it"):
        approved_plan(cli.db)
    assert cli.json("plan", "show")["plan"]["changed_since_approval"] is True
    assert "CHANGED SINCE APPROVAL" in cli("plan", "show").stdout


def test_a_held_host_gates_reconnection_only(cli: Cli, fleet: str) -> None:
    triage(cli.db, {**FIRST, "db1": "unreachable"})
    doc = cli.json("plan", "-i", fleet, "--capacity", "site:north=1")
    members = {m["host"]: m for m in doc["members"]}
    assert members["db1"]["action"] == "hold"
    assert (
        members["app1"]["action"] == "verify"
        and members["app1"]["reason"] == "clean; reconnects after db1 (unreachable)"
    )
    assert members["ws1"]["reason"] == "clean; reconnects after db1 (unreachable) via app1"
    # db1 on hold leaves the plan order; its dependants keep their places
    assert [w["hosts"] for w in doc["waves"]] == [["dc1", "dc2", "bkp1", "app2", "app1", "ws2", "ws3", "ws1"]]


def test_waves_are_the_plan_order_cut_by_the_wave_size(cli: Cli, fleet: str) -> None:
    triage(cli.db, FIRST)
    doc = cli.json("plan", "-i", fleet, "--capacity", "site:north=1", "--max-wave-size", "2")
    # The plan order (see test_plan_show_approve_and_the_execution_gate) two by two: capacities do not
    # shape waves, the run holds them (ws2 and ws3 share wave 4, and start one after the other).
    assert [w["hosts"] for w in doc["waves"]] == [
        ["dc1", "dc2"],
        ["bkp1", "db1"],
        ["app2", "app1"],
        ["ws2", "ws3"],
        ["ws1"],
    ]
    assert doc["plan"]["params"]["capacities"] == {"site:north": 1}


def test_plan_forks_pack_the_waves_and_are_kept_for_the_run(cli: Cli, fleet: str) -> None:
    triage(cli.db, FIRST)
    doc = cli.json("plan", "-i", fleet, "--max-wave-size", "3", "--forks", "2")
    # 9 scheduled hosts: waves of --max-wave-size 3 as given; the run starts hosts as its 2 workers free.
    assert [len(w["hosts"]) for w in doc["waves"]] == [3, 3, 3]
    assert doc["plan"]["params"]["forks"] == 2 and doc["estimate"]["forks"] == 2
    shown = cli("plan", "show")
    assert "on 2 forks" in shown.stdout, shown.stdout
    # What 'run' uses: the plan's forks unless given its own.
    assert forks_for(None, doc["plan"]["params"]) == (2, 2)
    assert forks_for(7, doc["plan"]["params"]) == (7, 2)
    assert forks_for(None, {}) == (
        50,
        50,
    )  # a plan made before 'plan --forks': the default it was estimated for
    assert cli("plan", "-i", fleet, "--forks", "0").exit_code == 2


def test_a_new_plan_replaces_the_draft(cli: Cli, fleet: str) -> None:
    triage(cli.db, FIRST)
    first = cli.json("plan", "-i", fleet)["plan"]["id"]
    second = cli.json("plan", "-i", fleet, "--max-wave-size", "1")["plan"]["id"]
    con = sqlite3.connect(cli.db)
    assert con.execute("SELECT id, status FROM plan ORDER BY id").fetchall() == [
        (first, "superseded"),
        (second, "draft"),
    ]
    assert cli.json("plan", "show")["plan"]["id"] == second
    assert audit_commands(cli.db) == ["plan", "plan"]


def test_approval_refuses_a_stale_draft_or_another_hash(cli: Cli, fleet: str) -> None:
    triage(cli.db, FIRST)
    cli.json("plan", "-i", fleet)
    triage(cli.db, FIRST)
    stale = cli("plan", "approve")
    assert stale.exit_code == 2 and "run 2 is newer" in stale.stderr
    digest = cli.json("plan", "-i", fleet)["plan"]["content_hash"]
    wrong = cli("plan", "approve", "--hash", "0000")
    assert wrong.exit_code == 2 and "changed since you reviewed it" in wrong.stderr
    assert cli("plan", "approve", "--hash", digest[:8]).exit_code == 0
    assert cli("plan", "approve").exit_code == 2  # nothing left to approve
    assert audit_commands(cli.db) == ["plan", "plan", "plan approve"]


def test_diff_shows_what_a_new_triage_changes(cli: Cli, fleet: str) -> None:
    triage(cli.db, FIRST)
    cli.json("plan", "-i", fleet)
    assert cli("plan", "approve").exit_code == 0
    assert cli("plan", "diff").exit_code == 2  # no draft yet
    triage(cli.db, {**FIRST, "ws1": "infected", "ws4": "clean", "app2": "clean"})
    cli.json("plan", "-i", fleet, "-l", "!dc2")
    d = cli.json("plan", "diff")
    assert d["changed"] is True
    assert [c["host"] for c in d["removed"]] == ["dc2"]
    changed = {c["host"]: (c["before"]["action"], c["after"]["action"]) for c in d["action_changed"]}
    assert changed == {"app2": ("rebuild", "verify"), "ws1": ("verify", "rebuild"), "ws4": ("hold", "verify")}
    text = cli("plan", "diff").stdout
    assert "ws4" in text and "1 removed, 3 action changed" in text


def test_export_csv_and_json(cli: Cli, fleet: str, tmp_path: Path) -> None:
    triage(cli.db, FIRST)
    doc = cli.json("plan", "-i", fleet)
    out = tmp_path / "plan.csv"
    assert cli("plan", "export", "--format", "csv", "-o", str(out)).exit_code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["host"] for r in rows] == [m["host"] for m in doc["members"]]
    dc1 = rows[0]
    assert (dc1["wave"], dc1["action"], dc1["site"], dc1["reimage_method"], dc1["wave_start_min"]) == (
        "1",
        "rebuild",
        "north",
        "pxe",
        "35",  # wave 1 starts once containment (isolate 5, collect 30) is done
    )
    ws4 = next(r for r in rows if r["host"] == "ws4")
    assert (ws4["wave"], ws4["action"]) == ("", "hold")
    exported = json.loads(cli("plan", "export", "--format", "json").stdout)
    assert exported == cli.json("plan", "show")
    assert cli("plan", "export", "--format", "json", "--approved").exit_code == 2


def test_measured_durations_replace_the_defaults(cli: Cli, fleet: str) -> None:
    triage(cli.db, FIRST)
    default = cli.json("plan", "-i", fleet)
    store = Store.open(str(cli.db))
    with store.write() as session:
        start = utcnow()
        for i, host in enumerate(("dc1", "db1", "ws2")):
            session.add(
                StageRun(
                    host_name=host,
                    stage="reimage",
                    status="ok",
                    started_at=start,
                    finished_at=start + timedelta(minutes=4 + i),
                )
            )
        session.add(
            StageRun(
                host_name="dc1",
                stage="collect",
                status="ok",
                started_at=start,
                finished_at=start + timedelta(minutes=2),
            )
        )
        session.add(
            StageRun(
                host_name="dc1",
                stage="wipe",
                status="failed",
                started_at=start,
                finished_at=start + timedelta(hours=9),
            )
        )
        session.add(
            StageRun(
                host_name="dc1",
                stage="wipe",
                status="ok",
                check_mode=True,
                started_at=start,
                finished_at=start + timedelta(hours=9),
            )
        )
    store.close()
    measured = cli.json("plan", "-i", fleet)
    used = measured["plan"]["params"]["durations"]
    assert used["reimage:pxe"] == {"seconds": 300.0, "source": "measured", "samples": 3}
    assert used["collect"] == {"seconds": 120.0, "source": "measured", "samples": 1}
    assert used["wipe"]["source"] == "default"
    saved = (45 - 5) + (30 - 2)
    # Without limits every host is rebuilt in one wave: its slowest rebuild saves the difference once.
    assert len(measured["waves"]) == 1
    assert default["estimate"]["total_s"] - measured["estimate"]["total_s"] == pytest.approx(saved * 60)


def _snapshot(db: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(db.parent.glob(db.name + "*"))}


CYCLE = """\
all:
  hosts:
    a: {ansible_host: 127.77.1.1, recovery_depends_on: [b]}
    b: {ansible_host: 127.77.1.2, recovery_depends_on: [a]}
"""


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("none", [], "no triage run in the database"),
        ("unfinished", [], "triage run 1 has not finished"),
        ("triage", ["--capacity", "gpu=3"], "unknown capacity key 'gpu'"),
        ("triage", ["--capacity", "site:north=many"], "expected a whole number >= 1, got 'many'"),
        ("triage", ["--capacity", "site:east=2"], "unknown site 'east'"),
        ("triage", ["--max-wave-size", "0"], "--max-wave-size 0"),
        ("triage", ["--durations", "/nonexistent/d.yml"], "cannot read stage durations"),
        ("cycle", [], "dependency cycle"),
        ("bad-tier", [], "invalid recovery_tier"),
        ("dc-only", ["-l", "ws"], "no verdict for any of the 4 host(s)"),
    ],
)
def test_errors_exit_2_in_one_line_and_write_nothing(
    cli: Cli, fleet: str, tmp_path: Path, setup: str, args: list[str], message: str
) -> None:
    assert cli("inventory", "sync", "-i", fleet).exit_code == 0
    if setup in ("triage", "cycle", "bad-tier"):
        triage(cli.db, FIRST)
    elif setup == "unfinished":
        triage(cli.db, FIRST, finished=False)
    elif setup == "dc-only":
        triage(cli.db, {"dc1": "clean"})
    source = fleet
    if setup == "cycle":
        source = str(tmp_path / "cycle.yml")
        Path(source).write_text(CYCLE)
    elif setup == "bad-tier":
        source = str(tmp_path / "bad.yml")
        Path(source).write_text(FLEET.replace("recovery_tier: 3", "recovery_tier: seven"))
    before = _snapshot(cli.db)
    result = cli("plan", "-i", source, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert _snapshot(cli.db) == before


def test_hospital_plan_with_capacities_overlaps_its_waves(cli: Cli) -> None:
    inv = inventory.load([str(HOSPITAL)])
    verdicts = {name: ("infected" if i % 3 == 0 else "clean") for i, name in enumerate(sorted(inv.hosts))}
    triage(cli.db, verdicts)
    doc = cli.json(
        "plan",
        "-i",
        str(HOSPITAL),
        "--max-wave-size",
        "120",
        "--capacity",
        "image-server=40",
        "--capacity",
        "site:north=20",
    )
    scheduled = [m for m in doc["members"] if m["wave"] is not None]
    assert [len(w["hosts"]) for w in doc["waves"]][:-1] == [120] * (len(doc["waves"]) - 1)
    assert sum(len(w["hosts"]) for w in doc["waves"]) == len(scheduled)
    assert doc["summary"]["protected"] == 7 and doc["summary"]["hold"] == 0
    est = doc["estimate"]
    assert est["lower_bound_s"] <= est["total_s"] and est["containment_s"] > 0
    first = doc["waves"][0]
    assert first["start_s"] == est["containment_s"]  # containment comes before wave 1
    # waves overlap: a wave starts before the one before it ends; the last reconnection ends the run
    ends = [w["end_s"] for w in doc["waves"]]
    assert any(w["start_s"] < ends[i] for i, w in enumerate(doc["waves"][1:]))
    assert max(ends) == est["total_s"]
    for w in doc["waves"]:
        assert w["estimated_s"] == pytest.approx(w["end_s"] - w["start_s"])


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite file; tests/lab/test_postgresql.py runs every test taking `url` on PostgreSQL too."""
    return str(tmp_path / "state.db")


def test_draft_approval_and_gate_through_the_library(url: str, fleet: str) -> None:
    triage(url, FIRST)
    hosts = list(inventory.load([fleet]).hosts.values())
    store = Store.open(url)
    try:
        with store.write() as session:
            made = plan_store.create_draft(
                session, hosts, Limits(2), durations.load(), operator="alice", params={}
            )
            draft_hash = made.view.plan.content_hash
        with store.write() as session:
            view, superseded = plan_store.approve(session, "bob")
            assert superseded is None and view.plan.approved_hash == draft_hash
        with store.read() as session:
            loaded = plan_store.load_approved_plan(session)
            assert loaded.content_hash() == draft_hash
            assert {m.host_name for m in loaded.members} == set(FIRST)
            assert all(len(ms) <= 2 for ms in loaded.wave_members().values())
    finally:
        store.close()


def audit_details(db: Path) -> list[tuple[str, str, dict]]:
    con = sqlite3.connect(db)
    rows = [
        (c, o, json.loads(d))
        for c, o, d in con.execute("SELECT command, operator, details FROM audit_log ORDER BY id")
    ]
    con.close()
    return rows


def test_sync_draft_and_approve_write_their_audit_in_the_library(cli: Cli, fleet: str) -> None:
    """Each command is one library call that writes its change and its audit record together: the
    record names what changed; a refused approval writes neither."""
    synced = cli.json("inventory", "sync", "-i", fleet)
    assert synced == {"hosts": 10, "added": 10, "updated": 0}
    run = triage(cli.db, FIRST)
    doc = cli.json("plan", "-i", fleet)
    refused = cli("plan", "approve", "--by", "alice", "--hash", "0000")
    assert refused.exit_code == 2 and "it changed since you reviewed it" in refused.stderr
    cli.json("plan", "approve", "--by", "alice")
    (sync, _, sync_details), (plan, operator, plan_details), (approve, _, approve_details) = audit_details(
        cli.db
    )
    assert (sync, sync_details) == ("inventory sync", {"added": 10, "updated": 0})
    assert (plan, operator) == ("plan", "tester")
    assert plan_details["plan_id"] == doc["plan"]["id"] and plan_details["triage_run_id"] == run
    assert plan_details["content_hash"] == doc["plan"]["content_hash"] and plan_details["rebuild"] == 5
    assert approve == "plan approve"
    assert approve_details == {
        "plan_id": doc["plan"]["id"],
        "approved_by": "alice",
        "content_hash": doc["plan"]["content_hash"],
        "superseded": None,
    }


def test_a_validate_stage_triage_is_not_what_plans_are_made_from(cli: Cli, fleet: str) -> None:
    """The validate stage's re-check is a triage run (triage_run.stage), newer than the fleet's: the
    next plan still comes from the fleet's triage, and the draft from it can still be approved."""
    run = triage(cli.db, FIRST)
    store = Store.open(str(cli.db))
    with store.write() as session:
        session.add(TriageRun(operator="tester", finished_at=utcnow(), host_count=1, stage="validate"))
    store.close()
    doc = cli.json("plan", "-i", fleet)
    assert doc["plan"]["triage_run_id"] == run
    assert cli("plan", "approve", "--by", "alice").exit_code == 0


def test_wave_times_come_from_the_plan_and_plans_made_before_overlap_keep_theirs() -> None:
    """Waves overlap, so the plan keeps their starts (`wave_start_s`) and a wave ends at its start
    plus its span. A plan made before that ran its waves one after another from the end of
    containment: its starts are the running sum of the spans."""
    waves = [
        PlanWave(plan_id=1, number=1, estimated_s=100.0),
        PlanWave(plan_id=1, number=2, estimated_s=50.0),
    ]
    now = Plan(id=1, params={"bounds": {"containment_s": 30.0}, "wave_start_s": [30.0, 60.0]})
    before = Plan(id=2, params={"bounds": {"containment_s": 30.0}})
    shown = [
        [(w["start_s"], w["end_s"]) for w in document.plan_document(PlanView(plan, waves, []))["waves"]]
        for plan in (now, before)
    ]
    assert shown == [[(30.0, 130.0), (60.0, 110.0)], [(30.0, 130.0), (130.0, 180.0)]]
