"""Private by default: everything the controller writes (the database and its -wal/-shm, the audit key,
runs/ with ansible-runner's env, extra vars, artifacts and the staging area, reports, plan exports) is
readable by its user only, whatever the umask the operator's shell had. Real CLI, real SQLite files,
real ansible-runner runs of the toy playbooks."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.store import Store
from tests.conftest import Cli
from tests.lab.execution_support import approved_plan, toy_inventory, toy_playbooks


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """The operator's shell: umask 022, so anything not made private on purpose would show."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def not_private(*roots: Path) -> list[str]:
    """Every file not 0600 (or stricter) and folder not 0700 (or stricter) under `roots`."""
    out = []
    for root in roots:
        paths = [root, *root.rglob("*")] if root.is_dir() else [root]
        for path in paths:
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                continue
            if mode & 0o077:
                out.append(f"{path} {oct(mode & 0o777)}")
    return out


def test_the_database_its_wal_shm_and_the_key_are_private(cli: Cli, tmp_path: Path) -> None:
    assert cli("host", "restore-point", "x", "--accept", "--why", "x").exit_code == 2  # creates the database
    store = Store.open(str(cli.db))
    with store.write() as session:  # WAL and shm exist while a connection is open
        session.exec(__import__("sqlmodel").text("SELECT 1"))
    files = [p for p in tmp_path.iterdir() if p.name.startswith("recovery.db")]
    assert {p.name for p in files} >= {"recovery.db", "recovery.db-wal", "recovery.db-shm"}
    assert not_private(*files) == []
    store.close()


def test_an_existing_readable_database_is_narrowed(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    sqlite3.connect(db).close()
    db.chmod(0o644)
    Store.open(str(db)).close()
    assert oct(db.stat().st_mode & 0o777) == oct(0o600)


def test_runs_staging_extravars_artifacts_reports_and_exports_are_private(cli: Cli, tmp_path: Path) -> None:
    hosts = {"ev": {"group": "evidence_store", "recovery_protected": True}, "a": {}, "b": {}}
    inv = toy_inventory(tmp_path / "inv", hosts)
    store = Store.open(str(cli.db))
    approved_plan(store, inv, [("a", "rebuild", 1), ("b", "verify", 1), ("ev", "protected", None)])
    store.close()
    runs = tmp_path / "runs"
    playbooks = toy_playbooks(tmp_path / "playbooks")
    from orchestrator.execution import engine

    options = engine.RunOptions(
        inventory=[str(inv)],
        operator="tester",
        runs_dir=runs,
        playbooks=playbooks,
        validator=lambda hs: {h.name: (True, "clean") for h in hs},
    )
    # The library alone, without the CLI's umask (the lab tests walk a real `orchestrator run`'s folders).
    report = engine.run(Store.open(str(cli.db)), options)
    assert not report.failed
    extravars = list(runs.rglob("env/extravars"))
    staging = [p for p in runs.rglob("staging") if p.is_dir()]
    artifacts = list(runs.rglob("artifacts/run/job_events/*.json"))
    assert extravars and staging and artifacts
    assert any((s / "a" / "manifest.json").exists() for s in staging)
    out = tmp_path / "out"
    out.mkdir()
    assert cli("report", "-o", str(out / "r.html")).exit_code == 0
    assert cli("report", "-f", "csv", "-o", str(out / "r.csv")).exit_code == 0
    assert cli("plan", "export", "--format", "csv", "-o", str(out / "plan.csv")).exit_code == 0
    db_files = [p for p in tmp_path.iterdir() if p.name.startswith("recovery.db")]
    assert not_private(runs, *db_files, *out.iterdir()) == []
