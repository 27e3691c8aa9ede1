"""`orchestrator audit show | verify` on real SQLite files, with the log tampered with behind the
orchestrator's back (the sqlite3 module, as someone with the file would): every alteration,
deletion and insertion is found, named, and makes verify exit 1."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.store import Store, audit
from tests.conftest import Cli

ENTRIES = 6


@pytest.fixture
def logged(cli: Cli) -> Cli:
    """A log of six entries, some about hosts, one with a secret in its arguments."""
    store = Store.open(str(cli.db))
    with store.write() as session:
        audit.record(session, "alice", "inventory sync", {"inventory": ["hosts.yml"]}, {"added": 3})
        audit.record(session, "alice", "triage", {"vault_password": "hunter2"}, {"hosts": 3})
        audit.record(session, "bob", "plan approve", {"plan": 1}, {"hash": "c0ffee"})
    for host, state in (("dc01", "isolating"), ("dc02", "isolating"), ("dc01", "isolated")):
        with store.write() as session:
            audit.record(session, "alice", "run", {"wave": 1}, {"state": state}, host=host)
    store.close()
    return cli


def tamper(db: Path, *statements: str) -> None:
    con = sqlite3.connect(db)
    with con:
        for sql in statements:
            con.execute(sql)
    con.close()


def verify_fails_at(cli: Cli, entry_id: int, kind: str) -> str:
    result = cli("audit", "verify")
    assert result.exit_code == 1, result.output
    assert f"entry {entry_id}" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    data = json.loads(cli("audit", "verify", "--json").stdout)
    assert data["ok"] is False
    assert data["problem"]["entry_id"] == entry_id and data["problem"]["kind"] == kind
    return result.stderr


def test_intact_chain_verifies_and_prints_its_head(logged: Cli) -> None:
    result = logged("audit", "verify")
    assert result.exit_code == 0 and f"ok: {ENTRIES} entries, chain intact" in result.stdout
    data = logged.json("audit", "verify")
    assert data["ok"] is True and data["problem"] is None
    assert data["head"]["entries"] == ENTRIES and data["head"]["last_id"] == ENTRIES
    con = sqlite3.connect(logged.db)
    assert data["head"]["last_hash"] == con.execute("SELECT hash FROM audit_log WHERE id = 6").fetchone()[0]
    con.close()


@pytest.mark.parametrize(
    ("sql", "entry_id"),
    [
        ("UPDATE audit_log SET operator = 'mallory' WHERE id = 3", 3),
        ('UPDATE audit_log SET details = \'{"hash": "bad"}\' WHERE id = 3', 3),
        ("UPDATE audit_log SET ts = '2020-01-01 00:00:00.000000' WHERE id = 1", 1),
        ("UPDATE audit_log SET host_name = 'dc02' WHERE id = 6", 6),
        ("UPDATE audit_log SET prev_hash = hash WHERE id = 5", 5),
    ],
)
def test_altered_row_is_named(logged: Cli, sql: str, entry_id: int) -> None:
    tamper(logged.db, sql)
    assert "altered" in verify_fails_at(logged, entry_id, "altered")


def test_row_with_a_recomputed_hash_still_breaks_the_next_link(logged: Cli) -> None:
    """Changing a row and its own hash (without the key to the rest) shows at the row itself."""
    tamper(logged.db, "UPDATE audit_log SET operator = 'mallory', hash = 'f00d' WHERE id = 2")
    verify_fails_at(logged, 2, "altered")


def test_deleted_row_in_the_middle_is_named(logged: Cli) -> None:
    tamper(logged.db, "DELETE FROM audit_log WHERE id = 4")
    message = verify_fails_at(logged, 4, "deleted")
    assert "entry 4 was deleted" in message and "entry 5 no longer links to entry 3" in message


def test_several_deleted_rows_are_named_as_a_range(logged: Cli) -> None:
    tamper(logged.db, "DELETE FROM audit_log WHERE id IN (2, 3)")
    assert "entries 2-3 were deleted" in verify_fails_at(logged, 2, "deleted")


def test_deleted_first_row_is_named(logged: Cli) -> None:
    tamper(logged.db, "DELETE FROM audit_log WHERE id = 1")
    assert "the start of the log" in verify_fails_at(logged, 1, "deleted")


def test_cutting_off_the_newest_rows_is_detected(logged: Cli) -> None:
    """What remains is a valid chain on its own; the head row says where the log ended."""
    tamper(logged.db, "DELETE FROM audit_log WHERE id >= 5")
    message = verify_fails_at(logged, 6, "deleted")
    assert "entry 6, the newest recorded, was deleted" in message and "entry 4" in message


def test_emptied_log_is_detected(logged: Cli) -> None:
    tamper(logged.db, "DELETE FROM audit_log")
    assert "the log is empty" in verify_fails_at(logged, 6, "deleted")


def _copy_of(db: Path, entry_id: int) -> tuple:
    con = sqlite3.connect(db)
    row = con.execute(
        "SELECT ts, operator, command, args, details, host_name, prev_hash, hash, key_id FROM audit_log"
        " WHERE id = ?",
        (entry_id,),
    ).fetchone()
    con.close()
    return row


@pytest.mark.parametrize(
    ("make_sql", "entry_id", "kind"),
    [
        # Appended after the newest entry, linked to it, with a made-up hash.
        (
            lambda last: (
                "INSERT INTO audit_log (ts, operator, command, args, details, host_name, prev_hash, hash)"
                f" VALUES ('2025-03-01 09:00:00.000000', 'mallory', 'run', '{{}}', '{{}}', 'dc01', '{last[7]}',"
                " 'f00d')"
            ),
            7,
            "inserted",
        ),
        # Slipped in before the first entry (a free id), pretending to start the log.
        (
            lambda last: (
                "INSERT INTO audit_log (id, ts, operator, command, args, details, host_name, prev_hash, hash)"
                " VALUES (0, '2025-03-01 05:00:00.000000', 'mallory', 'approve', '{}', '{}', NULL, '', 'f00d')"
            ),
            0,
            "altered",
        ),
    ],
)
def test_inserted_row_is_named(
    logged: Cli, make_sql: Callable[[tuple], str], entry_id: int, kind: str
) -> None:
    tamper(logged.db, make_sql(_copy_of(logged.db, ENTRIES)))
    verify_fails_at(logged, entry_id, kind)


def test_inserted_row_with_the_head_moved_too_is_still_caught(logged: Cli) -> None:
    last = _copy_of(logged.db, ENTRIES)
    tamper(
        logged.db,
        "INSERT INTO audit_log (ts, operator, command, args, details, host_name, prev_hash, hash)"
        f" VALUES ('2025-03-01 09:00:00.000000', 'mallory', 'run', '{{}}', '{{}}', NULL, '{last[7]}', 'f00d')",
        "UPDATE audit_head SET last_id = 7, last_hash = 'f00d', entries = 7",
    )
    assert "altered" in verify_fails_at(logged, 7, "altered")


def test_replaced_row_is_named(logged: Cli) -> None:
    """A row deleted and another written under its id, copying its neighbour's content and hash."""
    donor = _copy_of(logged.db, 5)
    tamper(
        logged.db,
        "DELETE FROM audit_log WHERE id = 4",
        "INSERT INTO audit_log (id, ts, operator, command, args, details, host_name, prev_hash, hash, key_id)"
        f" VALUES (4, '{donor[0]}', '{donor[1]}', '{donor[2]}', '{donor[3]}', '{donor[4]}', '{donor[5]}',"
        f" '{donor[6]}', '{donor[7]}', '{donor[8]}')",
    )
    assert "inserted or replaced" in verify_fails_at(logged, 4, "inserted")


def test_show_lists_newest_entries_oldest_first_with_secrets_redacted(logged: Cli) -> None:
    data = logged.json("audit", "show")
    assert data["count"] == ENTRIES
    assert [e["id"] for e in data["entries"]] == list(range(1, ENTRIES + 1))
    assert data["entries"][1]["args"] == {"vault_password": audit.REDACTED}
    assert list(data["entries"][0]) == [
        "id",
        "ts",
        "operator",
        "command",
        "host",
        "args",
        "details",
        "prev_hash",
        "hash",
    ]
    last_two = logged.json("audit", "show", "--last", "2")["entries"]
    assert [e["id"] for e in last_two] == [5, 6]
    table = logged("audit", "show")
    assert table.exit_code == 0 and "plan approve" in table.stdout and "hunter2" not in table.stdout


def test_show_filters_by_host_pattern(logged: Cli, tmp_path: Path) -> None:
    from tests.unit import reporting_support as scenario

    scenario.build(str(logged.db), tmp_path).close()  # hosts to match: the scenario's ten
    about_dc01 = logged.json("audit", "show", "-l", "dc01", "--last", "0")["entries"]
    assert about_dc01 and {e["host"] for e in about_dc01} == {"dc01"}
    assert [e["details"]["state"] for e in about_dc01[:2]] == ["isolating", "isolated"]
    dcs = logged.json("audit", "show", "-l", "domain_controllers", "--last", "0")["entries"]
    assert {e["host"] for e in dcs} == {"dc01", "dc02"}
    assert logged("audit", "show", "-l", "nomatch").exit_code == 2
    ehr = logged.json("audit", "show", "-l", "ehr*", "--last", "0")["entries"]
    wide = [e for e in ehr if e["host"] is None]
    assert [e["command"] for e in wide] == ["run stage"] and wide[0]["details"]["ok"] == ["ehr-db01"]
    assert logged.json("audit", "show", "-l", "ehr*", "--last", "1")["entries"] == wide
