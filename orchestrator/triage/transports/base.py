"""What every transport shares: the interface (`run(script, timeout)`), the per-host deadline, the
failure kinds and their verdicts, the output bounds, the host's templated variables and bounded name
resolution. Each protocol (ssh.py, winrm.py) builds on these and nothing else, as pyinfra's connectors
do, so a new protocol is one new module.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from orchestrator.inventory import FLEET_WIDE_VARS, SECRET_VARS, Host, ansible_value

# Kinds of failure, and the verdict each one gives the host.
UNREACHABLE_KINDS = ("refused", "timeout", "dns", "unreachable")
ERROR_KINDS = ("auth", "hostkey_changed", "hostkey_unknown", "tls", "command_failed", "command_timeout")
HOSTKEY_CHANGED = "host key changed: possible interception"
MAX_STDOUT = 8 * 1024 * 1024
MAX_STDERR = 64 * 1024
CONNECT_TIMEOUT = 10.0
# Variables Ansible sets itself on every host: never a secret of the operator's.
MAGIC_VARS = FLEET_WIDE_VARS | {
    "group_names",
    "inventory_dir",
    "inventory_file",
    "inventory_hostname",
    "inventory_hostname_short",
    "playbook_dir",
    "ansible_playbook_python",
    "ansible_config_file",
    "ansible_version",
    "ansible_facts",
    "omit",
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TransportError(Exception):
    """A host could not be checked; `kind` is one of UNREACHABLE_KINDS or ERROR_KINDS."""

    def __init__(self, kind: str, reason: str, stdout: str = "") -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.stdout = stdout  # what a command printed before it failed or timed out

    @property
    def verdict(self) -> str:
        return "unreachable" if self.kind in UNREACHABLE_KINDS else "error"


class Transport(Protocol):
    def run(self, script: str, timeout: float) -> tuple[int, str, str]:
        """Run one script; return (exit code, stdout, stderr) or raise TransportError."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return max(self.end - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return time.monotonic() >= self.end


# --- Inventory variables --------------------------------------------------------------------------


class HostVars:
    """A host's Ansible variables, templated on use (`{{ lookup('env', 'X') }}` resolves like Ansible's
    own), so a password is only ever held in memory, for the connection that needs it."""

    def __init__(self, host: Host) -> None:
        self._vars = host.vars
        self._templar: Any = None

    def get(self, *names: str) -> Any:
        for name in names:
            value = self._vars.get(name)
            if value is None or value == "":
                continue
            if isinstance(value, str) and "{{" in value:
                value = self._template(value)
            if value is not None and value != "":
                return value
        return None

    def _template(self, value: str) -> Any:
        if self._templar is None:
            from ansible.parsing.dataloader import DataLoader
            from ansible.template import Templar

            self._templar = Templar(loader=DataLoader(), variables=ansible_value(self._vars))
        return self._templar.template(ansible_value(value))

    def secret_names(self) -> list[str]:
        """The variables that can hold a secret: the connection passwords, and any name that says so
        (Ansible's magic variables never do, and `groups` alone is as large as the fleet)."""
        from orchestrator.store.audit import SECRET_NAME

        return [
            name
            for name in self._vars
            if name not in MAGIC_VARS and (name in SECRET_VARS or SECRET_NAME.search(str(name)))
        ]

    def secrets(self, only: Iterable[str] | None = None) -> set[str]:
        """The values of this host's secret variables (templated), to scrub from anything stored."""
        found: set[str] = set()
        names = set(self.secret_names())
        for name in names if only is None else [n for n in only if n in names]:
            try:
                value = self.get(name)
            except Exception:  # an unresolvable template cannot leak its value
                continue
            if isinstance(value, str | int) and str(value):
                found.add(str(value))
        return found

    def render_key(self, name: str) -> tuple[str, ...]:
        """Everything the templated value of `name` depends on: its raw text and, for a template, the
        raw text of each variable of this host it names, followed transitively. Two variables with
        equal keys render to the same value, so a run templates each distinct value once, not once
        per host (a fleet's password usually comes from one group_vars file)."""
        key: list[str] = [repr(self._vars.get(name))]
        pending = [self._vars.get(name)]
        seen = {name}
        while pending:
            value = pending.pop()
            if not (isinstance(value, str) and "{{" in value):
                continue
            for word in sorted(set(_IDENTIFIER.findall(value)) - seen):
                if word in self._vars and word not in FLEET_WIDE_VARS:
                    seen.add(word)
                    key.append(f"{word}={self._vars[word]!r}")
                    pending.append(self._vars[word])
        return tuple(key)


# --- Name resolution -----------------------------------------------------------------------------


def resolve(address: str, port: int, deadline: Deadline) -> tuple[Any, ...]:
    """The address (an IP, or a name as the inventory gives it), looked up within the deadline: the
    system resolver has no timeout of its own, so the lookup runs on a helper thread and a resolver
    that hangs costs the host its timeout, not the run."""
    answer: list[Any] = []

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(address, port, type=socket.SOCK_STREAM))
        except (socket.gaierror, UnicodeError, OSError) as exc:
            answer.append(exc)

    worker = threading.Thread(target=lookup, name=f"resolve-{address}", daemon=True)
    worker.start()
    worker.join(deadline.left())
    if not answer or deadline.expired():
        raise TransportError("timeout", f"timeout: resolving {address!r} took over {deadline.seconds:g}s")
    if isinstance(answer[0], BaseException):
        raise TransportError("dns", f"DNS failure: cannot resolve {address!r} ({answer[0]})")
    return answer[0][0]
