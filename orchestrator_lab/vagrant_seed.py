"""`orchestrator lab infect --vagrant`: the local lab's LockBit incident, planted on the Vagrant lab's
real machines.

The same history as on the local lab (scenarios.py, hostdata.py): each machine's data written over the
past year, then the intruder's foothold and the encryption, as `FileOp`s replayed in time order. They
are replayed on a staging tree on the controller (which starts from the machine's golden image, as the
machine does) and shipped to the machine over SSH as a tar stream, with their times; at each backup
time the machine itself runs restic, dated then, into the repository on the backup machine over SFTP.
So the snapshots before the compromise hold exactly what the machine had then, as on the local lab.

The manifest (`.vagrant-lab/manifest.json`) records each machine's scenario (expected verdict,
compromise time), its snapshots, and the SHA-256 of every backed-up file at the last clean backup: what
a restore must bring back byte for byte.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from orchestrator.errors import OrchestratorError
from orchestrator_lab import catalog, scenarios, trees, vagrant_images
from orchestrator_lab.blueprint import HostPlan, iso, timeline
from orchestrator_lab.hostdata import FileOp, data_ops
from orchestrator_lab.layout import BACKED_UP

SSH_TIMEOUT = 600
# Where a machine keeps the backup agent's credentials while the history is replayed (not backed up,
# removed afterwards: no secret stays on a machine).
AGENT_DIR = "/var/lib/lab-backup"


@dataclass(frozen=True)
class Machine:
    name: str
    ip: str
    image: str
    scenario: str


def spec() -> dict[str, Any]:
    return yaml.safe_load((catalog.DATA / "vagrant_lab.yml").read_text())


def machines() -> list[Machine]:
    return [Machine(name, m["ip"], m["image"], m["scenario"]) for name, m in spec()["machines"].items()]


class Lab:
    """The lab script's state directory (.vagrant-lab): key, known_hosts, restic password, backup key."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        for name in ("private_key", "known_hosts", "restic-password", "backup_key"):
            if not (directory / name).is_file():
                raise OrchestratorError(
                    f"{directory / name} is missing: start the lab first (scripts/vagrant-lab.sh up)"
                )
        self.ssh_args = [
            "-i", str(directory / "private_key"),
            "-o", f"UserKnownHostsFile={directory / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=30",
        ]  # fmt: skip

    def run(self, machine: Machine, command: str, data: bytes | None = None) -> str:
        """`command` as root on the machine (sudo), `data` on its standard input."""
        result = subprocess.run(
            ["ssh", *self.ssh_args, f"vagrant@{machine.ip}", "sudo", "sh", "-c", shlex.quote(command)],
            input=data if data is not None else b"",
            capture_output=True,
            timeout=SSH_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            tail = result.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise OrchestratorError(f"{machine.name}: {command.split()[0]} failed: {' / '.join(tail)}")
        return result.stdout.decode(errors="replace")

    def restic(self, backup: Machine) -> list[str]:
        """restic on the controller, against the repository on the backup machine."""
        return [
            "restic", "--no-cache",
            "-r", f"sftp:restic@{backup.ip}:{spec()['repository']}",
            "--password-file", str(self.dir / "restic-password"),
            "--option", "sftp.command=" + shlex.join(
                ["ssh", "-i", str(self.dir / "backup_key"), *self.ssh_args[2:], f"restic@{backup.ip}", "-s", "sftp"]
            ),
        ]  # fmt: skip


def seed(lab_dir: Path, seed_value: int = 1) -> dict[str, Any]:
    lab = Lab(lab_dir)
    fleet = machines()
    backup = next(m for m in fleet if m.name == spec()["backup_host"])
    _repository(lab, backup)
    provisioning_key = (lab_dir / "private_key.pub").read_text().strip()
    now = datetime.now(UTC).replace(microsecond=0)
    tl = timeline(seed_value, now)
    campaign = scenarios.campaign(seed_value)
    hosts = []
    for machine in fleet:
        hosts.append(_seed_machine(lab, machine, backup, provisioning_key, seed_value, tl, campaign))
    snapshots = json.loads(_check([*lab.restic(backup), "snapshots", "--json"]))
    for host in hosts:
        compromise = host["scenario"]["compromise_time"]
        host["snapshots"] = [
            {
                "id": s["id"],
                "time": iso(datetime.fromisoformat(s["time"])),
                "tags": s.get("tags", []),
                "before_compromise": compromise is None
                or iso(datetime.fromisoformat(s["time"])) < compromise,
            }
            for s in sorted(snapshots, key=lambda s: s["time"])
            if s["hostname"] == host["name"]
        ]
    manifest = {
        "seed": seed_value,
        "created_at": iso(now),
        "infection_time": iso(tl.infection),
        "backup_host": backup.name,
        "campaign": campaign.to_dict(),
        "backups": tl.to_dict()["backups"],
        "hosts": hosts,
    }
    tmp = lab_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, lab_dir / "manifest.json")
    return manifest


def _repository(lab: Lab, backup: Machine) -> None:
    """The restic user accepts the lab's backup key; the repository is created once."""
    public = (lab.dir / "backup_key.pub").read_text().strip()
    lab.run(
        backup,
        "set -e; install -d -m 700 -o restic -g restic /srv/restic/.ssh; "
        f"printf '%s\\n' {shlex.quote(public)} > /srv/restic/.ssh/authorized_keys; "
        "chown restic:restic /srv/restic/.ssh/authorized_keys; chmod 600 /srv/restic/.ssh/authorized_keys",
    )
    exists = "config" in lab.run(backup, f"ls {spec()['repository']} 2>/dev/null || true").split()
    if not exists:
        _check([*lab.restic(backup), "init", "--quiet"])


def _seed_machine(
    lab: Lab,
    machine: Machine,
    backup: Machine,
    provisioning_key: str,
    seed_value: int,
    tl: Any,
    campaign: scenarios.Campaign,
) -> dict[str, Any]:
    group = catalog.group(machine.image)
    rec = group["recovery"]
    host = HostPlan(
        name=machine.name,
        address=machine.ip,
        port=22,
        os="linux",
        group=machine.image,
        role=rec["role"],
        tier=rec["tier"],
        protected=bool(rec.get("protected", False)),
        kind=machine.scenario,
    )
    data = data_ops(host, seed_value, tl)
    planted = scenarios.plant(host, seed_value, tl, data, campaign)
    ops = sorted(data + planted.ops, key=lambda op: op.when)
    _install_agent(lab, machine, backup)
    clean_hashes: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="vagrant-seed-") as tmp:
        stage = Path(tmp)
        with tarfile.open(
            fileobj=io.BytesIO(vagrant_images.pack(machine.image, provisioning_key, tl.installed))
        ) as tar:
            tar.extractall(stage, filter="fully_trusted")  # our own image
        done = 0
        written: set[str] = set()
        for tag, when in tl.backups:  # two nightlies before the infection, an hourly one after it
            upto = next((i for i in range(done, len(ops)) if ops[i].when >= when), len(ops))
            written |= _ship(lab, machine, stage, ops[done:upto])
            done = upto
            _backup(lab, machine, when, tag)
            if planted.compromise is None or when < planted.compromise:
                clean_hashes = _hashes(stage, written)
        _ship(lab, machine, stage, ops[done:])
    lab.run(machine, f"rm -rf {AGENT_DIR}")
    record = scenarios.scenario_record(host, planted)
    return {
        "name": machine.name,
        "address": machine.ip,
        "image": machine.image,
        "protected": host.protected,
        "scenario": record,
        "clean_files": clean_hashes,
    }


def _install_agent(lab: Lab, machine: Machine, backup: Machine) -> None:
    """The backup agent's key, the backup machine's host key and the repository password, 0600."""
    known = [
        line
        for line in (lab.dir / "known_hosts").read_text().splitlines()
        if line.startswith(f"{backup.ip} ")
    ]
    if not known:
        raise OrchestratorError(f"no host key for {backup.name} in {lab.dir / 'known_hosts'}")
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w") as tar:
        for name, data in (
            ("key", (lab.dir / "backup_key").read_bytes()),
            ("known_hosts", (known[-1] + "\n").encode()),
            ("password", (lab.dir / "restic-password").read_bytes()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    lab.run(machine, f"umask 077; mkdir -p {AGENT_DIR} && tar -xf - -C {AGENT_DIR}", bundle.getvalue())


def _backup(lab: Lab, machine: Machine, when: datetime, tag: str) -> None:
    """restic on the machine, dated `when` (UTC), of the directories a nightly backup saves."""
    paths = " ".join("/" + p for p in BACKED_UP)
    excludes = "--exclude /srv/restic --exclude /srv/evidence"
    sftp = (
        f"ssh -i {AGENT_DIR}/key -o UserKnownHostsFile={AGENT_DIR}/known_hosts -o StrictHostKeyChecking=yes "
        f"-o BatchMode=yes restic@{spec()['machines'][spec()['backup_host']]['ip']} -s sftp"
    )
    backup_ip = spec()["machines"][spec()["backup_host"]]["ip"]
    lab.run(
        machine,
        f"TZ=UTC restic --no-cache -r sftp:restic@{backup_ip}:{spec()['repository']} "
        f"--password-file {AGENT_DIR}/password --option {shlex.quote('sftp.command=' + sftp)} --quiet "
        f"backup --force --host {machine.name} --tag lab --tag {tag} "
        f"--time {shlex.quote(when.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S'))} {excludes} {paths}",
    )


def _ship(lab: Lab, machine: Machine, stage: Path, ops: list[FileOp]) -> set[str]:
    """Replay `ops` on the staging tree, then make the machine match: files removed by the history
    (renamed by a locker) are deleted, the rest sent as a tar stream with their times and modes.
    Returns the paths written."""
    if not ops:
        return set()
    trees.apply(stage, ops)
    removed = {op.path for op in ops if op.action == "encrypt"}
    touched = {op.target if op.action == "encrypt" else op.path for op in ops}
    removed -= touched
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for rel in sorted(touched):
            if (stage / rel).is_symlink() or (stage / rel).exists():
                tar.add(stage / rel, arcname=rel, recursive=False)
    remove = " ".join(shlex.quote("/" + rel) for rel in sorted(removed))
    command = (f"rm -f -- {remove}; " if remove else "") + "tar -xpf - -C / --no-overwrite-dir"
    lab.run(machine, command, buffer.getvalue())
    return touched


def _hashes(stage: Path, written: set[str]) -> dict[str, str]:
    """SHA-256 of each file the history wrote under a backed-up directory and that still exists."""
    out = {}
    for rel in written:
        path = stage / rel
        if rel.startswith(tuple(p + "/" for p in BACKED_UP)) and path.is_file() and not path.is_symlink():
            out["/" + rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def _check(cmd: list[str]) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=SSH_TIMEOUT, check=False)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise OrchestratorError(
            f"restic on the controller failed: {lines[-1] if lines else result.returncode}"
        )
    return result.stdout
