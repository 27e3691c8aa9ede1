"""End to end on the local lab (real sshd hosts, real restic, real ansible-playbook): triage, plan,
approve, then `run --check` changes nothing, and `run --all` rebuilds the infected hosts from their
clean restore point, verifies the clean ones, leaves the protected ones alone and keeps the evidence.

This lab is this module's own (its own directory and addresses): the run destroys its infections.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from sqlmodel import select

from orchestrator.store import Store
from orchestrator.store.models import EvidenceItem, Host, RestorePoint
from tests.conftest import Cli, needs_lab

pytestmark = [
    pytest.mark.lab,
    needs_lab,
]
LAB_HOSTS = 22
NET = "127.93.0.0/16"
# Directories a host's own processes write to while it runs (sshd's pid and logs): not its data.
VOLATILE = ("run/", "var/log/")
BACKED_UP = ("etc/cron.d", "etc/systemd/system", "home", "opt", "root", "srv")


def tree(root: Path, skip: tuple[str, ...] = VOLATILE) -> dict[str, str]:
    """relative path -> sha256 (or link target) of everything under `root`."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if any(rel.startswith(s) for s in skip):
            continue
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            out[rel + "/"] = oct(path.stat().st_mode & 0o7777)
    return out


def fleet(lab: Path) -> dict[str, dict[str, str]]:
    return {h.name: tree(h) for h in sorted((lab / "hosts").iterdir()) if h.is_dir()}


def changes(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> list[str]:
    """host:path for every file or directory added, removed or changed."""
    out = []
    for host in sorted(before.keys() | after.keys()):
        b, a = before.get(host, {}), after.get(host, {})
        out += [f"{host}:{p}" for p in sorted(b.keys() | a.keys()) if b.get(p) != a.get(p)]
    return out


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    from orchestrator_lab import LabConfig, down, up

    directory = tmp_path_factory.mktemp("execlab") / "lab"
    up(LabConfig(dir=directory, hosts=LAB_HOSTS, seed=11, net=NET, infected=0.45))
    try:
        yield directory
    finally:
        down(directory)


@pytest.fixture(scope="module")
def planned(lab: Path, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    cli = Cli(tmp_path_factory.mktemp("execdb") / "recovery.db")
    inv = str(lab / "inventory")
    result = cli("triage", "-i", inv, "--timeout", "20")
    assert result.exit_code in (0, 1), result.output
    assert cli("plan", "-i", inv).exit_code == 0
    assert cli("plan", "approve", "--by", "tester").exit_code == 0
    return cli


def _dependencies(lab: Path) -> dict[str, list[str]]:
    from orchestrator import inventory

    return {n: h.depends_on_hosts for n, h in inventory.load([str(lab / "inventory")]).hosts.items()}


def manifest(lab: Path) -> dict:
    return json.loads((lab / "manifest.json").read_text())


def test_check_mode_and_declining_change_nothing_then_the_run_recovers(
    lab: Path, planned: Cli, tmp_path: Path
) -> None:
    inv = str(lab / "inventory")
    runs = str(tmp_path / "runs")
    before = fleet(lab)

    result = planned("run", "-i", inv, "--all", "--check", "--runs-dir", runs)
    assert result.exit_code == 0, result.output + result.stderr
    assert changes(before, fleet(lab)) == [], "check mode changed files on lab hosts"
    with Store.open(str(planned.db)).read() as s:
        assert {h.state for h in s.exec(select(Host))} <= {"new", "planned"}

    result = planned("run", "-i", inv, "--all", "--runs-dir", runs, input="n\n")
    assert result.exit_code == 2 and "not confirmed" in result.stderr
    assert changes(before, fleet(lab)) == []

    result = planned("run", "-i", inv, "--all", "--yes", "--runs-dir", runs, "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    after = fleet(lab)
    store = Store.open(str(planned.db))
    m = manifest(lab)
    hosts = {h["name"]: h for h in m["hosts"]}
    outcome = {h["name"]: h for h in report["hosts"]}
    rebuilt = sorted(n for n, h in outcome.items() if h["action"] == "rebuild")
    verified = sorted(n for n, h in outcome.items() if h["action"] == "verify")
    assert rebuilt and verified
    # Every host is recovered, except those depending on a host on hold (nobody could reach it): they
    # are rebuilt or verified too, and wait, isolated, for it (dependencies gate reconnection only).
    plan = planned.json("plan", "show", "--approved")
    held = {m["host"] for m in plan["members"] if m["action"] == "hold"}
    deps = _dependencies(lab)
    behind = set(held)
    for _ in range(len(hosts)):
        behind |= {n for n, ds in deps.items() if set(ds) & behind}
    for n in rebuilt + verified:
        expected = "awaiting" if n in behind else "recovered"
        assert outcome[n]["outcome"] == expected, (n, outcome[n])
    # Every infected or suspicious host the triage could read was rebuilt.
    readable_dirty = sorted(
        n for n, h in hosts.items()
        if h["scenario"]["expected_verdict"] in ("infected", "suspicious") and not h["protected"]
        and all(d not in rebuilt for d in ()) and n in outcome
    )  # fmt: skip
    assert set(readable_dirty) <= set(rebuilt)

    with store.read() as s:
        points = {p.host_name: p for p in s.exec(select(RestorePoint))}
        items = list(s.exec(select(EvidenceItem)))
    for name in rebuilt:
        # The newest snapshot before the host's real compromise time, restored byte for byte.
        compromise = datetime.fromisoformat(hosts[name]["scenario"]["compromise_time"].replace("Z", "+00:00"))
        snaps = [
            s
            for s in hosts[name]["snapshots"]
            if datetime.fromisoformat(s["time"].replace("Z", "+00:00")) < compromise
        ]
        point = points[name]
        assert point.snapshot_id in {s["id"] for s in snaps}
        restored = tmp_path / "snap" / name
        subprocess.run(
            ["restic", "--no-cache", "-r", str(lab / "hosts" / m["backup_host"] / "srv" / "restic"),
             "--password-file", str(lab / "restic" / "password"), "restore", point.snapshot_id,
             "--target", str(restored), "--quiet"],
            check=True,
        )  # fmt: skip
        for directory in BACKED_UP:
            expected = tree(restored / directory, ())
            got = {
                k: v
                for k, v in tree(lab / "hosts" / name / directory, ()).items()
                if not k.startswith(".ansible")
            }
            assert {k: v for k, v in expected.items() if not k.endswith("/")} == {
                k: v for k, v in got.items() if not k.endswith("/")
            }, f"{name}:/{directory} differs from snapshot {point.snapshot_id[:8]}"
        # Evidence: every planted file that was on the host is on the evidence store, hash checked.
        mine = {i.path: i for i in items if i.host_name == name}
        store_dir = lab / "hosts" / m["evidence_host"] / "srv" / "evidence" / name
        check = subprocess.run(
            ["sha256sum", "--check", "--strict", "--quiet", "MANIFEST.sha256"], cwd=store_dir
        )
        assert check.returncode == 0
        for item in mine.values():
            # Stored under a name the controller made (files/<index>); the host's path is data.
            stored = lab / "hosts" / m["evidence_host"] / item.stored_at.split(":", 1)[1].lstrip("/")
            assert stored.parent in (store_dir, store_dir / "files")
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == item.sha256
            assert item.collected_by == "tester" and item.stored_at
        assert "triage.json" in mine
        notes = [p for p in mine if p.endswith(("README.txt", "Restore-My-Files.txt"))]
        kind = hosts[name]["scenario"]["kind"]
        if kind in ("lockbit3", "lockbit2"):
            assert notes, f"{name} ({kind}): no ransom note collected"
    for name in verified:
        assert {k: v for k, v in after[name].items() if not k.startswith("root/.ansible")} == {
            k: v for k, v in before[name].items() if not k.startswith("root/.ansible")
        }, f"verified host {name} changed"
    for name, host in hosts.items():
        if host["protected"] and name != m["evidence_host"]:
            assert after[name] == before[name], f"protected host {name} changed"
        if host["protected"]:
            with store.read() as s:
                row = s.exec(select(Host).where(Host.name == name)).one()
            assert row.state not in ("wiping", "wiped", "reimaging", "reimaged", "restoring", "restored")
    # The evidence store only gained the evidence (and Ansible's temp directory for the transfer).
    evidence_after = {
        k: v
        for k, v in after[m["evidence_host"]].items()
        if not k.startswith(("srv/evidence/", "root/.ansible"))
    }
    evidence_before = {
        k: v for k, v in before[m["evidence_host"]].items() if not k.startswith("srv/evidence/")
    }
    assert evidence_after == evidence_before

    # A fresh triage finds every recovered host clean.
    recovered = ",".join(rebuilt + verified)
    result = planned("triage", "-i", inv, "-l", recovered, "--json")
    assert result.exit_code == 0, result.output
    verdicts = {r["host"]: r["verdict"] for r in json.loads(result.stdout)["results"]}
    assert verdicts == dict.fromkeys(rebuilt + verified, "clean")
