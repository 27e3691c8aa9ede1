"""How a check script reaches a host and its output comes back: one interface, `run(script, timeout)`,
over SSH (paramiko) for Linux and WinRM (pywinrm) for Windows.

Every phase (name resolution, TCP connect, banner, key exchange, authentication, the command itself)
is bounded by one per-host deadline, so a host whose sshd was stopped with SIGSTOP costs its timeout
and no more. Failures are raised as `TransportError` with a kind that says what went wrong, because
"refused", "timed out", "no such name", "wrong key" and "host key changed" each call for a different
action from the operator.

One module per protocol behind the interface in base.py (ssh.py, winrm.py with its bounded HTTP in
winrm_http.py); this package picks one per host and exports the names callers use.
"""

from orchestrator.inventory import Host
from orchestrator.triage.transports.base import (
    CONNECT_TIMEOUT,
    ERROR_KINDS,
    HOSTKEY_CHANGED,
    MAX_STDERR,
    MAX_STDOUT,
    UNREACHABLE_KINDS,
    Deadline,
    HostVars,
    Transport,
    TransportError,
    resolve,
)
from orchestrator.triage.transports.ssh import (
    KnownHosts,
    PrivateKeys,
    SSHOptions,
    SSHTransport,
    connect,
    known_hosts_files,
    login_key_fingerprints,
)
from orchestrator.triage.transports.winrm import POWERSHELL_STDIN, WinRMTransport


def for_host(host: Host, ssh_options: SSHOptions) -> SSHTransport | WinRMTransport:
    if host.connection in ("winrm", "psrp"):
        return WinRMTransport(host)
    return SSHTransport(host, ssh_options)


__all__ = [
    "CONNECT_TIMEOUT",
    "ERROR_KINDS",
    "HOSTKEY_CHANGED",
    "MAX_STDERR",
    "MAX_STDOUT",
    "POWERSHELL_STDIN",
    "UNREACHABLE_KINDS",
    "Deadline",
    "HostVars",
    "KnownHosts",
    "PrivateKeys",
    "SSHOptions",
    "SSHTransport",
    "Transport",
    "TransportError",
    "WinRMTransport",
    "connect",
    "for_host",
    "known_hosts_files",
    "login_key_fingerprints",
    "resolve",
]
