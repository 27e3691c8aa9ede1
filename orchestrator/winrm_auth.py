"""How each Windows host is logged into, judged from its inventory variables: which hosts would send a
password or their commands in clear, and which share one account.

The hosts we connect to may be the attacker's. Basic auth over HTTP hands the password to anyone on the
path, and to the host itself; a WinRM session without message encryption lets the path read and change
the commands and their output. One account shared by many hosts over NTLM is worse than one leak: a
compromised host receives the NTLM exchange and can relay it to the others or crack it offline
(docs/windows-credentials.md). Passwords are compared as written in the inventory (a template by its text, a vault value by its
ciphertext); nothing here is shown or stored but host and user names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PLAINTEXT_TRANSPORTS = ("basic", "plaintext")  # the password itself on the wire
SHOWN = 10  # host names listed in one warning


def scheme(host: Any) -> str:
    """`http` or `https`, as Ansible's winrm connection (and our triage transport) decides it."""
    explicit = str(host.vars.get("ansible_winrm_scheme") or "").strip().lower()
    if explicit:
        return explicit
    return "http" if (host.port or 5986) == 5985 else "https"


def transports(host: Any) -> list[str]:
    raw = host.vars.get("ansible_winrm_transport") or "ntlm"
    values = raw if isinstance(raw, list) else str(raw).split(",")
    return [str(v).strip().lower() for v in values if str(v).strip()]


def _winrm(hosts: Iterable[Any]) -> list[Any]:
    return [h for h in hosts if h.os == "windows" and h.connection == "winrm"]


def plaintext_warnings(hosts: Iterable[Any]) -> list[str]:
    """One line per exposure, naming the hosts: the password in clear, or commands unencrypted."""
    clear_password: list[str] = []
    clear_messages: list[str] = []
    for host in _winrm(hosts):
        if scheme(host) != "http":
            continue
        if any(t in PLAINTEXT_TRANSPORTS for t in transports(host)):
            clear_password.append(host.name)
        elif str(host.vars.get("ansible_winrm_message_encryption") or "auto").lower() == "never":
            clear_messages.append(host.name)
    out = []
    if clear_password:
        out.append(
            f"Basic authentication over HTTP on {_names(clear_password)}: the password travels in clear "
            "(use HTTPS with certificate validation, or Kerberos; see docs/windows-credentials.md)"
        )
    if clear_messages:
        out.append(
            f"WinRM message encryption disabled over HTTP on {_names(clear_messages)}: commands and their "
            "output travel in clear (use HTTPS, or leave ansible_winrm_message_encryption at auto)"
        )
    return out


def shared_account_warnings(hosts: Iterable[Any]) -> list[str]:
    """Accounts (user and password expression) used by more than one host with a password-based,
    relayable authentication: NTLM, Basic or CredSSP."""
    shared: dict[tuple[str, str], list[str]] = {}
    for host in _winrm(hosts):
        if "kerberos" in transports(host)[:1] or "certificate" in transports(host)[:1]:
            continue
        user = host.vars.get("ansible_winrm_user") or host.vars.get("ansible_user")
        password = host.vars.get("ansible_winrm_password") or host.vars.get("ansible_password")
        if user and password:
            written = getattr(password, "_ciphertext", None) or str(password)  # a vault value: as encrypted
            shared.setdefault((str(user), str(written)), []).append(host.name)
    return [
        f"one account ({user}) shared by {len(names)} Windows hosts over NTLM/Basic: {_names(names)}; a "
        "compromised host can relay or crack it (use per-host LAPS passwords or Kerberos; see "
        "docs/windows-credentials.md)"
        for (user, _), names in shared.items()
        if len(names) > 1
    ]


def _names(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(sorted(names)[:SHOWN]) + more
