"""The lab's Windows hosts: scenario states from `scenarios`, served over real WS-Management by one
stand-in process (`launcher`; one listen address per host, port 5985), with a lab-generated account.

The password lives in `winrm.env` (`LAB_WINRM_PASSWORD=...`, 0600) and the stand-in's accounts file,
both in the lab directory; the inventory only names the environment variable.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from orchestrator_lab import processes
from orchestrator_lab.blueprint import HostPlan, iso
from orchestrator_lab.hostdata import host_rng
from orchestrator_lab.processes import ProcRef
from orchestrator_lab.settings import LabPaths
from orchestrator_lab.windows import launcher, scenarios

USER = "Administrator"
PROCESS = "winrm"  # pids/winrm.json: the one stand-in process for every Windows host


def state_path(paths: LabPaths, name: str) -> Path:
    return paths.windows / name / "state.json"


def credentials_path(paths: LabPaths) -> Path:
    return paths.windows / "credentials.json"


def password(paths: LabPaths) -> str:
    for line in paths.winrm_env.read_text().splitlines():
        if line.startswith("LAB_WINRM_PASSWORD="):
            return line.split("=", 1)[1]
    raise ValueError(f"{paths.winrm_env}: no LAB_WINRM_PASSWORD")


def create(paths: LabPaths, hosts: list[HostPlan], seed: int, infection: Any) -> dict[str, dict[str, Any]]:
    """Write each host's state and the account; returns name -> scenario record for the manifest."""
    paths.windows.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(18) + "-Aa1"  # meets Windows complexity rules, as a real one must
    fd = os.open(paths.winrm_env, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"LAB_WINRM_PASSWORD={secret}\n")
    launcher.write_credentials(credentials_path(paths), {USER: secret})
    records = {}
    for host in hosts:
        records[host.name] = write_state(paths, host.name, host.kind, seed, infection)
    return records


def write_state(
    paths: LabPaths, name: str, kind: str, seed: int, infection: Any, purpose: str = "windows"
) -> dict:
    rng = host_rng(seed, name, purpose)
    state, verdict, details = scenarios.make_state(kind, rng, infection, hostname=name)
    path = state_path(paths, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)  # the stand-in notices a replaced file on its next command
    return {
        "kind": kind,
        "expected_verdict": verdict,
        "expected_reason": None,
        "compromise_time": details.pop("compromise_time", None),
        "details": details,
    }


def start(paths: LabPaths, hosts: list[dict[str, Any]]) -> ProcRef:
    endpoints = [launcher.Endpoint(h["address"], h["port"], state_path(paths, h["name"])) for h in hosts]
    pid = launcher.start(
        endpoints,
        credentials_path(paths),
        pid_file=paths.pids / "winrm.pid",
        log_file=paths.logs / "winrm.log",
    )
    ref = processes.refs_of([pid], PROCESS)[0]
    processes.save(paths.pidfile(PROCESS), ref)
    return ref


def reimage(paths: LabPaths, host: dict[str, Any], seed: int, now: Any) -> None:
    """A fresh install: the clean baseline state, as of now. The running stand-in picks it up."""
    write_state(
        paths, host["name"], "clean", seed, iso(now), purpose=f"reimage-{len(host.get('reimages', []))}"
    )
