"""The inventory through the real CLI: Ansible's loader, every problem reported, nothing written on error."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import inventory
from orchestrator.errors import InventoryError
from tests.conftest import HOSPITAL, ROOT, Cli

GOOD = """\
all:
  children:
    dc:
      hosts:
        dc01: {ansible_host: 127.9.0.1, recovery_tier: 0}
    ehr:
      hosts:
        ehr01: {ansible_host: 127.9.0.2, recovery_tier: 1, recovery_depends_on: [dc]}
"""


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def seeded_db(cli: Cli, tmp_path: Path) -> bytes:
    """A database that already holds a synced inventory: broken inputs must leave it byte-identical."""
    good = write(tmp_path, "good.yml", GOOD)
    result = cli("inventory", "sync", "-i", str(good))
    assert result.exit_code == 0, result.output
    return cli.db.read_bytes()


def test_hospital_inventory_passes_check(cli: Cli) -> None:
    result = cli("inventory", "check", "-i", str(HOSPITAL))
    assert result.exit_code == 0, result.output
    assert "1850 hosts" in result.stdout


def test_hospital_show_json_lists_every_host_with_tiers_and_dependencies(cli: Cli) -> None:
    data = cli.json("inventory", "show", "-i", str(HOSPITAL))
    assert data["count"] == 1850 == len(data["hosts"])
    by_name = {h["name"]: h for h in data["hosts"]}
    assert sum(1 for h in data["hosts"] if h["role"] == "workstation") == 1500
    assert {h["tier"] for h in data["hosts"]} == {0, 1, 2, 3}
    assert by_name["dc-n01"]["tier"] == 0 and by_name["dc-n01"]["os"] == "windows"
    assert by_name["bkp-n01"]["protected"] is True
    ehr_app = by_name["ehrapp-n01"]
    assert ehr_app["depends_on"] == ["ehr_db"]
    assert set(ehr_app["depends_on_hosts"]) == {n for n, h in by_name.items() if "ehr_db" in h["groups"]}
    # secrets stay in memory: the password var (an env lookup) is not part of any host's JSON
    assert "password" not in json.dumps(data).lower()


def test_limit_uses_ansible_patterns(cli: Cli) -> None:
    data = cli.json("inventory", "show", "-i", str(HOSPITAL), "-l", "tier0:&site_north:!backup")
    names = {h["name"] for h in data["hosts"]}
    assert "dc-n01" in names and "dns-n01" in names
    assert not any(n.startswith("bkp-") or "-s0" in n for n in names)
    result = cli("inventory", "show", "-i", str(HOSPITAL), "-l", "nosuchhost")
    assert result.exit_code == 2
    assert "matches no host" in result.stderr


def test_several_sources_ini_dirs_vars_and_env(cli: Cli, tmp_path: Path) -> None:
    ini = write(
        tmp_path, "site/hosts.ini", "[pacs]\npacs01 ansible_host=127.9.1.1\n\n[pacs:vars]\nrecovery_tier=1\n"
    )
    write(tmp_path, "site/host_vars/pacs01.yml", "recovery_priority: 7\nrecovery_depends_on: dc01\n")
    yml = write(tmp_path, "core.yml", GOOD)
    data = cli.json("inventory", "show", "-i", str(yml), "-i", str(ini.parent))
    pacs = next(h for h in data["hosts"] if h["name"] == "pacs01")
    assert (pacs["tier"], pacs["priority"], pacs["depends_on_hosts"]) == (1, 7, ["dc01"])
    env_result = cli("inventory", "show", "--json", env={"ORCHESTRATOR_INVENTORY": f"{yml},{ini.parent}"})
    assert json.loads(env_result.stdout)["count"] == 3


def test_dynamic_inventory_script(cli: Cli, tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "dynamic.py",
        f"#!{sys.executable}\nimport json\nprint(json.dumps({{'web': {{'hosts': ['web01']}}, "
        "'_meta': {'hostvars': {'web01': {'ansible_host': '127.9.2.1', 'recovery_tier': 2}}}}))\n",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    data = cli.json("inventory", "show", "-i", str(script))
    assert data["hosts"][0]["name"] == "web01" and data["hosts"][0]["address"] == "127.9.2.1"


def test_defaults_from_role(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "inv.yml",
        "all:\n  children:\n    workstations:\n      hosts:\n        ws1: {ansible_host: 127.9.3.1}\n"
        "    apps:\n      hosts:\n        app1: {ansible_host: 127.9.3.2}\n",
    )
    inv = inventory.load([str(path)])
    assert (inv.hosts["ws1"].role, inv.hosts["ws1"].tier) == ("workstation", 3)
    assert (inv.hosts["app1"].role, inv.hosts["app1"].tier) == ("server", 2)


BROKEN = {
    "cycle": (
        "all:\n  hosts:\n"
        "    a: {ansible_host: 127.9.4.1, recovery_depends_on: [b]}\n"
        "    b: {ansible_host: 127.9.4.2, recovery_depends_on: [c]}\n"
        "    c: {ansible_host: 127.9.4.3, recovery_depends_on: [a]}\n",
        "dependency cycle: a -> b -> c -> a",
    ),
    "unknown_dependency": (
        "all:\n  hosts:\n    a: {ansible_host: 127.9.4.1, recovery_depends_on: [ghost]}\n",
        "host a: unknown dependency 'ghost'",
    ),
    "bad_tier": (
        "all:\n  hosts:\n    a: {ansible_host: 127.9.4.1, recovery_tier: 7}\n",
        "invalid recovery_tier 7",
    ),
    "bad_role": (
        "all:\n  hosts:\n    a: {ansible_host: 127.9.4.1, recovery_role: toaster}\n",
        "invalid recovery_role",
    ),
    "duplicate_address": (
        "all:\n  hosts:\n    a: {ansible_host: 127.9.4.1}\n    b: {ansible_host: 127.9.4.1}\n",
        "host b: same address 127.9.4.1 as host a",
    ),
    "no_hosts": ("all:\n  children:\n    web: {}\n", "no hosts in the inventory"),
    "undefined_template": (
        "all:\n  hosts:\n    a: {ansible_host: '{{ missing_ip }}'}\n",
        "host a: cannot render ansible_host: ",
    ),
    "integer_host_name": (
        "all:\n  hosts:\n    12: {ansible_host: 127.9.4.1}\n",
        ":3: Host pattern 12 must be a string",
    ),
    "winrm_without_settings": (
        "all:\n  children:\n    windows:\n      hosts:\n        w1: {ansible_host: 127.9.4.1, ansible_connection: winrm}\n",
        "host w1: Windows host without WinRM settings",
    ),
    "yaml_syntax": ("all:\n  hosts:\n    a: {ansible_host: 127.9.4.1\n   b: x\n", "YAML parsing failed"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_inventory_is_refused_with_its_reason_and_nothing_written(
    case: str, cli: Cli, tmp_path: Path, seeded_db: bytes
) -> None:
    text, expected = BROKEN[case]
    path = write(tmp_path, f"{case}.yml", text)
    for command in (("inventory", "check"), ("inventory", "sync")):
        result = cli(*command, "-i", str(path))
        assert result.exit_code == 2, (command, result.output)
        assert expected in result.stderr, result.stderr
        assert str(path) in result.stderr  # names the file
        assert "Traceback" not in result.stderr
    assert cli.db.read_bytes() == seeded_db


def test_yaml_error_names_the_line(cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yml", BROKEN["yaml_syntax"][0])
    result = cli("inventory", "check", "-i", str(path))
    assert f"{path}:4:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_problems_name_the_file_and_line_of_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yml", BROKEN["bad_tier"][0])
    inv = inventory.load([str(path)])
    assert [str(p) for p in inv.problems] == [
        f"{path}:3: host a: invalid recovery_tier 7 (expected 0, 1, 2 or 3)"
    ]


def test_check_reports_every_problem_at_once(cli: Cli, tmp_path: Path) -> None:
    text = (
        "all:\n  hosts:\n"
        "    a: {ansible_host: 127.9.5.1, recovery_depends_on: [ghost], recovery_tier: 9}\n"
        "    b: {ansible_host: 127.9.5.1, recovery_depends_on: [c]}\n"
        "    c: {ansible_host: 127.9.5.3, recovery_depends_on: [b]}\n"
    )
    path = write(tmp_path, "many.yml", text)
    result = cli("inventory", "check", "-i", str(path), "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    messages = [p["message"] for p in report["problems"]]
    assert len(messages) == 4, messages
    assert any("unknown dependency 'ghost'" in m for m in messages)
    assert any(m.startswith("invalid recovery_tier 9") for m in messages)
    assert any("same address" in m for m in messages)
    assert any(
        m.startswith("dependency cycle: b -> c -> b") or m.startswith("dependency cycle: c -> b -> c")
        for m in messages
    )


def test_missing_source(cli: Cli, tmp_path: Path, seeded_db: bytes) -> None:
    result = cli("inventory", "check", "-i", str(tmp_path / "nope.yml"))
    assert result.exit_code == 2
    assert "nope.yml: no such inventory file or directory" in result.stderr
    dangling = tmp_path / "dangling.yml"
    dangling.symlink_to(tmp_path / "gone.yml")
    assert cli("inventory", "sync", "-i", str(dangling)).exit_code == 2
    assert cli.db.read_bytes() == seeded_db


def test_no_inventory_given(cli: Cli) -> None:
    result = cli("inventory", "show", env={"ORCHESTRATOR_INVENTORY": ""})
    assert result.exit_code == 2
    assert "no inventory given" in result.stderr


def _vaulted_inventory(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An inventory whose host w1 has a vault-encrypted ansible_password, and the environment that opens it."""
    ansible_vault = Path(sys.executable).with_name("ansible-vault")
    password_file = write(tmp_path, "vault-pass", "correct horse\n")
    encrypted = subprocess.run(
        [
            str(ansible_vault),
            "encrypt_string",
            "--vault-password-file",
            str(password_file),
            "S3cr3t-Pa55",
            "--name",
            "ansible_password",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    inv_dir = tmp_path / "inv"
    write(inv_dir, "hosts.yml", "all:\n  hosts:\n    w1: {ansible_host: 127.9.6.1}\n")
    write(inv_dir, "host_vars/w1.yml", encrypted)
    return inv_dir, {**os.environ, "ANSIBLE_VAULT_PASSWORD_FILE": str(password_file)}


def test_vault_encrypted_password_is_usable_but_never_shown(tmp_path: Path) -> None:
    """Passwords come from Ansible Vault: decrypted in memory for the transports (also when the inventory
    was read by Prefetch's helper), absent from any output."""
    inv_dir, env = _vaulted_inventory(tmp_path)
    code = (
        "import json, sys; from orchestrator import inventory as I; p = I.Prefetch([sys.argv[1]]); "
        "helper = p._pid is not None; inv = I.load([sys.argv[1]]); h = inv.hosts['w1']; "
        "print(json.dumps({'secret': str(h.vars['ansible_password']), 'shown': h.to_dict(), "
        "'prefetched': p.result().hosts['w1'].vars['ansible_password'], 'helper': helper}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(inv_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=ROOT,
    )
    out = json.loads(proc.stdout)
    assert out["secret"] == out["prefetched"] == "S3cr3t-Pa55"
    assert out["helper"]
    assert "S3cr3t" not in json.dumps(out["shown"])
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator", "inventory", "show", "--json", "-i", str(inv_dir)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=ROOT,
    ).stdout
    assert "S3cr3t" not in shown and "w1" in shown


def test_prefetch_gives_what_load_gives() -> None:
    """`orchestrator run` loads its inventory in a forked helper: the same hosts, variables, groups
    and problems as load()."""
    loaded = inventory.load([str(HOSPITAL)])
    with inventory.Prefetch([str(HOSPITAL)]) as pending:
        assert pending._pid is not None  # the helper really runs
        got = pending.result()
    assert list(got.hosts) == list(loaded.hosts)
    assert got.hosts == loaded.hosts  # every attribute but vars
    for name, host in got.hosts.items():
        assert json.dumps(host.vars, default=str, sort_keys=True) == json.dumps(
            loaded.hosts[name].vars, default=str, sort_keys=True
        )
    assert got.groups == loaded.groups
    assert [str(p) for p in got.problems] == [str(p) for p in loaded.problems]


def test_prefetched_variables_render_as_ansible_renders_them(tmp_path: Path, monkeypatch) -> None:
    """ansible-core renders only text it trusts as a template: an inventory's env lookup still
    renders after crossing the helper's pipe as JSON, and a remote-looking string still does not."""
    from orchestrator.triage.transports import HostVars

    monkeypatch.setenv("PREFETCH_TEST_PASSWORD", "hunter2")
    path = write(
        tmp_path,
        "inv.yml",
        "all:\n  hosts:\n    a:\n      ansible_host: 127.9.7.1\n"
        "      ansible_password: \"{{ lookup('env', 'PREFETCH_TEST_PASSWORD') }}\"\n"
        "      ansible_user: \"{{ 'adm' ~ 'in' }}\"\n"
        '      recovery_extra: {nested: ["{{ 1 + 1 }}"]}\n'
        "      recovery_since: 2024-01-01\n",
    )
    got = inventory.Prefetch([str(path)]).result().hosts["a"]
    loaded = inventory.load([str(path)]).hosts["a"]
    assert HostVars(got).get("ansible_password") == HostVars(loaded).get("ansible_password") == "hunter2"
    assert HostVars(got).get("ansible_user") == HostVars(loaded).get("ansible_user") == "admin"
    assert got.vars["recovery_extra"] == {"nested": ["{{ 1 + 1 }}"]}
    assert isinstance(got.vars["recovery_extra"]["nested"][0], inventory.TrustedTemplate)
    assert got.vars["recovery_since"] == "2024-01-01"
    untrusted = {**got.vars, "ansible_user": "{{ 'adm' ~ 'in' }}"}  # plain text, as from a remote answer
    assert HostVars(dataclasses.replace(got, vars=untrusted)).get("ansible_user") == "{{ 'adm' ~ 'in' }}"


def test_prefetch_keeps_each_problem_with_its_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "inv.yml", BROKEN["bad_tier"][0])
    got = inventory.Prefetch([str(path)]).result()
    assert [str(p) for p in got.problems] == [
        f"{path}:3: host a: invalid recovery_tier 7 (expected 0, 1, 2 or 3)"
    ]


def test_prefetch_error_reads_as_load_error(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yml", BROKEN["yaml_syntax"][0])
    with pytest.raises(InventoryError) as direct:
        inventory.load([str(path)])
    with pytest.raises(InventoryError) as prefetched:
        inventory.Prefetch([str(path)]).result()
    assert str(prefetched.value) == str(direct.value)
    assert f"{path}:4:" in str(prefetched.value)


def test_prefetch_closed_unasked_leaves_no_process() -> None:
    pending = inventory.Prefetch([str(HOSPITAL)])
    pid = pending._pid
    assert pid is not None
    pending.close()
    with pytest.raises(ChildProcessError):  # reaped: not even a zombie is left
        os.waitpid(pid, os.WNOHANG)


def test_prefetch_loads_in_process_while_other_threads_run() -> None:
    """A fork could catch another thread holding a lock the helper then needs: no helper then."""
    import threading

    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        pending = inventory.Prefetch([str(HOSPITAL)])
        assert pending._pid is None
        assert list(pending.result().hosts) == list(inventory.load([str(HOSPITAL)]).hosts)
    finally:
        stop.set()
        worker.join()
