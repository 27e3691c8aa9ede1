"""The state store on real SQLite files: created on first use, WAL, migrations, the audit chain."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from orchestrator.errors import StoreError
from orchestrator.store import Store, audit, migrations
from orchestrator.store.models import AuditEntry, Host


def test_created_on_first_use_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store.open(str(db))
    with store.read() as session:
        assert session.exec(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.exec(text("PRAGMA foreign_keys")).scalar() == 1
    store.close()
    con = sqlite3.connect(db)
    assert con.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == migrations.latest_version()
    con.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    Store.open(str(db)).close()
    con = sqlite3.connect(db)
    con.execute(
        "INSERT INTO schema_version (version, applied_at, description) VALUES (99, '2030-01-01', 'future')"
    )
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        Store.open(str(db))


def test_an_older_database_is_upgraded_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "state.db"
    store = Store.open(str(db))
    with store.write() as session:
        session.add(Host(name="keep-me"))
    store.close()

    applied: list[int] = []

    def add_column(conn) -> None:
        applied.append(2)
        conn.exec_driver_sql("ALTER TABLE host ADD COLUMN note TEXT DEFAULT 'migrated'")

    upgraded = [*migrations.MIGRATIONS, migrations.Migration(2, "host notes", add_column)]
    monkeypatch.setattr(migrations, "MIGRATIONS", upgraded)
    Store.open(str(db)).close()
    Store.open(str(db)).close()  # already at 2: nothing applied twice
    assert applied == [2]
    con = sqlite3.connect(db)
    assert con.execute("SELECT name, note FROM host").fetchall() == [("keep-me", "migrated")]
    assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2]


def test_not_an_orchestrator_database(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not an orchestrator database"):
        Store.open(str(db))


def test_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(str(tmp_path / "nope" / "state.db"))


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "state.db"))
    with pytest.raises(RuntimeError), store.write() as session:
        audit.record(session, "alice", "test", {})
        session.add(Host(name="half-done"))
        raise RuntimeError("crash in the middle")
    with store.read() as session:
        assert session.exec(select(Host)).all() == []
        assert session.exec(select(AuditEntry)).all() == []


def test_audit_chain_redacts_secrets_and_detects_tampering(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    store = Store.open(str(db))
    with store.write() as session:
        for i in range(3):
            audit.record(
                session, "alice", "plan approve", {"by": "alice", "vault_password": "hunter2", "n": i}
            )
    with store.read() as session:
        assert audit.verify(session) is None
        rows = session.exec(select(AuditEntry)).all()
        assert all(r.args["vault_password"] == audit.REDACTED for r in rows)
        assert rows[1].prev_hash == rows[0].hash
    store.close()
    con = sqlite3.connect(db)
    con.execute("""UPDATE audit_log SET operator = 'mallory' WHERE id = 2""")
    con.commit()
    con.close()
    store = Store.open(str(db))
    with store.read() as session:
        problem = audit.verify(session)
    assert problem is not None and problem.entry_id == 2 and "altered" in problem.problem


def test_concurrent_writers_keep_one_chain(tmp_path: Path) -> None:
    """Two writers appending at once (BEGIN IMMEDIATE) never fork the hash chain."""
    db = str(tmp_path / "state.db")
    Store.open(db).close()

    def writer(name: str) -> None:
        store = Store.open(db)
        for i in range(25):
            with store.write() as session:
                audit.record(session, name, "test", {"i": i})
        store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = Store.open(db)
    with store.read() as session:
        assert len(session.exec(select(AuditEntry)).all()) == 50
        assert audit.verify(session) is None
