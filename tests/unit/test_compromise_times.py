"""Compromise times are checked before they choose a restore point: the rules on their own, and the
plan's holds and a person's decision through the real CLI (the engine's side, with a real restic
repository, is in tests/lab/test_compromise_engine.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from orchestrator.inventory import Host as InventoryHost
from orchestrator.planning import compromise
from orchestrator.planning.model import Verdict
from orchestrator.store import Store
from orchestrator.store.decisions import Decided
from orchestrator.store.models import AuditEntry, TriageResult
from tests.conftest import Cli
from tests.unit.test_planning_cli import FLEET, triage

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
    decided = {"b": Decided(NOW - timedelta(days=2), "alice", "EDR says 28 Nov", False, NOW)}
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
