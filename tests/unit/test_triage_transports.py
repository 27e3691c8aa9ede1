"""How the transports read the inventory: known_hosts files as OpenSSH would, WinRM settings as
Ansible's winrm connection would, passwords templated in memory and listed for scrubbing."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import inventory
from orchestrator.triage import transports


def _hosts(tmp_path: Path, text: str) -> dict[str, inventory.Host]:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    return inventory.load([str(path)]).hosts


def test_known_hosts_file_comes_from_the_ssh_args_as_ansible_passes_them(tmp_path: Path) -> None:
    hosts = _hosts(
        tmp_path,
        """
all:
  hosts:
    a: {ansible_host: 127.71.9.1, ansible_ssh_common_args: "-o UserKnownHostsFile=/srv/kh -o StrictHostKeyChecking=yes"}
    b: {ansible_host: 127.71.9.2, ansible_ssh_extra_args: "-oUserKnownHostsFile='/srv/one /srv/two'"}
    c: {ansible_host: 127.71.9.3, ansible_ssh_common_args: "-o 'UserKnownHostsFile ~/kh'"}
    d: {ansible_host: 127.71.9.4}
""",
    )
    files = {name: transports.known_hosts_files(transports.HostVars(h)) for name, h in hosts.items()}
    assert files["a"] == [Path("/srv/kh")]
    assert files["b"] == [Path("/srv/one"), Path("/srv/two")]
    assert files["c"] == [Path("~/kh").expanduser()]
    assert files["d"] == [Path("~/.ssh/known_hosts").expanduser(), Path("/etc/ssh/ssh_known_hosts")]


def test_winrm_settings_and_env_password_are_read_like_ansible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_TEST_PW", "s3cr3t-from-env")
    hosts = _hosts(
        tmp_path,
        """
all:
  children:
    windows:
      vars:
        ansible_connection: winrm
        ansible_user: 'LAB\\\\recovery'
        ansible_password: "{{ lookup('env', 'TRIAGE_TEST_PW') }}"
        ansible_winrm_transport: ntlm
      hosts:
        w1: {ansible_host: 127.71.9.10}
        w2: {ansible_host: 127.71.9.11, ansible_port: 5985, ansible_winrm_scheme: http}
        w3: {ansible_host: 127.71.9.12, ansible_winrm_server_cert_validation: ignore, ansible_winrm_transport: "kerberos,ntlm"}
""",
    )
    w1 = transports.WinRMTransport(hosts["w1"])
    assert (w1.endpoint, w1.auth, w1.validate) == ("https://127.71.9.10:5986/wsman", "ntlm", True)
    w2 = transports.WinRMTransport(hosts["w2"])
    assert w2.endpoint == "http://127.71.9.11:5985/wsman"
    w3 = transports.WinRMTransport(hosts["w3"])
    assert (w3.auth, w3.validate) == ("kerberos", False)
    assert w1.vars.get("ansible_password") == "s3cr3t-from-env"
    assert "s3cr3t-from-env" in transports.HostVars(hosts["w1"]).secrets()
    # The raw template is what the inventory holds; only the resolved value is a secret to scrub.
    assert hosts["w1"].vars["ansible_password"].startswith("{{")


def test_error_kinds_map_to_verdicts() -> None:
    for kind in ("refused", "timeout", "dns", "unreachable"):
        assert transports.TransportError(kind, "x").verdict == "unreachable"
    for kind in ("auth", "hostkey_changed", "hostkey_unknown", "tls", "command_failed", "command_timeout"):
        assert transports.TransportError(kind, "x").verdict == "error"
