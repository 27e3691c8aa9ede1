#!/usr/bin/env python3
"""Write inventory/hospital/: the example fleet, at the scale of the Simone-Veil incident
(350 servers, 1,500 workstations, three sites).

The committed inventory is the product; this script only keeps it consistent when the fleet's shape
changes. Run: python inventory/generate_hospital.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

SITES = {"north": 1, "south": 2, "clinic": 3}  # second octet of each site's 10.x network

# group: (count per site (north, south, clinic), os, tier, priority, depends_on, data categories, protected)
SERVER_GROUPS: dict[str, dict] = {
    "domain_controllers": dict(
        prefix="dc", per_site=(2, 2, 1), os="windows", tier=0, priority=10, deps=[], data=[]
    ),
    "dns_dhcp": dict(
        prefix="dns",
        per_site=(2, 2, 1),
        os="linux",
        tier=0,
        priority=20,
        deps=["domain_controllers"],
        data=[],
    ),
    "pki": dict(
        prefix="pki",
        per_site=(2, 0, 0),
        os="windows",
        tier=0,
        priority=30,
        deps=["domain_controllers"],
        data=[],
    ),
    "backup": dict(
        prefix="bkp",
        per_site=(3, 2, 1),
        os="linux",
        tier=0,
        priority=5,
        deps=[],
        data=["health", "personal"],
        protected=True,
    ),
    "evidence_store": dict(
        prefix="evid", per_site=(1, 0, 0), os="linux", tier=0, priority=1, deps=[], data=[], protected=True
    ),
    "ehr_db": dict(
        prefix="ehrdb",
        per_site=(3, 2, 0),
        os="linux",
        tier=1,
        priority=10,
        deps=["domain_controllers", "dns_dhcp"],
        data=["health", "personal"],
    ),
    "ehr_app": dict(
        prefix="ehrapp",
        per_site=(8, 6, 2),
        os="linux",
        tier=1,
        priority=20,
        deps=["ehr_db"],
        data=["health", "personal"],
    ),
    "pacs": dict(
        prefix="pacs",
        per_site=(6, 4, 2),
        os="linux",
        tier=1,
        priority=30,
        deps=["domain_controllers", "dns_dhcp"],
        data=["health", "personal"],
    ),
    "laboratory": dict(
        prefix="lis",
        per_site=(4, 3, 1),
        os="linux",
        tier=1,
        priority=40,
        deps=["ehr_db"],
        data=["health", "personal"],
    ),
    "pharmacy": dict(
        prefix="pharm",
        per_site=(3, 2, 1),
        os="windows",
        tier=1,
        priority=50,
        deps=["ehr_app"],
        data=["health", "personal"],
    ),
    "radiology": dict(
        prefix="ris",
        per_site=(4, 3, 1),
        os="windows",
        tier=1,
        priority=60,
        deps=["pacs"],
        data=["health", "personal"],
    ),
    "file_servers": dict(
        prefix="fs",
        per_site=(10, 8, 2),
        os="windows",
        tier=2,
        priority=10,
        deps=["domain_controllers"],
        data=["personal"],
    ),
    "mail": dict(
        prefix="mail",
        per_site=(4, 2, 0),
        os="windows",
        tier=2,
        priority=20,
        deps=["domain_controllers", "dns_dhcp"],
        data=["personal"],
    ),
    "billing_hr": dict(
        prefix="bill",
        per_site=(8, 4, 2),
        os="windows",
        tier=2,
        priority=30,
        deps=["domain_controllers", "ehr_db"],
        data=["personal", "financial"],
    ),
    "print": dict(
        prefix="prn",
        per_site=(5, 4, 3),
        os="windows",
        tier=2,
        priority=60,
        deps=["domain_controllers"],
        data=[],
    ),
    "business_apps": dict(
        prefix="app",
        per_site=(115, 80, 29),
        os="linux",
        tier=2,
        priority=80,
        deps=["domain_controllers", "dns_dhcp"],
        data=[],
    ),
}

# department: (count per site, depends on)
WORKSTATION_GROUPS: dict[str, dict] = {
    "ws_emergency": dict(per_site=(120, 60, 20), deps=["ehr_app", "print"], priority=10),
    "ws_surgery": dict(per_site=(150, 80, 20), deps=["ehr_app", "pacs", "print"], priority=20),
    "ws_radiology": dict(per_site=(90, 50, 10), deps=["pacs", "radiology"], priority=30),
    "ws_wards": dict(per_site=(350, 200, 50), deps=["ehr_app", "print"], priority=40),
    "ws_administration": dict(
        per_site=(150, 100, 50), deps=["file_servers", "billing_hr", "mail"], priority=50
    ),
}

SHORT = {"north": "n", "south": "s", "clinic": "c"}


def _yaml_hosts(entries: list[tuple[str, str]], indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}{name}: {{ansible_host: {address}}}" for name, address in entries]


def generate(out: Path) -> tuple[int, int]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "group_vars").mkdir(exist_ok=True)
    next_octets: dict[tuple[int, int], int] = {}

    def address(site: str, vlan: int) -> str:
        key = (SITES[site], vlan)
        n = next_octets.get(key, 10) + 1
        next_octets[key] = n
        third, fourth = vlan + (n - 1) // 250, (n - 1) % 250 + 1
        return f"10.{SITES[site]}.{third}.{fourth}"

    lines = [
        "# The example hospital fleet: 350 servers, 1,500 workstations, three sites.",
        "# Generated by inventory/generate_hospital.py; recovery attributes live in group_vars/.",
        "all:",
        "  children:",
    ]
    site_members: dict[str, list[str]] = {s: [] for s in SITES}
    os_members: dict[str, list[str]] = {"windows": [], "linux": []}
    tier_members: dict[int, list[str]] = {0: [], 1: [], 2: [], 3: []}
    servers = workstations = 0

    lines.append("    servers:")
    lines.append("      children:")
    for vlan, (group, spec) in enumerate(SERVER_GROUPS.items()):
        lines.append(f"        {group}:")
        lines.append("          hosts:")
        entries = []
        for (site, short), count in zip(SHORT.items(), spec["per_site"], strict=True):
            for i in range(1, count + 1):
                name = f"{spec['prefix']}-{short}{i:02d}"
                entries.append((name, address(site, vlan * 2)))
                site_members[site].append(name)
        servers += len(entries)
        lines.extend(_yaml_hosts(entries, 12))
        os_members[spec["os"]].append(group)
        tier_members[spec["tier"]].append(group)

    lines.append("    workstations:")
    lines.append("      children:")
    for vlan, (group, spec) in enumerate(WORKSTATION_GROUPS.items(), start=100):
        lines.append(f"        {group}:")
        lines.append("          hosts:")
        entries = []
        for (site, short), count in zip(SHORT.items(), spec["per_site"], strict=True):
            for i in range(1, count + 1):
                name = f"{group.replace('ws_', 'ws-')}-{short}{i:03d}"
                entries.append((name, address(site, vlan + (vlan - 100) * 4)))
                site_members[site].append(name)
        workstations += len(entries)
        lines.extend(_yaml_hosts(entries, 12))
        os_members["windows"].append(group)
        tier_members[3].append(group)

    for os_name, groups in os_members.items():
        lines += [f"    {os_name}:", "      children:"] + [f"        {g}: {{}}" for g in groups]
    for tier, groups in tier_members.items():
        lines += [f"    tier{tier}:", "      children:"] + [f"        {g}: {{}}" for g in groups]
    for site, members in site_members.items():
        lines += [f"    site_{site}:", "      hosts:"] + [f"        {m}: {{}}" for m in members]
    (out / "hosts.yml").write_text("\n".join(lines) + "\n")

    for group, spec in SERVER_GROUPS.items():
        _group_vars(
            out,
            group,
            "server",
            spec["tier"],
            spec["priority"],
            spec["deps"],
            spec["data"],
            spec.get("protected", False),
            spec["os"],
        )
    for group, spec in WORKSTATION_GROUPS.items():
        _group_vars(
            out, group, "workstation", 3, spec["priority"], spec["deps"], ["personal"], False, "windows"
        )
    for site in SITES:
        (out / "group_vars" / f"site_{site}.yml").write_text(f"recovery_site: {site}\n")
    (out / "group_vars" / "all.yml").write_text(
        "# Defaults for every host; groups and hosts override them.\n"
        "ansible_user: recovery\n"
        "recovery_reimage_method: pxe\n"
        "recovery_restore_method: restic\n"
        "recovery_restic_repository: sftp:restic@bkp-n01:/srv/restic\n"
    )
    (out / "group_vars" / "windows.yml").write_text(
        "# Windows hosts are reached over WinRM (HTTPS, NTLM with message encryption).\n"
        "# The password comes from the environment (or Ansible Vault), never from this file.\n"
        "ansible_connection: winrm\n"
        "ansible_user: 'HOSPITAL\\recovery-svc'\n"
        "ansible_password: \"{{ lookup('env', 'RECOVERY_WINRM_PASSWORD') }}\"\n"
        "ansible_port: 5986\n"
        "ansible_winrm_scheme: https\n"
        "ansible_winrm_transport: ntlm\n"
        "ansible_winrm_server_cert_validation: validate\n"
        "recovery_reimage_method: vsphere\n"
    )
    (out / "group_vars" / "workstations.yml").write_text(
        "recovery_role: workstation\nrecovery_reimage_method: pxe\nrecovery_restore_method: none\n"
    )
    return servers, workstations


def _group_vars(
    out: Path,
    group: str,
    role: str,
    tier: int,
    priority: int,
    deps: list[str],
    data: list[str],
    protected: bool,
    os_name: str,
) -> None:
    body = [f"recovery_role: {role}", f"recovery_tier: {tier}", f"recovery_priority: {priority}"]
    body.append(f"recovery_depends_on: [{', '.join(deps)}]")
    if data:
        body.append(f"recovery_data_categories: [{', '.join(data)}]")
    if protected:
        body.append("recovery_protected: true  # never wiped: verified only")
    if group == "evidence_store":
        body.append("recovery_triage_exclude: [/srv/evidence]  # holds ransom notes and samples on purpose")
    (out / "group_vars" / f"{group}.yml").write_text("\n".join(body) + "\n")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "hospital"
    s, w = generate(target)
    print(f"wrote {target}: {s} servers, {w} workstations")
