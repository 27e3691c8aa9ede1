"""The state store on real SQLite files (PostgreSQL: tests/lab/test_postgresql.py): created on first use,
migrations, atomic writes, the audit chain, concurrent writers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select

from orchestrator.errors import StoreError
from orchestrator.inventory import Host as InventoryHost
from orchestrator.store import Store, analyze, audit, db_url, migrations
from orchestrator.store import hosts as host_store
from orchestrator.store.models import AuditEntry, Host


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite file; tests/lab/test_postgresql.py runs every test taking `url` on PostgreSQL too."""
    return str(tmp_path / "state.db")


def raw(url: str, sql: str) -> list:
    """Run SQL behind the store's back, as an attacker or an older version would."""
    engine = create_engine(db_url(url))
    with engine.begin() as conn:
        result = conn.execute(text(sql))
        rows = result.fetchall() if result.returns_rows else []
    engine.dispose()
    return rows


def test_sqlite_is_created_on_first_use_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store.open(str(db))
    with store.read() as session:
        assert session.exec(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.exec(text("PRAGMA foreign_keys")).scalar() == 1
    store.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == migrations.latest_version()
    con.close()


def test_created_and_stamped_on_first_use(url: str) -> None:
    Store.open(url).close()
    assert raw(url, "SELECT MAX(version) FROM schema_version") == [(migrations.latest_version(),)]


def test_a_newer_schema_is_refused(url: str) -> None:
    Store.open(url).close()
    raw(
        url,
        "INSERT INTO schema_version (version, applied_at, description) VALUES (99, '2030-01-01', 'future')",
    )
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store.open(url)


def test_an_older_database_is_upgraded_in_order(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(url)
    with store.write() as session:
        session.add(Host(name="keep-me"))
    store.close()

    applied: list[int] = []
    nxt = migrations.latest_version() + 1

    def add_column(conn) -> None:
        applied.append(nxt)
        conn.exec_driver_sql("ALTER TABLE host ADD COLUMN note TEXT DEFAULT 'migrated'")

    upgraded = [*migrations.MIGRATIONS, migrations.Migration(nxt, "host notes", add_column)]
    monkeypatch.setattr(migrations, "MIGRATIONS", upgraded)
    Store.open(url).close()
    Store.open(url).close()  # already at the newest: nothing applied twice
    assert applied == [nxt]
    assert raw(url, "SELECT name, note FROM host") == [("keep-me", "migrated")]
    assert raw(url, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v in range(1, nxt + 1)
    ]


def test_not_an_orchestrator_database(url: str) -> None:
    raw(url, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="not an orchestrator database"):
        Store.open(url)


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(str(tmp_path / "nope" / "state.db"))


def test_unreachable_server_is_a_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError) as info:
        Store.open("postgresql+psycopg://orch:hunter2@127.0.0.1:9/recovery")
    assert "hunter2" not in str(info.value) and "cannot open database" in str(info.value)


def test_a_failed_write_leaves_nothing(url: str) -> None:
    store = Store.open(url)
    with pytest.raises(RuntimeError), store.write() as session:
        audit.record(session, "alice", "test", {})
        session.add(Host(name="half-done"))
        raise RuntimeError("crash in the middle")
    with store.read() as session:
        assert session.exec(select(Host)).all() == []
        assert session.exec(select(AuditEntry)).all() == []
    store.close()


def test_audit_chain_redacts_secrets_and_detects_tampering(url: str) -> None:
    store = Store.open(url)
    with store.write() as session:
        for i in range(3):
            audit.record(
                session, "alice", "plan approve", {"by": "alice", "vault_password": "hunter2", "n": i}
            )
    with store.read() as session:
        assert audit.verify(session) is None
        rows = session.exec(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert all(r.args["vault_password"] == audit.REDACTED for r in rows)
        assert rows[1].prev_hash == rows[0].hash
    store.close()
    raw(url, "UPDATE audit_log SET operator = 'mallory' WHERE id = 2")
    store = Store.open(url)
    with store.read() as session:
        problem = audit.verify(session)
    store.close()
    assert problem is not None and problem.entry_id == 2 and "altered" in problem.problem


def test_concurrent_writers_keep_one_chain(url: str) -> None:
    """Two writers appending at once never fork the hash chain (SQLite: BEGIN IMMEDIATE; PostgreSQL: lock)."""
    Store.open(url).close()
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        try:
            store = Store.open(url)
            for i in range(25):
                with store.write() as session:
                    audit.record(session, name, "test", {"i": i})
            store.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = Store.open(url)
    with store.read() as session:
        assert len(session.exec(select(AuditEntry)).all()) == 50
        assert audit.verify(session) is None
    store.close()


def test_v4_moves_decided_compromise_times_into_restore_decisions(url: str) -> None:
    """A database of schema 3 kept `host decide --compromised-since` on the decision: after the
    upgrade it is a restore decision like any other (minus the margin the engine applied), linked to
    its decision and withdrawn with it."""
    Store.open(url).close()
    for column in ("compromised_since", "host_decision_id", "withdrawn_by", "withdrawn_at", "withdrawn_why"):
        raw(url, f"ALTER TABLE restore_decision DROP COLUMN {column}")
    raw(url, "ALTER TABLE host_decision ADD COLUMN compromised_since TIMESTAMP")
    raw(url, "DELETE FROM schema_version WHERE version >= 4")
    raw(
        url,
        "INSERT INTO host_decision (host_name, decision, why, decided_by, decided_at, compromised_since, "
        "withdrawn_by, withdrawn_at, withdrawn_why) VALUES "
        "('dns1', 'rebuild', 'console', 'alice', '2026-12-02 15:00:00.000000', '2026-12-02 14:00:00.000000', "
        "NULL, NULL, NULL), ('dns2', 'verify', 'fine', 'bob', '2026-12-02 15:00:00.000000', NULL, NULL, NULL, NULL)",
    )
    Store.open(url).close()
    rows = raw(
        url,
        "SELECT host_name, before, compromised_since, host_decision_id, decided_by, why, withdrawn_at "
        "FROM restore_decision",
    )
    assert len(rows) == 1
    host, before, since, decision_id, by, why, withdrawn = rows[0]
    assert (host, decision_id, by, why, withdrawn) == ("dns1", 1, "alice", "console", None)
    assert str(before).startswith("2026-12-02 13:00:00") and str(since).startswith("2026-12-02 14:00:00")
    columns = [r[1] for r in raw(url, "PRAGMA table_info(host_decision)")] if "://" not in url else []
    assert "compromised_since" not in columns


def test_v6_adds_status_indexes_like_a_new_database(url: str) -> None:
    """A database of schema 5 gains the covering indexes a new one is created with, and loses the
    narrower stage-and-status index they replace."""
    wanted = {"ix_stage_run_stage_status_host", "ix_plan_member_verdict"}
    Store.open(url).close()
    fresh = _indexes(url)
    assert wanted <= fresh and "ix_stage_run_stage_status" not in fresh
    for name in wanted:
        raw(url, f"DROP INDEX {name}")
    raw(url, "CREATE INDEX ix_stage_run_stage_status ON stage_run (stage, status)")
    raw(url, "DELETE FROM schema_version WHERE version >= 6")
    Store.open(url).close()
    assert _indexes(url) == fresh


def _indexes(url: str) -> set[str]:
    if "://" in url:
        rows = raw(url, "SELECT indexname FROM pg_indexes WHERE tablename IN ('stage_run', 'plan_member')")
    else:
        rows = raw(
            url,
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('stage_run', 'plan_member')",
        )
    return {r[0] for r in rows}


def test_a_bulk_write_refreshes_the_query_planners_statistics_on_postgresql(url: str) -> None:
    """On PostgreSQL a writer adding thousands of rows ANALYZEs them in its transaction: until
    autovacuum came by, `status` right after a 50,000-host plan was planned as if the tables were
    empty (2.5 s instead of 0.85 s). On SQLite nothing is analyzed: its readers are written for a
    database without statistics."""
    store = Store.open(url)
    with store.write() as session:
        host_store.sync(session, [_inventory_host(f"ws{i:04d}") for i in range(analyze.BULK_ROWS - 1)])
    if "://" in url:
        assert raw(url, "SELECT count(*) FROM pg_statistic WHERE starelid = 'host'::regclass") == [(0,)]
    with store.write() as session:
        host_store.sync(session, [_inventory_host(f"srv{i:04d}") for i in range(analyze.BULK_ROWS)])
    store.close()
    if "://" in url:
        assert raw(url, "SELECT count(*) FROM pg_statistic WHERE starelid = 'host'::regclass")[0][0] > 0
    else:
        assert raw(url, "SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%'") == []


def _inventory_host(name: str) -> InventoryHost:
    return InventoryHost(
        name, "127.0.0.1", None, None, "ssh", "linux", 3, "workstation", [], [], False, None, "lab", "none",
        100, [], [], None,
    )  # fmt: skip
