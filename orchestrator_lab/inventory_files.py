"""The lab's Ansible inventory, in the same layout as inventory/hospital (groups under servers and
workstations, recovery vars in group_vars), so every command of the tool runs on the lab unchanged."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from orchestrator_lab import catalog
from orchestrator_lab.blueprint import NODE_GROUP
from orchestrator_lab.settings import WINRM_PORT, LabPaths

HEADER = "# The local lab (seed {seed}): written by `orchestrator lab up`; rewritten by the next one.\n"


def write(
    paths: LabPaths, manifest: dict[str, Any], winrm_user: str | None, shares: list[str] | None = None
) -> None:
    """`shares`: what execution nodes see of the controller (see the launcher)."""
    inv = paths.inventory
    (inv / "group_vars").mkdir(parents=True, exist_ok=True)
    hosts = manifest["hosts"]
    present = {h["group"] for h in hosts}
    by_role: dict[str, dict[str, Any]] = {"servers": {}, "workstations": {}}
    for h in hosts:
        section = by_role["servers" if h["role"] == "server" else "workstations"]
        section.setdefault(h["group"], {"hosts": {}})["hosts"][h["name"]] = {"ansible_host": h["address"]}
    children: dict[str, Any] = {role: {"children": groups} for role, groups in by_role.items() if groups}
    for os_name in ("linux", "windows"):
        members = {h["name"]: None for h in hosts if h["os"] == os_name}
        if members:
            children[os_name] = {"hosts": members}
    sites = _sites(hosts)
    for site, (_node, members) in sites.items():
        children[site] = {"hosts": {name: None for name in members}}
    _dump(inv / "hosts.yml", {"all": {"children": children}}, manifest["seed"])

    repository = paths.host(manifest["backup_host"]) / "srv" / "restic"
    _dump(
        inv / "group_vars" / "all.yml",
        {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(paths.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={paths.known_hosts} -o StrictHostKeyChecking=yes",
            "ansible_python_interpreter": "/usr/bin/python3",
            "recovery_reimage_method": "lab",
            "recovery_restore_method": "restic",
            "recovery_restic_repository": str(repository),
            "recovery_restic_password_file": str(paths.restic_password),
            "recovery_lab_dir": str(paths.root),
        },
        manifest["seed"],
    )
    specs = catalog.catalog()["groups"] | catalog.catalog()["windows"]["groups"]
    for group in sorted(present - {NODE_GROUP}):
        rec = specs[group].get("recovery") or catalog.group(group)["recovery"]
        _dump(inv / "group_vars" / f"{group}.yml", _group_values(rec, present), manifest["seed"])
    for site, (node, _) in sites.items():
        _dump(
            inv / "group_vars" / f"{site}.yml",
            {"recovery_site": site, "recovery_execution_node": node},
            manifest["seed"],
        )
    if sites:
        runner = Path(sys.executable).parent / "ansible-runner"
        _dump(
            inv / "group_vars" / f"{NODE_GROUP}.yml",
            {
                **_group_values(specs[NODE_GROUP]["recovery"]),
                "recovery_node_runner": str(runner),
                "recovery_node_orchestrator": str(runner.parent / "orchestrator"),
                # What a node sees of the controller (the lab's infected trees among it) is not its own.
                "recovery_triage_exclude": shares or [],
            },
            manifest["seed"],
        )
    if winrm_user is not None:
        _dump(
            inv / "group_vars" / "windows.yml",
            {
                "ansible_connection": "winrm",
                "ansible_port": WINRM_PORT,
                "ansible_winrm_scheme": "http",
                "ansible_winrm_transport": "ntlm",
                "ansible_user": winrm_user,
                "ansible_password": "{{ lookup('env', 'LAB_WINRM_PASSWORD') }}",
                "recovery_restore_method": "none",
                # where the lab's Windows hosts keep their data (and LockBit leaves its notes)
                "recovery_windows_evidence_roots": ["C:\\Users", "C:\\ProgramData", "C:\\Data"],
                "recovery_windows_wipe_paths": ["C:\\Users", "C:\\ProgramData", "C:\\Data"],
            },
            manifest["seed"],
        )


def _group_values(rec: dict[str, Any], present: set[str] | None = None) -> dict[str, Any]:
    values: dict[str, Any] = {
        "recovery_role": rec["role"],
        "recovery_tier": rec["tier"],
        "recovery_priority": rec["priority"],
        "recovery_depends_on": [d for d in rec.get("depends_on", []) if present is None or d in present],
    }
    if rec.get("protected"):
        values["recovery_protected"] = True
    if rec.get("data_categories"):
        values["recovery_data_categories"] = rec["data_categories"]
    if rec.get("triage_exclude"):
        values["recovery_triage_exclude"] = rec["triage_exclude"]
    return values


def _sites(hosts: list[dict[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    """With execution nodes, the Linux hosts are shared out over as many sites, one node each (the
    Windows stand-ins stay with the controller: their password is not handed to nodes)."""
    nodes = [h["name"] for h in hosts if h["group"] == NODE_GROUP]
    if not nodes:
        return {}
    sites: dict[str, tuple[str, list[str]]] = {f"site_{i + 1}": (node, []) for i, node in enumerate(nodes)}
    members = [h["name"] for h in hosts if h["os"] == "linux" and h["group"] != NODE_GROUP]
    for i, name in enumerate(members):
        sites[f"site_{i % len(nodes) + 1}"][1].append(name)
    return sites


def _dump(path: Any, data: dict[str, Any], seed: int) -> None:
    path.write_text(
        HEADER.format(seed=seed) + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    )
