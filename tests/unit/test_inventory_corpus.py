"""A corpus of inventory shapes as IT teams keep them (tests/data/inventories/<case>), each read by the
orchestrator (`orchestrator inventory show --json`, from the case's directory, `-i` relative) and by
Ansible itself in the same test: `ansible-inventory --list` for hosts and groups, an ad-hoc `debug` of
every host's variables for their values after templating, and the connection plugin (ssh or winrm)
for the address, port and user it would connect with. Broken shapes must be refused with one line
naming the file and line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli

CORPUS = Path(__file__).resolve().parents[1] / "data" / "inventories"
BIN = Path(sys.executable).parent
ORCHESTRATOR = [sys.executable, "-m", "orchestrator"]
ROOT = Path(__file__).resolve().parents[2]

# case -> the -i argument, relative to the case directory (as people type it)
READABLE = {
    "ini_relative": "hosts",
    "short_names": "hosts",
    "legacy_ssh": "hosts.ini",
    "templated": "hosts.yml",
    "constructed": "inventory",
    "collection_plugin": "inventory",
    "group_host_vars": "hosts.ini",
    "vault": "hosts.yml",
    "script": "inventory.py",
    "windows": "hosts.yml",
}
# case -> (-i argument, what the one line on stderr must hold: file and line, and Ansible's reason)
BROKEN = {
    "broken_group_vars": ("hosts.ini", "group_vars/web.yml:3:14: YAML parsing failed"),
    "broken_ini": ("hosts", "broken_ini/hosts:3: Failed to parse inventory: Expected key=value"),
    "broken_yaml_structure": ("hosts.yml", "hosts.yml:6: Host pattern 12 must be a string"),
    "empty": ("hosts", "hosts: no hosts in the inventory"),
    "hanging_script": ("inventory.sh", "inventory.sh: inventory script gave no answer within 2s"),
}
RECOVERY_FIELDS = {
    "recovery_tier": "tier",
    "recovery_site": "site",
    "recovery_priority": "priority",
    "recovery_role": "role",
    "recovery_protected": "protected",
}


def _env(case: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "ORCHESTRATOR_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    env["CORPUS_WINRM_PASSWORD"] = "corpus-winrm-secret"
    env["ORCHESTRATOR_INVENTORY_TIMEOUT"] = "2"
    if (CORPUS / case / "vault-password").exists():
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(CORPUS / case / "vault-password")
    return env


def _run(case: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=CORPUS / case, env=_env(case), capture_output=True, text=True, timeout=120
    )


def _ansible_listing(case: str, source: str) -> dict[str, Any]:
    done = _run(case, str(BIN / "ansible-inventory"), "-i", source, "--list")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _ansible_rendered_vars(case: str, source: str) -> dict[str, dict[str, Any]]:
    """Every host's variables as a play sees them: Ansible's templar, Vault decrypted."""
    done = subprocess.run(
        [str(BIN / "ansible"), "all", "-i", source, "-m", "debug", "-a", "var=hostvars[inventory_hostname]"],
        cwd=CORPUS / case,
        env={**_env(case), "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    results = json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]
    return {host: result["hostvars[inventory_hostname]"] for host, result in results.items()}


def _groups(listing: dict[str, Any]) -> dict[str, set[str]]:
    """Each group's hosts, its children's included (what `hosts: group` selects)."""

    def members(group: str) -> set[str]:
        entry = listing.get(group, {})
        found = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            found |= members(child)
        return found

    named = {g for g in listing if g not in ("_meta", "all", "ungrouped")}
    return {g: members(g) for g in named if members(g)}


def _connection(rendered: dict[str, Any], name: str) -> tuple[Any, Any, Any, bool]:
    """(address, port, user, port set by a variable) as Ansible's connection plugin resolves them."""
    from ansible import constants as C
    from ansible.playbook.play_context import PlayContext
    from ansible.plugins.loader import connection_loader

    plugin_name = "winrm" if rendered.get("ansible_connection") in ("winrm", "psrp") else "ssh"
    if plugin_name == "winrm" and rendered.get("ansible_connection") == "psrp":
        plugin_name = "psrp"
    plugin = connection_loader.get(plugin_name, PlayContext())
    wanted = {
        v["name"]
        for option in C.config.get_configuration_definitions("connection", plugin_name).values()
        for v in option.get("vars", [])
    }
    options = {k: v for k, v in rendered.items() if k in wanted}
    plugin.set_options(var_options={**options, "inventory_hostname": name})
    address = plugin.get_option("host" if plugin_name == "ssh" else "remote_addr")
    port_vars = [
        v["name"] for v in C.config.get_configuration_definitions("connection", plugin_name)["port"]["vars"]
    ]
    return (
        address,
        plugin.get_option("port"),
        plugin.get_option("remote_user"),
        any(rendered.get(v) is not None for v in port_vars),
    )


@pytest.mark.parametrize("case", sorted(READABLE))
def test_reads_as_ansible_reads_it(case: str, tmp_path: Path) -> None:
    source = READABLE[case]
    listing = _ansible_listing(case, source)
    rendered = _ansible_rendered_vars(case, source)
    shown = _run(
        case,
        *ORCHESTRATOR,
        "--db",
        str(tmp_path / "recovery.db"),
        "inventory",
        "show",
        "-i",
        source,
        "--json",
    )
    assert shown.returncode == 0, shown.stderr
    ours = {h["name"]: h for h in json.loads(shown.stdout)["hosts"]}

    assert set(ours) == set(rendered) and ours, (sorted(ours), sorted(rendered))
    groups = _groups(listing)
    for host in ours.values():
        assert set(host["groups"]) == {g for g, members in groups.items() if host["name"] in members}
    for name, host in ours.items():
        theirs = rendered[name]
        address, port, user, port_set = _connection(theirs, name)
        assert host["address"] == address, (name, host, address)
        assert host["port"] == (port if port_set else None), (name, host["port"], port)
        assert host["user"] == user, (name, host["user"], user)
        for var, attribute in RECOVERY_FIELDS.items():
            if var in theirs:
                value = theirs[var]
                expected = int(value) if attribute in ("tier", "priority") else value
                if attribute == "protected":
                    expected = value in (True, "yes", "true", "True", 1)
                assert host[attribute] == expected, (name, var, host[attribute], value)
        if "recovery_depends_on" in theirs:
            deps = theirs["recovery_depends_on"]
            assert host["depends_on"] == (deps.split(",") if isinstance(deps, str) else deps)
    check = _run(case, *ORCHESTRATOR, "inventory", "check", "-i", source)
    assert check.returncode == 0, check.stderr  # nothing resolved, nothing refused


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_is_refused_with_file_and_line(case: str, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    source, expected = BROKEN[case]
    monkeypatch.chdir(CORPUS / case)
    started = time.monotonic()
    result = cli("inventory", "check", "-i", source, env={"ORCHESTRATOR_INVENTORY_TIMEOUT": "2"})
    elapsed = time.monotonic() - started
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert str(CORPUS / case) in lines[0]
    assert elapsed < 15  # a hanging script costs its timeout, not a hang
    if case not in ("empty", "hanging_script"):
        # Ansible refuses these too: an error, or a source no plugin could read.
        done = _run(case, str(BIN / "ansible-inventory"), "-i", source, "--list")
        assert done.returncode != 0 or "Unable to parse" in done.stderr, done.stderr
