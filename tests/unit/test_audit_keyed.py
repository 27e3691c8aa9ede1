"""The audit log and plan approvals against someone who can write the database but lacks the audit key:
real CLI, real SQLite files, the tampering done with the sqlite3 module as an attacker with the file
would, every hash recomputed with the plain SHA-256 formula."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.store import Store, audit
from orchestrator.store.plan_content import content_hash
from tests.conftest import Cli
from tests.unit.test_planning_cli import FIRST, FLEET, triage


def plain(prev: str, ts: str, operator: str, command: str, args: str, details: str, host: str | None) -> str:
    """The chain formula as the source code shows it, without the key."""
    moment = datetime.fromisoformat(ts).replace(tzinfo=UTC)  # stored naive, in UTC
    payload = json.dumps(
        {
            "prev": prev,
            "ts": moment.isoformat(timespec="microseconds"),
            "operator": operator,
            "command": command,
            "args": json.loads(args),
            "details": json.loads(details),
            "host": host,
        },
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def rewrite_with_plain_formula(db: Path, keep_key_id: bool) -> None:
    """Change who approved, delete two entries, recompute every hash and the head with plain SHA-256."""
    con = sqlite3.connect(db)
    with con:
        con.execute(
            "UPDATE audit_log SET operator = 'mallory', details = json_set(details, '$.approved_by', 'mallory')"
            " WHERE command = 'plan approve'"
        )
        ids = [r[0] for r in con.execute("SELECT id FROM audit_log ORDER BY id")]
        con.execute(f"DELETE FROM audit_log WHERE id IN ({ids[1]}, {ids[2]})")
        prev = ""
        rows = con.execute(
            "SELECT id, ts, operator, command, args, details, host_name FROM audit_log ORDER BY id"
        ).fetchall()
        for row_id, ts, operator, command, args, details, host in rows:
            digest = plain(prev, ts, operator, command, args, details, host)
            key_sql = "" if keep_key_id else ", key_id = NULL"
            con.execute(
                f"UPDATE audit_log SET prev_hash = ?, hash = ?{key_sql} WHERE id = ?", (prev, digest, row_id)
            )
            prev = digest
        con.execute(
            "UPDATE audit_head SET last_id = ?, last_hash = ?, entries = ?, mac = ''",
            (rows[-1][0], prev, len(rows)),
        )
    con.close()


@pytest.fixture
def approved(cli: Cli, tmp_path: Path) -> tuple[Cli, str]:
    fleet = tmp_path / "fleet.yml"
    fleet.write_text(FLEET)
    triage(cli.db, FIRST)
    assert cli("plan", "-i", str(fleet)).exit_code == 0
    result = cli("plan", "approve", "--by", "Dr Martin")
    assert result.exit_code == 0, result.output
    for host in ("dc1", "ws2"):
        assert cli("host", "restore-point", host, "--accept", "--why", "matches the EDR").exit_code == 0
    return cli, str(fleet)


def test_the_key_is_made_private_beside_the_database(approved: tuple[Cli, str]) -> None:
    cli, _ = approved
    key = cli.db.with_name(cli.db.name + ".audit-key")
    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    assert len(bytes.fromhex(key.read_text().strip())) == 32
    data = cli.json("audit", "verify")
    assert data["ok"] and data["head"]["scheme"] == "hmac-sha256" and data["head"]["key_id"]
    # the key's id names it, never the key itself
    assert key.read_text().strip() not in json.dumps(data)


@pytest.mark.parametrize("keep_key_id", [True, False], ids=["still-named-keyed", "marked-unkeyed"])
def test_a_chain_rewritten_with_the_plain_formula_fails(approved: tuple[Cli, str], keep_key_id: bool) -> None:
    cli, _ = approved
    assert cli("audit", "verify").exit_code == 0
    rewrite_with_plain_formula(cli.db, keep_key_id)
    result = cli("audit", "verify")
    assert result.exit_code == 1, result.output
    data = json.loads(cli("audit", "verify", "--json").stdout)
    assert data["ok"] is False
    assert data["problem"]["kind"] == ("altered" if keep_key_id else "unkeyed")


def test_expect_pins_the_head_written_down_elsewhere(approved: tuple[Cli, str]) -> None:
    cli, _ = approved
    head = cli.json("audit", "verify")["head"]["last_hash"]
    # the log grows afterwards: the noted head is still in it
    assert cli("host", "restore-point", "db1", "--accept", "--why", "EDR agrees").exit_code == 0
    assert cli("audit", "verify", "--expect", head).exit_code == 0
    assert cli("audit", "verify", "--expect", head[:16]).exit_code == 0
    wrong = cli("audit", "verify", "--expect", "0" * 64)
    assert wrong.exit_code == 1 and "expected head" in wrong.stderr
    assert cli("audit", "verify", "--expect", "xyz").exit_code == 2
    # Someone with the database AND the key cuts the log back: keyed, consistent, and still caught.
    store = Store.open(str(cli.db))
    con = sqlite3.connect(cli.db)
    with con:
        last = con.execute("SELECT MAX(id) FROM audit_log").fetchone()[0]
        con.execute("DELETE FROM audit_log WHERE id >= ?", (last - 2,))
        row = con.execute("SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
        count = con.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
        mac = store.audit_key.mac(audit._head_message(row[0], row[1], count))
        con.execute(
            "UPDATE audit_head SET last_id = ?, last_hash = ?, entries = ?, mac = ?", (*row, count, mac)
        )
    con.close()
    store.close()
    assert cli("audit", "verify").exit_code == 0  # consistent: only the noted head shows the cut
    assert cli("audit", "verify", "--expect", head).exit_code == 1


def test_the_head_is_printed_after_state_changes_only(approved: tuple[Cli, str]) -> None:
    cli, _ = approved
    result = cli("host", "restore-point", "db1", "--before", "2026-01-01T00:00:00Z", "--why", "x", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["before"].startswith("2026-01-01T00:00:00")  # stdout stays JSON
    lines = [line for line in result.stderr.splitlines() if line.startswith("audit head: entry ")]
    assert len(lines) == 1 and "hmac-sha256" in lines[0]
    head = cli.json("audit", "verify")["head"]
    assert head["last_hash"] in lines[0]
    assert "audit head" not in cli("status").stderr
    assert "audit head" not in cli("audit", "show").stderr


def test_a_plan_hash_recomputed_with_the_plain_formula_is_refused(approved: tuple[Cli, str]) -> None:
    cli, fleet = approved
    con = sqlite3.connect(cli.db)
    with con:
        plan_id, run_id = con.execute(
            "SELECT id, triage_run_id FROM plan WHERE status = 'approved'"
        ).fetchone()
        # ws4 (unreachable, held) is put into wave 1 as a rebuild, and the hash recomputed.
        con.execute(
            "UPDATE plan_member SET action = 'rebuild', wave = 1 WHERE plan_id = ? AND host_name = 'ws4'",
            (plan_id,),
        )
        waves = con.execute("SELECT number, tier FROM plan_wave WHERE plan_id = ?", (plan_id,)).fetchall()
        members = con.execute(
            "SELECT host_name, action, wave, verdict, reason FROM plan_member WHERE plan_id = ?", (plan_id,)
        ).fetchall()
        digest = content_hash(run_id, waves, members)
        con.execute(
            "UPDATE plan SET content_hash = ?, approved_hash = ?, approved_by = 'mallory' WHERE id = ?",
            (digest, digest, plan_id),
        )
    con.close()
    result = cli("run", "-i", fleet, "--all", "--check")
    assert result.exit_code == 2
    assert "does not verify with the audit key" in result.stderr


def test_a_missing_or_different_key_is_never_replaced(approved: tuple[Cli, str], tmp_path: Path) -> None:
    cli, _ = approved
    key = cli.db.with_name(cli.db.name + ".audit-key")
    moved = tmp_path / "safe" / "audit-key"
    moved.parent.mkdir()
    key.rename(moved)
    result = cli("host", "restore-point", "db1", "--accept", "--why", "x")
    assert result.exit_code == 2 and "no key file" in result.stderr
    assert not key.exists(), "a second key was made beside the first"
    assert cli("audit", "verify").exit_code == 2  # cannot verify without it: says so
    ok = cli("--audit-key", str(moved), "host", "restore-point", "db1", "--accept", "--why", "x")
    assert ok.exit_code == 0, ok.stderr
    other = tmp_path / "other-key"
    other.write_text("ab" * 32 + "\n")
    other.chmod(0o600)
    assert cli("--audit-key", str(other), "audit", "verify").exit_code == 1
    assert (
        json.loads(cli("--audit-key", str(other), "audit", "verify", "--json").stdout)["problem"]["kind"]
        == "wrong-key"
    )
    other.chmod(0o644)
    loose = cli("--audit-key", str(other), "audit", "verify")
    assert loose.exit_code == 2 and "readable by others" in loose.stderr


def test_an_unkeyed_log_from_before_is_named_then_pinned(cli: Cli) -> None:
    """A database from before keying: plain entries, no key file. verify says so; the next
    state-changing command keys the log from there and pins the old entries."""
    store = Store.open(str(cli.db))
    with store.write() as session:
        for n in range(3):
            audit.record(session, "alice", "inventory sync", {}, {"n": n})
    store.close()
    con = sqlite3.connect(cli.db)
    with con:
        prev = ""
        for row_id, ts, operator, command, args, details, host in con.execute(
            "SELECT id, ts, operator, command, args, details, host_name FROM audit_log ORDER BY id"
        ).fetchall():
            digest = plain(prev, ts, operator, command, args, details, host)
            con.execute(
                "UPDATE audit_log SET prev_hash = ?, hash = ?, key_id = NULL WHERE id = ?",
                (prev, digest, row_id),
            )
            prev = digest
        con.execute("UPDATE audit_head SET last_hash = ?, mac = ''", (prev,))
    con.close()
    cli.db.with_name(cli.db.name + ".audit-key").unlink()
    result = cli("audit", "verify")
    assert result.exit_code == 1 and "none of the 3 entries is keyed" in result.stderr
    store = Store.open(str(cli.db))
    with store.write() as session:  # the next state change keys the log from here on
        audit.record(session, "alice", "inventory sync", {}, {"n": 3})
    store.close()
    assert cli("audit", "verify").exit_code == 0
    con = sqlite3.connect(cli.db)
    with con:
        con.execute("UPDATE audit_log SET operator = 'mallory' WHERE id = 1")
    con.close()
    assert cli("audit", "verify").exit_code == 1
