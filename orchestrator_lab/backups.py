"""The lab's backups: one real restic repository on the protected backup host, one snapshot per lab
host at each backup time, taken with the host's own paths (/srv, /home, ...) so a restore puts files
back where the host keeps them.

Each backup runs restic in a throw-away mount namespace where the host's directories are bound over
/srv, /home, ... and the lab directory is reachable under /mnt: restic then records `/srv/data/x`, not
the lab's path, and `restic snapshots --host NAME --path /srv` behaves as on a real fleet.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator_lab import restic_key
from orchestrator_lab.layout import BACKED_UP
from orchestrator_lab.settings import LabPaths

STAGE = "/mnt"  # where a backup namespace sees the lab directory
REPO_IN_HOST = "srv/restic"
TIMEOUT = 120


def _env() -> dict[str, str]:
    # restic reads --time in local time; one restic per core at most, several run at once.
    return {**os.environ, "TZ": "UTC", "GOMAXPROCS": "1"}


class Repository:
    def __init__(self, paths: LabPaths, backup_host: str) -> None:
        self.paths = paths
        self.backup_host = backup_host
        self.path = paths.host(backup_host) / REPO_IN_HOST

    def _restic(self, *args: str, repo: str | None = None, password: str | None = None) -> str:
        cmd = [
            "restic",
            "--no-cache",
            "-r",
            repo or str(self.path),
            "--password-file",
            password or str(self.paths.restic_password),
            *args,
        ]
        return _run(cmd)

    def init(self) -> None:
        """Create the repository with a random password kept in the lab directory (0600; never in the
        database), then swap its calibrated key for a cheap one (see restic_key)."""
        self.paths.restic.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.restic_password, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._restic("init", "--quiet")
        master = json.loads(self._restic("cat", "masterkey"))
        calibrated = [p.name for p in (self.path / "keys").iterdir()]
        fast = restic_key.add_key(self.path, master, self.paths.restic_password.read_text().strip().encode())
        for key_id in calibrated:
            self._restic("--key-hint", fast, "key", "remove", key_id)

    def backup(self, host: str, when: datetime, tags: list[str]) -> None:
        """One snapshot of `host` dated `when`, taken in a mount namespace that shows the host's paths.
        `--force` skips the search for a parent snapshot (which reads every snapshot of the repository,
        a cost that grows with the lab); the files are read again, and deduplicated all the same."""
        fstab = self.paths.ns / f"{host}.fstab"
        if not fstab.exists():
            _write_fstab(fstab, self.paths, host, self.backup_host)
        repo = f"{STAGE}/{self.path.relative_to(self.paths.root)}"
        password = f"{STAGE}/{self.paths.restic_password.relative_to(self.paths.root)}"
        excludes = ["--exclude", f"/{REPO_IN_HOST}"] if host == self.backup_host else []
        restic = [
            "restic", "--no-cache", "-r", repo, "--password-file", password, "--quiet", "backup", "--force",
            "--host", host, "--time", when.strftime("%Y-%m-%d %H:%M:%S"),
            *(f"--tag={t}" for t in tags), *excludes, *(f"/{p}" for p in BACKED_UP),
        ]  # fmt: skip
        script = 'mount --all --fstab "$1" && shift && exec "$@"'
        _run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                script,
                "sh",
                str(fstab),
                *restic,
            ]
        )

    def snapshots(self) -> list[dict[str, Any]]:
        return json.loads(self._restic("snapshots", "--json"))


def _write_fstab(fstab: Path, paths: LabPaths, host: str, backup_host: str) -> None:
    """The lab directory under /mnt first (so binding /srv or /tmp cannot hide a lab living there),
    then the host's directories from it, and a private, empty `locks/` for this one restic.

    restic 0.14 (Debian 12) lists the repository's locks when it takes its own, and when another
    restic removes its lock in between, retries loading it for minutes ("no such file or directory").
    The lab's concurrent backups only add data (nothing prunes or checks while `up` runs), which is
    what those locks guard against, so each backup keeps its lock to itself."""
    fstab.parent.mkdir(parents=True, exist_ok=True)
    host_dir = paths.host(host).relative_to(paths.root)
    lines = [f"{_escape(str(paths.root))} {STAGE} none bind 0 0"]
    lines += [f"{_escape(f'{STAGE}/{host_dir}/{rel}')} /{rel} none bind 0 0" for rel in BACKED_UP]
    repo = paths.host(backup_host).relative_to(paths.root) / REPO_IN_HOST
    lines.append(f"restic-locks {_escape(f'{STAGE}/{repo}/locks')} tmpfs size=64k,mode=0700 0 0")
    fstab.write_text("\n".join(lines) + "\n")


def _escape(path: str) -> str:
    """fstab fields cannot hold spaces or tabs: octal escapes, as fstab(5) says."""
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


def _run(cmd: list[str]) -> str:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OrchestratorError(f"restic did not finish in {TIMEOUT} s: {' '.join(cmd[:6])} ...") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise OrchestratorError(
            f"restic failed ({' '.join(cmd[:4])} ...): {detail[-1] if detail else result.returncode}"
        )
    return result.stdout


def require_tools() -> None:
    for tool, package in (("restic", "restic"), ("unshare", "util-linux"), ("mount", "mount")):
        if shutil.which(tool) is None:
            raise OrchestratorError(f"the lab needs {tool}: apt-get install {package}")
