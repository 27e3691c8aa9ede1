"""ansible.windows.win_service_info from the host state's services.

The state knows a service's name, display name, status and start type, so each entry of `services`
carries `name`, `display_name`, `state` and `start_mode` in the module's vocabulary; the rest of what
the Service Control Manager reports (path, account, dependencies, failure actions...) is not there, and
is left out rather than invented: a playbook reading it fails on the lab, visibly.
"""

from __future__ import annotations

from typing import Any

from orchestrator_lab.windows.hoststate import matches
from orchestrator_lab.windows.modules.base import Call, Emulator

STATES = {"running": "started", "stopped": "stopped", "paused": "paused"}
START_MODES = {
    "automatic": "auto",
    "automatic (delayed start)": "delayed",
    "manual": "manual",
    "disabled": "disabled",
    "boot": "boot",
    "system": "system",
}


def _service(name: str, svc: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "display_name": svc.get("display_name", name),
        "state": STATES.get(str(svc.get("status", "")).lower(), str(svc.get("status", "")).lower()),
        "start_mode": START_MODES.get(str(svc.get("start_type", "")).lower(), "manual"),
    }


def win_service_info(call: Call) -> None:
    services: dict[str, Any] = call.session.state.data["services"]
    name = call.params["name"]
    # the module: Get-Service | Where-Object Name -eq $name, else Get-Service -Name $name (wildcards)
    chosen = sorted(
        (n for n in services if name is None or n.casefold() == name.casefold()), key=str.casefold
    ) or sorted((n for n in services if matches(n, name)), key=str.casefold)
    call.result["services"] = [_service(n, services[n]) for n in chosen]
    call.result["exists"] = bool(chosen)


MODULES = {"ansible.windows.win_service_info": Emulator(win_service_info)}
