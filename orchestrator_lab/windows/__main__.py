"""The lab's Windows hosts: a protocol-faithful WS-Management/WinRS stand-in, one listen address per host.

    python -m orchestrator_lab.windows --listen 127.42.0.21:5985 --state hosts/WIN01/state.json \\
        [--listen 127.42.0.22:5985 --state hosts/WIN02/state.json ...] --credentials winrm-users.json \\
        [--pid-file pids/winrm.pid] [--log-file logs/winrm.log] [--verbose]

pywinrm (unmodified) and Ansible's winrm connection talk to it exactly as to a Windows host over HTTP:
Basic or NTLM, NTLM with MS-WSMV message encryption. It does not run PowerShell: it answers from each
host's scenario state (the package docstring lists what only real Windows, the Vagrant lab, can
confirm). `--listen`/`--state` pairs are matched in order, so one process can serve every
Windows host of a lab (fewer processes, one import) or one host each; the pid file is written once every
address is bound, which is what `launcher.start()` waits for.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from orchestrator_lab.windows.launcher import DEFAULT_PORT, Endpoint
from orchestrator_lab.windows.listener import Credentials, WSManServer, ntlm_user_lines
from orchestrator_lab.windows.shells import Host


def _parse_listen(value: str) -> tuple[str, int]:
    address, _, port = value.rpartition(":")
    if not address:
        return value, DEFAULT_PORT
    return address, int(port)


def serve(endpoints: Sequence[Endpoint], credentials: Path, pid_file: Path | None = None) -> None:
    """Serve until SIGTERM/SIGINT. Binds every address before writing the pid file."""
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
        logging.getLogger("orchestrator_lab.windows").info(
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
        prog="python -m orchestrator_lab.windows", description=__doc__.splitlines()[0]
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
