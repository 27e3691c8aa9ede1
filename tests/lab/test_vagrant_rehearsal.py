"""The whole rehearsal on the Vagrant lab's real virtual machines, as the README (docs/vagrant.md) has a
user type it: seed the LockBit incident, triage, plan, approve, `run --all` (the infected machines are
destroyed and brought up again from the box, their new host keys published from the serial console,
their data restored with restic from the backup machine), then a new triage.

Collected only inside the lab's network namespace, with the machines up (`make test-vagrant`, which
runs scripts/vagrant-lab.sh: it sets ORCHESTRATOR_VAGRANT_LAB); tests/conftest.py leaves it out of
every other run.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime
from pathlib import Path

from sqlmodel import select

from orchestrator.store import Store
from orchestrator.store.models import RestorePoint
from orchestrator_lab import vagrant_seed
from orchestrator_lab.layout import BACKED_UP
from tests.conftest import ROOT, Cli

INVENTORY = str(ROOT / "inventory" / "vagrant")
LAB = ROOT / ".vagrant-lab"
PACK = str(LAB / "site-pack.yml")  # the lab's backup agent key, trusted (scripts/vagrant-lab.sh)
# What Ansible itself leaves in the home directories it runs from.
ANSIBLE_TEMP = ("/root/.ansible/", "/home/vagrant/.ansible/")


def remote_hashes(lab: vagrant_seed.Lab, machine: vagrant_seed.Machine) -> dict[str, str]:
    """path -> SHA-256 of every regular file under the backed-up directories of the machine."""
    dirs = " ".join("/" + d for d in BACKED_UP)
    out = lab.run(machine, f"find {dirs} -xdev -type f -print0 2>/dev/null | xargs -0 -r sha256sum")
    hashes = {}
    for line in out.splitlines():
        digest, _, path = line.partition("  ")
        hashes[path] = digest
    return hashes


def snapshot_hashes(lab: vagrant_seed.Lab, backup: vagrant_seed.Machine, snapshot: str, target: Path) -> dict:
    subprocess.run([*lab.restic(backup), "restore", snapshot, "--target", str(target), "--quiet"], check=True)
    return {
        "/" + str(p.relative_to(target)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in target.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def test_the_rehearsal_recovers_every_infected_machine(tmp_path: Path) -> None:
    db = LAB / "rehearsal.db"  # kept: bench/vagrant.py reads the stage durations from it
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    cli = Cli(db)
    lab = vagrant_seed.Lab(LAB)
    fleet = {m.name: m for m in vagrant_seed.machines()}
    backup = fleet[vagrant_seed.spec()["backup_host"]]

    # Seed: the same scenarios as the local lab, backups taken by the machines themselves.
    result = cli("lab", "infect", "--vagrant", "--vagrant-dir", str(LAB), "--json")
    assert result.exit_code == 0, result.output + result.stderr
    manifest = json.loads(result.stdout)
    hosts = {h["name"]: h for h in manifest["hosts"]}
    expected = {n: h["scenario"]["expected_verdict"] for n, h in hosts.items()}
    assert sorted(v for v in expected.values()) == ["clean", "infected", "infected", "infected"]
    for name, host in hosts.items():
        assert any(s["before_compromise"] for s in host["snapshots"]), f"{name}: no clean snapshot"

    # Triage finds what was planted.
    result = cli("triage", "-i", INVENTORY, "--pack", PACK, "--timeout", "120", "--json")
    assert result.exit_code in (0, 1), result.output + result.stderr
    verdicts = {r["host"]: r["verdict"] for r in json.loads(result.stdout)["results"]}
    assert verdicts == expected

    assert cli("plan", "-i", INVENTORY).exit_code == 0
    assert cli("plan", "approve", "--by", "tester").exit_code == 0
    result = cli(
        "run",
        "-i",
        INVENTORY,
        "--pack",
        PACK,
        "--all",
        "--yes",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--json",
    )
    assert result.exit_code == 0, result.output + result.stderr
    outcome = {h["name"]: h for h in json.loads(result.stdout)["hosts"]}
    rebuilt = sorted(n for n, h in outcome.items() if h["action"] == "rebuild")
    assert rebuilt == sorted(n for n, v in expected.items() if v == "infected")
    assert all(outcome[n]["outcome"] == "recovered" for n in outcome), outcome

    # A new triage finds every machine clean, the rebuilt ones reached with their new host keys.
    result = cli("triage", "-i", INVENTORY, "--pack", PACK, "--timeout", "120", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    assert {r["host"]: r["verdict"] for r in json.loads(result.stdout)["results"]} == dict.fromkeys(
        expected, "clean"
    )

    # The restored files are the pre-infection backup's, byte for byte.
    with Store.open(str(cli.db)).read() as s:
        points = {p.host_name: p for p in s.exec(select(RestorePoint))}
    for name in rebuilt:
        compromise = datetime.fromisoformat(hosts[name]["scenario"]["compromise_time"].replace("Z", "+00:00"))
        point = points[name]
        clean_ids = {
            s["id"]
            for s in hosts[name]["snapshots"]
            if datetime.fromisoformat(s["time"].replace("Z", "+00:00")) < compromise
        }
        assert point.snapshot_id in clean_ids, f"{name}: restored from {point.snapshot_id[:8]}"
        on_machine = remote_hashes(lab, fleet[name])
        in_backup = snapshot_hashes(lab, backup, point.snapshot_id, tmp_path / "snap" / name)
        assert in_backup, f"{name}: empty snapshot"
        differ = sorted(
            p for p, h in in_backup.items() if on_machine.get(p) != h and not p.startswith(ANSIBLE_TEMP)
        )
        assert differ == [], f"{name}: differs from snapshot {point.snapshot_id[:8]}: {differ[:5]}"
        # ... and those are the files the machine had before the incident (the seed's own record).
        for path, digest in hosts[name]["clean_files"].items():
            assert in_backup.get(path) == digest, f"{name}:{path} not as before the incident"
        assert not [p for p in on_machine if p.endswith(".lockbit")], f"{name}: encrypted files left"
