"""How fast the lab's Windows stand-in answers pywinrm, and what it costs the lab machine.

Starts stand-in hosts on 127.61.1.x (loopback only) and measures, in the same run:
- start-up: one process serving N hosts vs N processes of one host (the baseline), until bound;
- per-command latency of pywinrm `run_cmd('hostname')` with a new session (shell create, command,
  receive, signal, delete, plus the auth handshake) for Basic and NTLM+encryption, against the floor of
  one unauthenticated HTTP round trip to the same listener (the baseline);
- a triage-shaped run: N hosts, one NTLM session and one probe script per host, 50 at a time: hosts/s,
  the server's CPU per host and its resident memory.

    .venv/bin/python bench/winrm_standin.py [--hosts 50] [--rounds 30]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests
import winrm

from orchestrator_lab.windows import scenarios as windows_scenarios
from orchestrator_lab.windows.launcher import Endpoint, start, stop, write_credentials

USER, PASSWORD = "Administrator", "Bench-Passw0rd!"
INFECTION = datetime(2025, 3, 14, 2, 30, tzinfo=UTC)
PROBES = [
    {
        "id": "notes",
        "kind": "files",
        "roots": ["C:\\"],
        "patterns": ["*.README.txt", "Restore-My-Files.txt"],
        "max_depth": 8,
        "max_results": 200,
        "hash": True,
    },
    {
        "id": "winlogon",
        "kind": "registry",
        "path": "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon",
        "name": None,
    },
    {"id": "services", "kind": "services", "names": ["VSS", "*sql*", "Veeam*"]},
    {"id": "cleared", "kind": "eventlog", "log": "Security", "event_ids": [1102]},
    {"id": "shadows", "kind": "shadow_copies"},
    {"id": "tasks", "kind": "scheduled_tasks"},
]
SCRIPT = "# triage\n# orchestrator-probes: " + base64.b64encode(json.dumps(PROBES).encode()).decode() + "\n"


def address(i: int) -> str:
    return f"127.61.{1 + i // 250}.{1 + i % 250}"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def median_ms(func, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        t = time.perf_counter()
        func()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    n = args.hosts
    root = Path(tempfile.mkdtemp(prefix="winrm-bench-"))
    rng = random.Random(1)
    kinds = windows_scenarios.KINDS
    endpoints = []
    for i in range(n):
        state = windows_scenarios.make_state(kinds[i % len(kinds)], rng, INFECTION, hostname=f"WIN{i:03d}")[0]
        path = root / f"WIN{i:03d}.json"
        path.write_text(json.dumps(state))
        endpoints.append(Endpoint(address(i), 5985, path))
    creds = root / "users.json"
    write_credentials(creds, {USER: PASSWORD})

    t = time.perf_counter()
    pid = start(endpoints, creds, pid_file=root / "all.pid", log_file=root / "all.log")
    one_process = time.perf_counter() - t
    try:
        print(f"start-up, {n} hosts in one process: {one_process * 1000:.0f} ms")
        stop(pid)
        t = time.perf_counter()
        pids = [
            start([ep], creds, pid_file=root / f"{i}.pid", log_file=root / f"{i}.log")
            for i, ep in enumerate(endpoints)
        ]
        per_host = time.perf_counter() - t
        print(
            f"start-up, {n} processes of one host (baseline): {per_host * 1000:.0f} ms "
            f"({per_host / n * 1000:.0f} ms each); ratio {per_host / one_process:.1f}x slower"
        )
        rss_each = statistics.mean(rss_mib(p) for p in pids)
        for p in pids:
            stop(p)
        pid = start(endpoints, creds, pid_file=root / "all.pid", log_file=root / "all.log")

        url = f"http://{address(0)}:5985/wsman"
        http_floor = median_ms(lambda: requests.post(url, data=b"<x/>", timeout=5), args.rounds)
        print(f"\nbaseline: one unauthenticated HTTP round trip (401): {http_floor:.1f} ms")
        for transport in ("basic", "ntlm"):
            session_cost = median_ms(
                lambda tr=transport: winrm.Session(address(0), auth=(USER, PASSWORD), transport=tr).run_cmd(
                    "hostname"
                ),
                args.rounds,
            )
            warm = winrm.Protocol(
                f"http://{address(0)}:5985/wsman", transport=transport, username=USER, password=PASSWORD
            )
            shell = warm.open_shell()

            def one_command(p: winrm.Protocol = warm, s: str = shell) -> None:
                command = p.run_command(s, "hostname")
                p.get_command_output(s, command)
                p.cleanup_command(s, command)

            warm_cost = median_ms(one_command, args.rounds)
            warm.close_shell(shell)
            print(
                f"{transport:>5}: run_cmd with a new session {session_cost:.1f} ms "
                f"({session_cost / http_floor:.1f}x the HTTP floor); a command in an open shell {warm_cost:.1f} ms"
            )

        def triage(i: int) -> int:
            session = winrm.Session(address(i), auth=(USER, PASSWORD), transport="ntlm")
            result = session.run_ps(SCRIPT)
            lines = result.std_out.decode().splitlines()
            assert result.status_code == 0 and len(lines) == len(PROBES), result.std_err
            return len(lines)

        cpu0, client0 = cpu_seconds(pid), time.process_time()
        t = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(50, n)) as pool:
            answered = sum(1 for _ in pool.map(triage, range(n)))
        wall = time.perf_counter() - t
        server_cpu = cpu_seconds(pid) - cpu0
        client_cpu = time.process_time() - client0
        print(
            f"\ntriage-shaped run, {answered} hosts, NTLM+encryption, 50 at a time: {answered / wall:.0f} hosts/s "
            f"({wall * 1000:.0f} ms); server CPU {server_cpu / answered * 1000:.1f} ms/host, "
            f"client (pywinrm) CPU {client_cpu / answered * 1000:.1f} ms/host"
        )
        print(
            f"memory: one process for {n} hosts {rss_mib(pid):.0f} MiB RSS; "
            f"one-host processes {rss_each:.0f} MiB each ({rss_each * n:.0f} MiB for {n})"
        )
    finally:
        stop(pid)


if __name__ == "__main__":
    main()
