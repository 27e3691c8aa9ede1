"""Starting and stopping the Windows stand-in's server process (`python -m orchestrator_lab.windows`).

One detached process serves every Windows host of a lab, one listen address each; `start()` returns once
the process has written its pid file, which it does only after every address is bound.

Library API for the lab: `write_credentials()`, `start()`, `stop()`, `Endpoint`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchestratorError

DEFAULT_PORT = 5985


@dataclass(frozen=True)
class Endpoint:
    """One stand-in host: where it listens and the state file it answers from."""

    address: str
    port: int
    state: Path
    credentials: Path | None = None  # per-host accounts; default: the process-wide credentials file

    def listen(self) -> str:
        return f"{self.address}:{self.port}"


def write_credentials(
    path: Path,
    users: dict[str, str],
    *,
    basic: bool = True,
    ntlm: bool = True,
    allow_unencrypted: bool = True,
) -> None:
    """Write the accounts file (mode 0600): local account name -> password, plus the listener's settings
    (Basic/Negotiate enabled, AllowUnencrypted as in `winrm/config/service`)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "users": [{"username": u, "password": p} for u, p in users.items()],
        "basic": basic,
        "ntlm": ntlm,
        "allow_unencrypted": allow_unencrypted,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)


def start(
    endpoints: Sequence[Endpoint],
    credentials: Path,
    *,
    pid_file: Path,
    log_file: Path,
    timeout: float = 15.0,
    verbose: bool = False,
) -> int:
    """Start one detached server process for `endpoints`; return its pid once every address is bound."""
    pid_file, log_file = Path(pid_file), Path(log_file)
    pid_file.unlink(missing_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "orchestrator_lab.windows", "--credentials", str(credentials)]
    for ep in endpoints:
        argv += ["--listen", ep.listen(), "--state", str(ep.state)]
        if ep.credentials is not None:
            argv += ["--host-credentials", str(ep.credentials)]
    argv += ["--pid-file", str(pid_file), "--log-file", str(log_file)] + (["--verbose"] if verbose else [])
    with open(os.devnull, "rb") as devnull, open(log_file, "ab") as log_out:
        proc = subprocess.Popen(argv, stdin=devnull, stdout=log_out, stderr=log_out, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise OrchestratorError(f"WinRM stand-in exited with code {proc.returncode}: {_tail(log_file)}")
        if pid_file.exists() and pid_file.read_text().strip() == str(proc.pid):
            return proc.pid
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise OrchestratorError(f"WinRM stand-in did not start within {timeout:.0f}s: {_tail(log_file)}")


def stop(pid: int, timeout: float = 5.0) -> bool:
    """Stop a server started by `start()` (SIGTERM, then SIGKILL); False if it was not running."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    return True


def _alive(pid: int) -> bool:
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
