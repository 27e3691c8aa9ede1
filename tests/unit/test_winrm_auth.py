"""Which Windows hosts get a warning, read from a real inventory: Basic or unencrypted messages over
HTTP (scheme from ansible_winrm_scheme, else the port, as Ansible decides), and accounts shared by
several hosts over a relayable authentication."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator import inventory as inventory_lib
from orchestrator import winrm_auth


def _hosts(tmp_path: Path, hosts: dict[str, dict]) -> list[inventory_lib.Host]:
    base = {"ansible_connection": "winrm", "ansible_user": "Administrator", "ansible_winrm_transport": "ntlm"}
    path = tmp_path / "inv.yml"
    path.write_text(json.dumps({"windows": {"hosts": {n: {**base, **v} for n, v in hosts.items()}}}))
    inv = inventory_lib.load([str(path)])
    assert not inv.problems, inv.problems
    return list(inv.hosts.values())


def test_plaintext_over_http_is_named_and_https_is_not(tmp_path: Path) -> None:
    hosts = _hosts(
        tmp_path,
        {
            "b1": {"ansible_host": "127.3.0.1", "ansible_winrm_transport": "basic", "ansible_port": 5985},
            "b2": {
                "ansible_host": "127.3.0.2",
                "ansible_winrm_transport": "basic,ntlm",
                "ansible_winrm_scheme": "http",
            },
            "b3": {"ansible_host": "127.3.0.3", "ansible_winrm_transport": "basic", "ansible_port": 5986},
            "clear": {
                "ansible_host": "127.3.0.4",
                "ansible_port": 5985,
                "ansible_winrm_message_encryption": "never",
            },
            "ntlm": {"ansible_host": "127.3.0.5", "ansible_port": 5985},
        },
    )
    warnings = winrm_auth.plaintext_warnings(hosts)
    assert len(warnings) == 2
    assert warnings[0].startswith("Basic authentication over HTTP on b1, b2: the password travels in clear")
    assert warnings[1].startswith("WinRM message encryption disabled over HTTP on clear:")


def test_shared_accounts_are_named_without_their_password(tmp_path: Path) -> None:
    same = "{{ lookup('env', 'RECOVERY_WINRM_PASSWORD') }}"
    hosts = _hosts(
        tmp_path,
        {
            **{f"w{i}": {"ansible_host": f"127.3.1.{i}", "ansible_password": same} for i in range(1, 13)},
            "own": {"ansible_host": "127.3.2.1", "ansible_password": "{{ lookup('env', 'LAPS_OWN') }}"},
            "krb1": {
                "ansible_host": "127.3.2.2",
                "ansible_password": same,
                "ansible_winrm_transport": "kerberos",
            },
        },
    )
    warnings = winrm_auth.shared_account_warnings(hosts)
    assert warnings == [
        "one account (Administrator) shared by 12 Windows hosts over NTLM/Basic: w1, w10, w11, w12, w2, w3, w4, "
        "w5, w6, w7 and 2 more; a compromised host can relay or crack it (use per-host LAPS passwords or "
        "Kerberos; see docs/windows-credentials.md)"
    ]
