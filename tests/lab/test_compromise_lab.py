"""Host-controlled timestamps on the local lab (real sshd hosts, real restic, real ansible-playbook, the
real CLI): one infected host's indicator backdated to 2001, another's post-dated into next week, as an
attacker with root on them would (os.utime on the host's own files). Both are held for a person with
the reason in `plan show` and `status`, `run --all` recovers the rest, a person's decision releases
them, and each is restored from a snapshot taken before its real compromise. On the way: the audit
chain verifies against the head printed after each command, and every file and folder the commands
left on the controller is private.

This lab is this module's own (the run destroys its infections): 7 hosts.
"""

from __future__ import annotations

import json
import os
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.store import Store
from orchestrator.store.models import RestorePoint
from tests.conftest import Cli, needs_lab

pytestmark = [pytest.mark.lab, needs_lab]
SEED = 3  # dns-01 linux_locker, ehrdb-01 lockbit3, ehrapp-01 persistence, pacs-01 lockbit2
BACKDATED = "pacs-01"
POSTDATED = "ehrapp-01"
HONEST = ("dns-01", "ehrdb-01")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    from orchestrator_lab import LabConfig, down, free_net, up

    directory = tmp_path_factory.mktemp("timelab") / "lab"
    up(LabConfig(dir=directory, hosts=7, seed=SEED, net=free_net(), infected=0.8))
    try:
        yield directory
    finally:
        down(directory)


def evidence_paths(cli: Cli, host: str) -> list[str]:
    """The host paths behind its triage matches, as `triage show` reports them."""
    shown = cli.json("triage", "show", host)
    paths = []
    for match in shown["latest"]["matches"]:
        if match["severity"] == "info":
            continue
        paths += re.findall(r"(?:^|\s)path=(/\S+)", match["evidence"])
    return sorted(set(paths))


def touch(lab: Path, host: str, paths: list[str], when: datetime) -> int:
    """What root on the host does: set the files' times (never following a link out of the host)."""
    done = 0
    for path in paths:
        target = lab / "hosts" / host / path.lstrip("/")
        if target.is_symlink() or not target.exists():
            continue
        os.utime(target, (when.timestamp(), when.timestamp()))
        done += 1
    return done


def head_of(stderr: str) -> str | None:
    found = re.findall(r"^audit head: entry \d+ ([0-9a-f]{64}) ", stderr, re.MULTILINE)
    return found[-1] if found else None


def not_private(*roots: Path) -> list[str]:
    out = []
    for root in roots:
        for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                out.append(f"{path} {oct(mode & 0o777)}")
    return out


@pytest.fixture
def loose_umask():
    """The operator's shell: umask 022, so the commands must make their files private themselves."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_backdated_and_postdated_hosts_wait_for_a_person_and_the_rest_recovers(
    lab: Path, tmp_path: Path, loose_umask: None
) -> None:
    cli = Cli(tmp_path / "state" / "recovery.db")
    cli.db.parent.mkdir()
    inv = str(lab / "inventory")
    runs = str(tmp_path / "state" / "runs")
    manifest = json.loads((lab / "manifest.json").read_text())
    truth = {
        h["name"]: datetime.fromisoformat(h["scenario"]["compromise_time"].replace("Z", "+00:00"))
        for h in manifest["hosts"]
        if h["scenario"].get("compromise_time")
    }
    assert {BACKDATED, POSTDATED, *HONEST} <= set(truth)

    first = cli("triage", "-i", inv, "--timeout", "20")
    assert first.exit_code in (0, 1), first.output + first.stderr
    back = evidence_paths(cli, BACKDATED)
    post = evidence_paths(cli, POSTDATED)
    assert back and post
    assert touch(lab, BACKDATED, back[:1], datetime(2001, 1, 1, tzinfo=UTC)) == 1
    assert touch(lab, POSTDATED, post, datetime.now(UTC) + timedelta(days=7)) >= 1

    second = cli("triage", "-i", inv, "--timeout", "20", "--json")
    assert second.exit_code in (0, 1), second.stderr
    times = {r["host"]: r["compromise_time"] for r in json.loads(second.stdout)["results"]}
    assert times[BACKDATED].startswith("2001-01-01")
    assert datetime.fromisoformat(times[POSTDATED]) > datetime.now(UTC)

    planned = cli("plan", "-i", inv)
    assert planned.exit_code == 0, planned.stderr
    head = head_of(planned.stderr)
    assert head is not None
    shown = cli.json("plan", "show")
    members = {m["host"]: m for m in shown["members"]}
    text = cli("plan", "show").stdout
    assert "far outside the fleet" in text and "in the future" in text
    for host, why in ((BACKDATED, "far outside the fleet"), (POSTDATED, "in the future")):
        status = cli("status", host)
        assert status.exit_code == 0 and why in status.stdout, status.stdout
        assert members[host]["action"] == "hold" and members[host]["wave"] is None
    assert cli("plan", "approve", "--by", "crisis cell").exit_code == 0

    result = cli("run", "-i", inv, "--all", "--yes", "--runs-dir", runs, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    outcome = {h["name"]: h for h in report["hosts"]}
    assert report["stopped"] is None
    for host in HONEST:
        assert outcome[host]["outcome"] == "recovered", outcome[host]
    assert BACKDATED not in outcome and POSTDATED not in outcome  # never started: no wave of theirs
    assert cli("audit", "verify", "--expect", head).exit_code == 0

    # The person's decision: the post-dated estimate cannot be accepted (it lies in the future) ...
    refused = cli("host", "restore-point", POSTDATED, "--accept", "--why", "as triage says")
    assert refused.exit_code == 2 and "future" in refused.stderr
    # ... so they set both from what they know (here: the lab's ground truth, as an EDR would give it).
    for host in (BACKDATED, POSTDATED):
        before = truth[host].isoformat()
        decided = cli("host", "restore-point", host, "--before", before, "--why", "EDR timeline")
        assert decided.exit_code == 0, decided.stderr
        assert head_of(decided.stderr) is not None
    assert cli("plan", "-i", inv).exit_code == 0
    assert "EDR timeline" in cli("plan", "show").stdout
    assert cli("plan", "approve", "--by", "crisis cell").exit_code == 0
    result = cli("run", "-i", inv, "--all", "--yes", "--runs-dir", runs, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    outcome = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
    for host in (BACKDATED, POSTDATED):
        assert outcome[host]["outcome"] == "recovered", outcome[host]
    with Store.open(str(cli.db)).read() as session:
        points = {p.host_name: p for p in session.exec(select(RestorePoint))}
    for host in (BACKDATED, POSTDATED):
        taken = points[host].snapshot_time
        assert taken is not None
        assert (taken if taken.tzinfo else taken.replace(tzinfo=UTC)) < truth[host]
    assert cli("audit", "verify", "--expect", head).exit_code == 0

    report_file = tmp_path / "state" / "report.html"
    assert cli("report", "-o", str(report_file)).exit_code == 0
    assert not_private(*cli.db.parent.iterdir()) == []
