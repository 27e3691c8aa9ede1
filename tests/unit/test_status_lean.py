"""`status` through the standard library's sqlite3 (`sqlite_read`) against the SQLAlchemy views, on
real database files: the same JSON, byte for byte, for the fleet and for every host; the SQLAlchemy
path whenever the lean one does not apply; and a new process that never imports SQLAlchemy, SQLModel
or rich for `status --json`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bench import status as status_bench
from orchestrator.errors import OrchestratorError
from orchestrator.execution import containment
from orchestrator.planning import decisions
from orchestrator.reporting import fleet, host_summary, host_view, sqlite_read, status_read
from orchestrator.reporting.selection import HostFilter
from orchestrator.safe_text import json_text
from orchestrator.store import Store, migrations
from orchestrator.store.models import Host
from tests.unit import reporting_support as scenario


def _same(a: object, b: object) -> None:
    """Equal as the CLI prints them (`emit_json`), not only as Python values."""
    assert json_text(a, indent=2, sort_keys=False, default=str) == json_text(
        b, indent=2, sort_keys=False, default=str
    )


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ten-host scenario, plus standing decisions (one withdrawn by a newer one) and a
    containment request, so that every part of the view has rows."""
    workdir = tmp_path_factory.mktemp("lean")
    db = workdir / "recovery.db"
    store = scenario.build(str(db), workdir)
    decisions.decide(store, "dana", "pacs01", "hold", "vendor must look first", {})
    decisions.decide(store, "dana", "pacs01", "verify", "vendor says clean", {})
    decisions.decide(store, "dana", "ws-er-002", "hold", "a nurse's machine: ask first", {})
    since = scenario.T0 - timedelta(days=2)  # a restore cutoff that came with a decision
    decisions.decide(store, "dana", "ehr-app01", "rebuild", "the console shows the note", {}, since)
    needed = [containment.Needed("file01", "unreachable at triage")]
    containment.request(store, "erin", 1, needed, workdir / "requests", scenario.NOW)  # the approved plan
    store.close()
    return db


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bench/status.py's mid-recovery database at 3,000 hosts: many failed and held hosts, so the
    table's cut (20 rows) and the per-kind limits matter."""
    db = tmp_path_factory.mktemp("lean-big") / "status.db"
    status_bench.fill(db, 3000, 30_000)
    return db


def _names(db: Path) -> list[str]:
    store = Store.open(str(db))
    try:
        with store.read() as session:
            return list(session.exec(select(Host.name)).all())
    finally:
        store.close()


@pytest.mark.parametrize("which", ["hospital", "big"])
@pytest.mark.parametrize("limit", [None, 20, 1])
@pytest.mark.parametrize("per_host", [False, True])
def test_fleet_view_is_the_same_through_sqlite3(
    which: str, limit: int | None, per_host: bool, request: pytest.FixtureRequest
) -> None:
    db = request.getfixturevalue(which)
    lean = sqlite_read.fleet_status(str(db), limit, scenario.NOW, per_host)
    assert lean is not None, "the lean reader must apply to a private, current database file"
    store = Store.open(str(db))
    try:
        _same(lean, fleet.status(store, HostFilter(), limit, scenario.NOW, per_host))
    finally:
        store.close()
    assert ("hosts" in lean["containment"]) == per_host
    if which == "big":
        assert lean["attention"]["count"] > 20 and lean["containment"]["needed"] > 100
        assert len(lean["next_steps"]) >= 3
    else:
        assert lean["containment"]["requested"] == 1
        assert {d["decision"] for d in lean["decisions"]} >= {"hold", "verify", "rebuild", "restore point"}


@pytest.mark.parametrize("which", ["hospital", "big"])
def test_the_default_view_counts_what_the_per_host_view_lists(
    which: str, request: pytest.FixtureRequest
) -> None:
    """The default view's containment counts and next steps come from aggregate queries, the
    per-host view's from each host's rows: they must say the same."""
    db = str(request.getfixturevalue(which))
    counted = sqlite_read.fleet_status(db, 20, scenario.NOW)
    listed = sqlite_read.fleet_status(db, 20, scenario.NOW, containment=True)
    assert counted is not None and listed is not None
    per_host = listed["containment"].pop("hosts")
    assert counted == listed
    statuses = [c["status"] for c in per_host.values()]
    assert counted["containment"] == {
        "needed": len(per_host),
        "contained": statuses.count("contained"),
        "requested": statuses.count("requested"),
        "not_yet": statuses.count("not yet"),
    }


@pytest.mark.parametrize("which", ["hospital", "big"])
def test_every_host_view_is_the_same_through_sqlite3(which: str, request: pytest.FixtureRequest) -> None:
    db = request.getfixturevalue(which)
    names = _names(db)
    if which == "big":  # a sample across waves, states and tiers
        names = names[::37]
    store = Store.open(str(db))
    try:
        for name in names:
            lean = sqlite_read.host_timeline(str(db), name)
            assert lean is not None
            _same(lean, host_view.timeline(store, name))
    finally:
        store.close()


def test_unknown_host_is_the_same_error(hospital: Path) -> None:
    store = Store.open(str(hospital))
    try:
        for name in ("dc03", "nothing-like-it"):
            with pytest.raises(OrchestratorError) as full:
                host_view.timeline(store, name)
            with pytest.raises(OrchestratorError) as lean:
                sqlite_read.host_timeline(str(hospital), name)
            assert str(lean.value) == str(full.value)
    finally:
        store.close()


def test_the_sqlalchemy_path_when_the_lean_one_does_not_apply(hospital: Path, tmp_path: Path) -> None:
    """A missing database (to create), an older schema (to migrate), a mode to narrow, a URL other
    than SQLite: the lean reader steps aside and `status_read` still answers."""
    missing = tmp_path / "new.db"
    assert sqlite_read.fleet_status(str(missing), None, scenario.NOW) is None
    assert status_read.fleet(str(missing), lambda: Store.open(str(missing)), HostFilter())["total"] == 0
    assert sqlite_read.database_file("postgresql://u@127.0.0.1/x") is None

    copy = tmp_path / "copy.db"
    copy.write_bytes(hospital.read_bytes())
    copy.chmod(0o600)
    assert sqlite_read.host_timeline(f"sqlite:///{copy}", "dc01") is not None
    copy.chmod(0o644)
    assert sqlite_read.host_timeline(str(copy), "dc01") is None
    copy.chmod(0o600)
    import sqlite3

    con = sqlite3.connect(copy)
    con.execute("DELETE FROM schema_version WHERE version = (SELECT MAX(version) FROM schema_version)")
    con.commit()
    con.close()
    assert sqlite_read.host_timeline(str(copy), "dc01") is None
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database, whatever its name says" * 100)
    garbage.chmod(0o600)
    assert sqlite_read.fleet_status(str(garbage), None, scenario.NOW) is None


def test_filters_take_the_sqlalchemy_path_and_agree(hospital: Path) -> None:
    store = Store.open(str(hospital))
    try:
        flt = HostFilter(tier=1)
        _same(
            status_read.fleet(str(hospital), lambda: store, flt)["by_category"],
            fleet.status(store, flt)["by_category"],
        )
    finally:
        store.close()


def test_the_lean_reader_follows_the_schema() -> None:
    assert migrations.latest_version() == sqlite_read.SCHEMA_VERSION
    columns = set(Host.__table__.columns.keys())  # type: ignore[attr-defined]
    assert set(host_summary.FACTS) <= columns and set(host_summary.PROGRESS) <= columns


def test_status_json_as_a_new_process_imports_no_sqlalchemy_sqlmodel_or_rich(hospital: Path) -> None:
    probe = (
        "import sys\n"
        "from orchestrator.cli import main\n"
        "try:\n"
        f"    main(['--db', {str(hospital)!r}, 'status', {{}}, '--json'], standalone_mode=False)\n"
        "finally:\n"
        "    heavy = sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'sqlmodel', 'rich', 'ansible'})\n"
        "    print('HEAVY', heavy, file=sys.stderr)\n"
    )
    for args in ("", "'dc01', "):
        code = probe.replace("{}, ", args)
        env = {**os.environ, "ORCHESTRATOR_OPERATOR": "tester"}
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "HEAVY []" in done.stderr, done.stderr
        assert done.stdout.startswith("{")


def _cli(db: Path, *args: str) -> tuple[int, str]:
    from click.testing import CliRunner

    from orchestrator.cli import main

    result = CliRunner().invoke(main, ["--db", str(db), *args], env={"ORCHESTRATOR_OPERATOR": "tester"})
    return result.exit_code, result.output


def test_the_default_view_is_bounded_and_the_lists_come_with_flags(big: Path) -> None:
    """At 3,000 hosts the default view names at most 20 hosts needing a person and no host's
    containment; --all and --containment list them all, in JSON and in the table."""
    import json

    code, out = _cli(big, "status", "--json")
    assert code == 0
    default = json.loads(out)
    attention, containment = default["attention"], default["containment"]
    assert len(attention["hosts"]) == 20 < attention["count"]
    assert "hosts" not in containment and containment["needed"] > 1000
    assert len(out) < 30_000, "the default answer must not grow with the fleet"

    everything = json.loads(_cli(big, "status", "--json", "--all", "--containment")[1])
    assert len(everything["attention"]["hosts"]) == attention["count"]
    assert len(everything["containment"]["hosts"]) == containment["needed"]
    assert {k: v for k, v in everything["containment"].items() if k != "hosts"} == containment
    assert everything["next_steps"] == default["next_steps"]

    code, table = _cli(big, "status")
    assert code == 0 and "orchestrator status --all lists them" in table and "Containment" not in table
    code, table = _cli(big, "status", "--containment")
    some = next(n for n, c in everything["containment"]["hosts"].items() if c["status"] == "contained")
    assert code == 0 and "Containment" in table and some in table
    code, out = _cli(big, "status", "h000001", "--containment")
    assert code == 2 and "--containment are for the fleet view" in out


def test_waiting_hosts_are_named_for_a_few_dependencies_then_counted() -> None:
    from orchestrator.reporting import next_steps

    awaiting = {f"ws{i:02d}": f"awaiting dependencies: app{i % 8} (on hold)" for i in range(40)}
    steps = next_steps.view(next_steps.Facts(awaiting=awaiting), [], [])["next_steps"]
    assert len(steps) == next_steps.SHOWN + 1
    assert steps[0].startswith("5 host(s) rebuilt and validated wait, isolated, for app0 (ws00, ws08")
    assert steps[-1].startswith("15 more host(s) wait, isolated, for 3 other host(s)")
