"""The inventory cache (orchestrator/inventory/cache.py) through the real CLI, each command a new
process: a change to any kind of input is seen by the next command, dynamic sources run every time
unless the operator sets a TTL, the file is private and holds no vault secret in clear."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

VAULT_PASSWORD = "correct horse\n"


def write(base: Path, name: str, text: str) -> Path:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class Env:
    def __init__(self, tmp_path: Path) -> None:
        self.cache = tmp_path / "cache"
        self.inv = tmp_path / "inv"
        self.password_file = write(tmp_path, "vault-pass", VAULT_PASSWORD)
        self.env = {
            **os.environ,
            "ORCHESTRATOR_INVENTORY_CACHE": str(self.cache),
            "ANSIBLE_VAULT_PASSWORD_FILE": str(self.password_file),
        }

    def show(self, *extra: str, env: dict[str, str] | None = None) -> dict[str, dict]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "inventory",
                "show",
                "--json",
                "-i",
                str(self.inv),
                *extra,
            ],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        return {h["name"]: h for h in json.loads(proc.stdout)["hosts"]}

    def cache_files(self) -> list[Path]:
        return sorted(self.cache.glob("*.json")) if self.cache.exists() else []

    def vault(self, value: str, name: str) -> str:
        return subprocess.run(
            [str(Path(sys.executable).with_name("ansible-vault")), "encrypt_string", "--vault-password-file",
             str(self.password_file), value, "--name", name],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> Env:
    e = Env(tmp_path)
    write(
        e.inv,
        "hosts.yml",
        "all:\n  children:\n    web:\n      hosts:\n        w1: {ansible_host: 127.61.0.1}\n",
    )
    write(e.inv, "group_vars/web.yml", "recovery_tier: 2\n")
    return e


def test_every_kind_of_static_input_invalidates_the_cache(env: Env) -> None:
    assert env.show()["w1"]["tier"] == 2
    [cached] = env.cache_files()
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o700
    before = cached.stat().st_mtime_ns
    assert env.show()["w1"]["tier"] == 2
    assert cached.stat().st_mtime_ns == before  # a hit: read, not written again

    write(
        env.inv,
        "hosts.yml",
        "all:\n  children:\n    web:\n      hosts:\n        w1: {ansible_host: 127.61.0.2}\n",
    )
    assert env.show()["w1"]["address"] == "127.61.0.2"  # the inventory file
    write(env.inv, "group_vars/web.yml", "recovery_tier: 1\n")
    assert env.show()["w1"]["tier"] == 1  # group_vars
    write(env.inv, "host_vars/w1.yml", "recovery_site: north\n")
    assert env.show()["w1"]["site"] == "north"  # host_vars, a new file
    write(
        env.inv, "zz-groups.yml", "plugin: constructed\ngroups:\n  northern: ansible_host == '127.61.0.2'\n"
    )
    assert "northern" in env.show()["w1"]["groups"]  # a plugin's configuration
    write(env.inv, "zz-groups.yml", "plugin: constructed\ngroups:\n  boreal: ansible_host == '127.61.0.2'\n")
    assert "boreal" in env.show()["w1"]["groups"]
    cfg = write(env.inv.parent, "ansible.cfg", "[defaults]\n")
    # the Ansible configuration named by ANSIBLE_CONFIG: its content is part of the key
    first = env.show(env={"ANSIBLE_CONFIG": str(cfg)})
    cfg.write_text(
        "[inventory]\nenable_plugins = yaml\n"
    )  # constructed no longer enabled: zz-groups.yml fails
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "inventory", "show", "--json", "-i", str(env.inv)],
        capture_output=True, text=True, env={**env.env, "ANSIBLE_CONFIG": str(cfg)}, cwd=ROOT,
    )  # fmt: skip
    assert "boreal" in first["w1"]["groups"]
    assert proc.returncode != 0 or "boreal" not in proc.stdout


def test_inline_vault_values_are_cached_encrypted_and_a_change_is_seen(env: Env) -> None:
    write(env.inv, "host_vars/w1.yml", env.vault("S3cr3t-One", "ansible_password") + "recovery_site: a\n")
    code = (
        "import sys; from orchestrator.inventory import cache as c; "
        "print(str(c.load([sys.argv[1]]).hosts['w1'].vars['ansible_password']))"
    )

    def password() -> str:
        return subprocess.run([sys.executable, "-c", code, str(env.inv)], capture_output=True, text=True,
                              env=env.env, check=True, cwd=ROOT).stdout.strip()  # fmt: skip

    assert password() == "S3cr3t-One"  # loaded by Ansible, cache written
    [cached] = env.cache_files()
    text = cached.read_text()
    assert "S3cr3t" not in text and "$ANSIBLE_VAULT" in text
    assert password() == "S3cr3t-One"  # from the cache, decrypted in memory
    assert cached.read_text() == text
    write(env.inv, "host_vars/w1.yml", env.vault("S3cr3t-Two", "ansible_password") + "recovery_site: a\n")
    assert password() == "S3cr3t-Two"
    assert "S3cr3t" not in cached.read_text()


def test_a_whole_file_vault_is_never_cached(env: Env) -> None:
    secret = write(env.inv, "group_vars/web/vault.yml", "ansible_password: Wh0le-F1le\n")
    write(env.inv, "group_vars/web/main.yml", "recovery_tier: 1\n")
    (env.inv / "group_vars" / "web.yml").unlink()
    subprocess.run(
        [str(Path(sys.executable).with_name("ansible-vault")), "encrypt", "--vault-password-file",
         str(env.password_file), str(secret)],
        check=True, capture_output=True,
    )  # fmt: skip
    assert env.show()["w1"]["tier"] == 1
    assert env.cache_files() == []


def test_a_dynamic_script_runs_every_time_unless_a_ttl_is_set(env: Env) -> None:
    counter = env.inv.parent / "runs"
    script = write(
        env.inv,
        "dynamic.py",
        f"#!{sys.executable}\nimport json, pathlib\np = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\np.write_text(str(n))\n"
        "print(json.dumps({'dyn': {'hosts': [f'd{n}']}, '_meta': {'hostvars': {f'd{n}': "
        "{'ansible_host': '127.61.1.1'}}}}))\n",
    )
    script.chmod(0o755)
    assert "d1" in env.show()
    assert "d2" in env.show()  # no TTL: the script ran again
    assert env.cache_files() == []
    ttl = {"ORCHESTRATOR_INVENTORY_CACHE_TTL": "600"}
    assert "d3" in env.show(env=ttl)
    assert "d3" in env.show(env=ttl)  # within the TTL: the cached answer
    assert "d4" in env.show(env={"ORCHESTRATOR_INVENTORY_CACHE_TTL": "0.001"})  # older than that: run again


def test_a_bad_ttl_is_refused(env: Env) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "inventory", "show", "-i", str(env.inv)],
        capture_output=True, text=True, env={**env.env, "ORCHESTRATOR_INVENTORY_CACHE_TTL": "soon"}, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "ORCHESTRATOR_INVENTORY_CACHE_TTL='soon'" in proc.stderr


def test_host_patterns_on_a_cached_inventory_match_as_ansible_does(tmp_path: Path) -> None:
    e = Env(tmp_path)
    e.inv = ROOT / "inventory" / "hospital"
    for pattern in ("tier0", "tier0:&windows", "ehr*:!ehrdb*", "~^dc", "all"):
        fresh = e.show("-l", pattern, env={"ORCHESTRATOR_INVENTORY_CACHE": "off"})
        e.show("-l", pattern)
        cached = e.show("-l", pattern)
        assert set(cached) == set(fresh), pattern
        assert cached == fresh or pattern == "all", pattern  # `all` is in Ansible's own (hash-seed) order


def test_a_damaged_cache_file_is_ignored_and_rewritten(env: Env) -> None:
    assert env.show()["w1"]["tier"] == 2
    [cached] = env.cache_files()
    cached.write_text('{"format": 1, "key": "')  # cut short, as by a full disk
    assert env.show()["w1"]["tier"] == 2
    assert json.loads(cached.read_text())["hosts"][0]["name"] == "w1"  # loaded again and rewritten


def test_commands_that_load_in_a_helper_share_the_entry(env: Env) -> None:
    """`run` loads in a forked helper after `inventory.load`'s own environment default is set: the
    entry `plan` wrote must still be the one `run` reads."""
    env.show()
    [cached] = env.cache_files()
    before = cached.stat().st_mtime_ns
    env.show(env={"ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"})
    assert cached.stat().st_mtime_ns == before


def test_an_env_lookup_read_from_the_cache_still_renders_through_prefetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` reads its inventory through Prefetch: a `{{ lookup('env', ...) }}` password that came from
    the cache must still be a trusted template there, or WinRM logs in with the template's text."""
    from orchestrator import inventory
    from orchestrator.triage.transports import HostVars

    e = Env(tmp_path)
    write(e.inv, "hosts.yml", "all:\n  hosts:\n    w1:\n      ansible_host: 127.0.0.5\n"
          "      ansible_password: \"{{ lookup('env', 'CACHE_TEST_PASSWORD') }}\"\n")  # fmt: skip
    monkeypatch.setenv("ORCHESTRATOR_INVENTORY_CACHE", str(e.cache))
    monkeypatch.setenv("CACHE_TEST_PASSWORD", "hunter2")
    e.show()  # a command in a new process fills the cache
    assert e.cache_files()
    for _ in range(2):  # the first reads the cache file, the second too
        with inventory.Prefetch([str(e.inv)]) as pending:
            host = pending.result().hosts["w1"]
        assert HostVars(host).secrets() == {"hunter2"}


def test_marked_values_come_back_where_they_were_and_lookalikes_stay_data(env: Env) -> None:
    """Vault values and trusted templates at any depth come back as such from the cache (listed by
    path, the file parsed without a hook); a variable that only looks like a marker stays a dict."""
    write(
        env.inv,
        "host_vars/w1.yml",
        env.vault("S3cr3t-One", "ansible_password")
        + "nested: {list: [plain, \"{{ lookup('env', 'HOME') }}\"]}\n"
        + "lookalike: {__orchestrator_trusted_template__: \"{{ lookup('env', 'HOME') }}\"}\n",
    )
    code = (
        "import sys; from orchestrator.inventory import cache as c, prefetch as p; "
        "v = c.load([sys.argv[1]]).hosts['w1'].vars; "
        "print(str(v['ansible_password']), type(v['nested']['list'][1]).__name__, "
        "type(v['lookalike']).__name__)"
    )

    def read() -> str:
        return subprocess.run([sys.executable, "-c", code, str(env.inv)], capture_output=True, text=True,
                              env=env.env, check=True, cwd=ROOT).stdout.strip()  # fmt: skip

    first = read()  # Ansible's loader, the cache written
    assert env.cache_files()
    cached = read()  # from the cache
    password, template, lookalike = cached.split()
    assert password == "S3cr3t-One" and lookalike == "dict"
    assert template == "TrustedTemplate" and first.split()[2].lower().endswith("dict")
