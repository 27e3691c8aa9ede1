"""The lab's Windows hosts: a protocol-faithful WS-Management/WinRS stand-in, one listen address per host.

    python -m orchestrator.lab.winrm_server --listen 127.42.0.21:5985 --state hosts/WIN01/state.json \\
        [--listen 127.42.0.22:5985 --state hosts/WIN02/state.json ...] --credentials winrm-users.json \\
        [--pid-file pids/winrm.pid] [--log-file logs/winrm.log] [--verbose]

pywinrm (unmodified) and Ansible's winrm connection talk to it exactly as to a Windows host over HTTP:
Basic or NTLM, NTLM with MS-WSMV message encryption. It does not run PowerShell: it answers from each
host's scenario state (see `orchestrator.lab.winrm`, whose docstring lists what only real Windows, the
Vagrant lab, can confirm). `--listen`/`--state` pairs are matched in order, so one process can serve every
Windows host of a lab (fewer processes, one import) or one host each; the pid file is written once every
address is bound, which is what `start()` waits for.

Library API for the lab: `write_credentials()`, `start()`, `stop()`, `Endpoint`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
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
    argv = [sys.executable, "-m", "orchestrator.lab.winrm", "--credentials", str(credentials)]
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


# -- the server process ---------------------------------------------------------------------------------
def _parse_listen(value: str) -> tuple[str, int]:
    address, _, port = value.rpartition(":")
    if not address:
        return value, DEFAULT_PORT
    return address, int(port)


def serve(endpoints: Sequence[Endpoint], credentials: Path, pid_file: Path | None = None) -> None:
    """Serve until SIGTERM/SIGINT. Binds every address before writing the pid file."""
    from orchestrator.lab.winrm.server import Credentials, WSManServer, ntlm_user_lines
    from orchestrator.lab.winrm.shells import Host

    default_creds = Credentials.load(credentials)
    hosts = []
    for ep in endpoints:
        creds = Credentials.load(ep.credentials) if ep.credentials else default_creds
        hosts.append((Host(ep.address, ep.port, ep.state, creds.users), creds))
    # pyspnego's NTLM acceptor reads accounts from NTLM_USER_FILE; one file for the process, kept beside
    # the credentials file (same secrecy), removed on exit. Each host still checks its own accounts.
    user_file = Path(credentials).with_name(f".{Path(credentials).name}.ntlm-{os.getpid()}")
    fd = os.open(user_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for host, creds in hosts:
            handle.write(ntlm_user_lines(creds, [host.name]))
    os.environ["NTLM_USER_FILE"] = str(user_file)
    servers = []
    try:
        for host, creds in hosts:
            servers.append(WSManServer(host, creds))
        threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
            for s in servers
        ]
        for thread in threads:
            thread.start()
        stopping = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
        signal.signal(signal.SIGINT, lambda *_: stopping.set())
        if pid_file is not None:
            Path(pid_file).write_text(f"{os.getpid()}\n")
        logging.getLogger("orchestrator.lab.winrm").info(
            "serving %s", ", ".join(f"{h.name}@{h.address}:{h.port}" for h, _ in hosts)
        )
        stopping.wait()
        for server in servers:
            server.shutdown()
    finally:
        for server in servers:
            server.server_close()
        user_file.unlink(missing_ok=True)
        if (
            pid_file is not None
            and Path(pid_file).exists()
            and Path(pid_file).read_text().strip() == str(os.getpid())
        ):
            Path(pid_file).unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.lab.winrm_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--listen", action="append", required=True, help="ADDRESS[:PORT] (default port 5985); repeat"
    )
    parser.add_argument(
        "--state", action="append", required=True, type=Path, help="state JSON, one per --listen"
    )
    parser.add_argument("--credentials", required=True, type=Path, help="accounts file (write_credentials)")
    parser.add_argument(
        "--host-credentials",
        action="append",
        type=Path,
        default=[],
        help="per-host accounts file, one per --listen, in the same order (optional)",
    )
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--log-file", type=Path)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if len(args.listen) != len(args.state):
        parser.error("give one --state per --listen")
    if args.host_credentials and len(args.host_credentials) != len(args.listen):
        parser.error("give one --host-credentials per --listen, or none")
    logging.basicConfig(
        filename=args.log_file,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s winrm-standin[%(process)d] %(levelname)s %(message)s",
    )
    # pyspnego logs every NTLM token at DEBUG: offline-crackable material stays out of the lab's logs.
    logging.getLogger("spnego").setLevel(logging.WARNING)
    endpoints = [
        Endpoint(
            *_parse_listen(listen),
            state=state,
            credentials=(args.host_credentials or [None] * len(args.listen))[i],
        )
        for i, (listen, state) in enumerate(zip(args.listen, args.state, strict=True))
    ]
    serve(endpoints, args.credentials, args.pid_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
