"""People's decisions (`host decide`: audited, withdrawable, honoured by the next plan) and the
network team's containment request (CSV a spreadsheet will not run, an nftables table of parsed
addresses only)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.execution import containment
from tests.conftest import Cli
from tests.unit.test_planning_cli import FIRST, audit_commands, triage


@pytest.fixture
def fleet(tmp_path: Path) -> str:
    from tests.unit.test_planning_cli import FLEET

    path = tmp_path / "fleet.yml"
    path.write_text(FLEET)
    return str(path)


def test_a_decision_is_audited_honoured_by_the_next_plan_and_withdrawn(cli: Cli, fleet: str) -> None:
    triage(cli.db, {**FIRST, "db1": "unreachable"})
    before = {m["host"]: m for m in cli.json("plan", "-i", fleet)["members"]}
    assert before["db1"]["action"] == "hold"
    assert before["app1"]["reason"] == "clean; reconnects after db1 (unreachable)"

    result = cli("host", "decide", "db1", "--rebuild", "--why", "console: disk encrypted", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) | {"at": None} == {
        "host": "db1", "decision": "rebuild", "why": "console: disk encrypted", "by": "tester", "at": None,
        "compromised_since": None, "withdrawn": False,
    }  # fmt: skip
    plan = cli.json("plan", "-i", fleet)
    after = {m["host"]: m for m in plan["members"]}
    assert after["db1"]["action"] == "rebuild" and after["db1"]["wave"] is not None
    assert after["db1"]["reason"] == "unreachable; rebuild decided by tester: console: disk encrypted"
    assert after["app1"]["reason"] == "clean"  # nothing held any more
    assert [d["host"] for d in plan["decisions"]] == ["db1"]
    assert "decision(s) by people" in cli("plan", "show").stdout
    assert cli.json("status")["decisions"][0]["why"] == "console: disk encrypted"

    assert cli("host", "decide", "app1", "--release", "--why", "read-only without db1").exit_code == 0
    assert cli("host", "decide", "db1", "--withdraw", "--why", "decided too early").exit_code == 0
    replanned = {m["host"]: m for m in cli.json("plan", "-i", fleet)["members"]}
    assert replanned["db1"]["action"] == "hold"
    assert replanned["app1"]["reason"] == "clean; released from db1 (unreachable)"
    # app1 is released, app2 is not: ws1 still reconnects after db1, through app2
    assert replanned["ws1"]["reason"] == "clean; reconnects after db1 (unreachable) via app2"
    commands = audit_commands(cli.db)
    assert commands.count("host decide") == 2 and commands.count("host decide withdraw") == 1
    con = sqlite3.connect(cli.db)
    rows = con.execute("SELECT host_name, decision, withdrawn_by FROM host_decision ORDER BY id").fetchall()
    con.close()
    assert rows == [("db1", "rebuild", "tester"), ("app1", "release", None)]


def test_bad_decisions_are_refused_with_one_line_and_nothing_written(cli: Cli, fleet: str) -> None:
    triage(cli.db, FIRST)
    cli.json("plan", "-i", fleet)
    cases = [
        (["nosuch", "--rebuild", "--why", "x"], "no host nosuch in the database"),
        (["bkp1", "--rebuild", "--why", "x"], "protected"),
        (["db1", "--why", "x"], "give one of"),
        (["db1", "--hold", "--why", "   "], "--why: say why"),
        (["db1", "--verify", "--why", "x", "--compromised-since", "2026-12-01"], "goes with --rebuild"),
        (["db1", "--withdraw", "--why", "x"], "no standing decision"),
    ]
    for args, message in cases:
        result = cli("host", "decide", *args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    con = sqlite3.connect(cli.db)
    assert con.execute("SELECT count(*) FROM host_decision").fetchone() == (0,)
    con.close()
    assert "host decide" not in audit_commands(cli.db)


def test_the_network_teams_request_keeps_host_text_out() -> None:
    needed = [
        containment.Needed(
            "dns-01", "=HYPERLINK(\"http://x\")", {"address": "10.0.0.5", "ip": "10.0.0.5", "mac": "aa:bb:cc:dd:ee:ff",
                                                   "site": "north", "switch": {"recovery_switch_port": "sw1/0/7"}},
        ),
        containment.Needed("ws-9", "unreachable", {"address": "ws-9.example", "ip": None, "mac": None, "switch": {}}),
        containment.Needed("v6", "error", {"address": "fd00::5", "ip": "fd00::5", "mac": None, "switch": {}}),
        containment.Needed("w", "isolate failed: \x1b]0;pwned\x07", {"address": None, "ip": None, "switch": {}}),
    ]  # fmt: skip
    text = containment.render_csv(needed, datetime(2026, 12, 3, tzinfo=UTC))
    assert "\x1b" not in text and "\x07" not in text  # a host's message in the reason: no terminal control
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[3]["reason"].startswith("isolate failed: ") and rows[3]["address"] == ""
    assert rows[0]["reason"].startswith("'=") and rows[0]["switch"] == "recovery_switch_port=sw1/0/7"
    assert rows[0]["mac"] == "aa:bb:cc:dd:ee:ff" and rows[1]["address"] == "ws-9.example"
    nft = containment.render_nft(needed, ["192.0.2.0/24"])
    assert "elements = { 10.0.0.5 }" in nft and "elements = { fd00::5 }" in nft
    assert "elements = { aa:bb:cc:dd:ee:ff }" in nft and "ip saddr 192.0.2.0/24 accept" in nft
    assert "ws-9.example" not in nft.replace("# ws-9.example", "")
    assert "# ws-9: no IP or MAC address known" in nft


def test_a_mac_is_kept_only_when_it_parses_as_one() -> None:
    from orchestrator.inventory import Host

    host = Host(name="h", address="10.0.0.1", port=None, user=None, connection="ssh", os="linux", tier=2,
                role="server", depends_on=[], depends_on_hosts=[], protected=False, site=None,
                reimage_method=None, restore_method=None, priority=100, groups=[], data_categories=[],
                execution_node=None, vars={"recovery_mac_address": "not-a-mac; rm -rf /"})  # fmt: skip
    assert containment.describe(host, None)["mac"] is None
    assert containment.describe(host, "02:00:00:00:00:01")["mac"] == "02:00:00:00:00:01"


def _cutoff_rows(db: str) -> list[tuple]:
    con = sqlite3.connect(db)
    rows = con.execute(
        "SELECT before, compromised_since IS NOT NULL, withdrawn_why FROM restore_decision ORDER BY id"
    ).fetchall()
    con.close()
    return rows


def test_the_two_spellings_of_a_restore_point_cannot_disagree(cli: Cli, fleet: str) -> None:
    """`host decide --rebuild --compromised-since` and `host restore-point` set one thing: the newest
    wins, in the plan's reason, `plan show`, `status` and the report alike, its audit entry naming the
    one it replaced; either is withdrawn with `--withdraw`."""
    triage(cli.db, {**FIRST, "db1": "unreachable"})
    cli.json("plan", "-i", fleet)

    said = cli.json(
        "host", "decide", "db1", "--rebuild", "--why", "console: encrypted",
        "--compromised-since", "2026-11-20T10:00:00Z", "--json",
    )  # fmt: skip
    assert said["compromised_since"].startswith("2026-11-20T10:00:00")
    assert said["restore_before"].startswith("2026-11-20T09:00:00")  # minus the usual margin
    reason = {m["host"]: m for m in cli.json("plan", "-i", fleet)["members"]}["db1"]["reason"]
    assert "rebuild decided by tester: console: encrypted" in reason
    assert (
        "restore point before 2026-11-20 09:00:00Z (tester said compromised since 2026-11-20 10:00:00Z"
        in reason
    )

    later = cli.json(
        "host", "restore-point", "db1", "--before", "2026-11-01T00:00:00Z", "--why", "EDR", "--json"
    )
    assert later["restore_before"].startswith("2026-11-01T00:00:00") and later["via"] == "host restore-point"
    plan = cli.json("plan", "-i", fleet)
    reason = {m["host"]: m for m in plan["members"]}["db1"]["reason"]
    assert "restore point before 2026-11-01 00:00:00Z (tester set it: EDR)" in reason
    assert "2026-11-20" not in reason  # the earlier cutoff is no longer in force anywhere
    listed = [(d["host"], d["decision"], d.get("restore_before")) for d in plan["decisions"]]
    assert listed == [("db1", "rebuild", None), ("db1", "restore point", "2026-11-01T00:00:00+00:00")]
    assert cli.json("status")["decisions"] == plan["decisions"]
    assert "restore point before 2026-11-01 00:00:00Z" in " ".join(cli("plan", "show").stdout.split())
    assert "restore point before 2026-11-01 00:00:00Z" in " ".join(cli("status").stdout.split())
    out = Path(cli.db).parent / "report.json"
    report = cli("report", "--format", "json", "-o", str(out))
    assert report.exit_code == 0, report.stderr
    assert [d["decision"] for d in json.loads(out.read_text())["decisions"]] == ["rebuild", "restore point"]
    html = Path(cli.db).parent / "report.html"
    assert cli("report", "--format", "html", "-o", str(html)).exit_code == 0
    assert "restore point before 2026-11-01 00:00:00Z" in html.read_text()

    con = sqlite3.connect(cli.db)
    entry = json.loads(
        con.execute("SELECT details FROM audit_log WHERE command = 'host restore-point'").fetchone()[0]
    )
    con.close()
    assert entry["replaces"]["via"] == "host decide --compromised-since"
    assert entry["replaces"]["restore_before"].startswith("2026-11-20T09:00:00")

    # And the other way round: a newer --compromised-since replaces the restore-point decision.
    cli.json("host", "decide", "db1", "--rebuild", "--why", "ransom note time",
             "--compromised-since", "2026-11-25T00:00:00Z", "--json")  # fmt: skip
    plan = cli.json("plan", "-i", fleet)
    assert [d.get("restore_before") for d in plan["decisions"]] == [None, "2026-11-24T23:00:00+00:00"]
    assert [r[2] for r in _cutoff_rows(cli.db)] == [
        "replaced by a newer restore-point decision", "replaced by a newer restore-point decision", None,
    ]  # fmt: skip

    # Withdrawing the decision withdraws the cutoff that came with it; the host's rules apply again.
    assert cli("host", "decide", "db1", "--withdraw", "--why", "wrong host").exit_code == 0
    plan = cli.json("plan", "-i", fleet)
    assert plan["decisions"] == [] and {m["host"]: m for m in plan["members"]}["db1"]["action"] == "hold"
    assert [r[2] for r in _cutoff_rows(cli.db)][-1] == "wrong host"
    refused = cli("host", "restore-point", "db1", "--withdraw", "--why", "x")
    assert refused.exit_code == 2 and "no standing restore-point decision" in refused.stderr
    commands = audit_commands(cli.db)
    assert commands.count("host decide") == 2 and commands.count("host decide withdraw") == 1


def test_a_restore_point_decision_is_withdrawn_like_a_decision(cli: Cli, fleet: str) -> None:
    triage(cli.db, FIRST)
    cli.json("plan", "-i", fleet)
    assert cli("host", "restore-point", "db1", "--accept", "--why", "matches the VPN log").exit_code == 0
    reason = {m["host"]: m for m in cli.json("plan", "-i", fleet)["members"]}["db1"]["reason"]
    assert "tester accepted the estimate: matches the VPN log" in reason
    both = cli("host", "restore-point", "db1", "--accept", "--withdraw", "--why", "x")
    assert both.exit_code == 2 and "exactly one of" in both.stderr
    gone = cli.json("host", "restore-point", "db1", "--withdraw", "--why", "VPN log was wrong", "--json")
    assert gone["withdrawn"] is True and gone["via"] == "host restore-point"
    plan = cli.json("plan", "-i", fleet)
    assert (
        plan["decisions"] == []
        and "restore point" not in {m["host"]: m for m in plan["members"]}["db1"]["reason"]
    )
    assert "host restore-point withdraw" in audit_commands(cli.db)
