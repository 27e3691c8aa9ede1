"""What the inventory becomes: host records, problems found in it, and the loaded whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import InventoryError

TIERS = {0: "identity and core infrastructure", 1: "life-critical clinical", 2: "business", 3: "workstations"}
ROLES = ("server", "workstation")
DEFAULT_TIER_BY_ROLE = {"server": 2, "workstation": 3}
WINDOWS_CONNECTIONS = ("winrm", "psrp")
WINRM_TRANSPORTS = ("basic", "ntlm", "kerberos", "credssp", "certificate", "plaintext", "ssl")
# Ansible's magic variables that hold the whole fleet (`groups`: every group with every host). A host
# keeps only its own variables: copied into each of 50,000 hosts, these make every per-host step
# (templating, scrubbing, the Prefetch pipe, the cache) cost as much as the fleet, the run quadratic.
FLEET_WIDE_VARS = frozenset(
    {"groups", "hostvars", "ansible_play_hosts", "ansible_play_hosts_all", "play_hosts"}
)
# Variables that hold secrets: read for connecting, never copied out of memory.
SECRET_VARS = frozenset(
    {
        "ansible_password",
        "ansible_ssh_pass",
        "ansible_ssh_password",
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_winrm_password",
        "ansible_httpapi_pass",
        "ansible_ssh_private_key_passphrase",
    }
)


@dataclass
class Host:
    """A host as the recovery sees it. `address`, `port` and `user` are what Ansible's connection
    plugin would use (legacy names and templates included); the address may be a name, resolved only
    when connecting. `vars` (all its Ansible variables, secrets included, as Ansible holds them:
    templates unrendered) stays in memory for the transports: never written anywhere (it crosses at
    most `Prefetch`'s pipe)."""

    name: str
    address: str
    port: int | None
    user: str | None
    connection: str
    os: str
    tier: int
    role: str
    depends_on: list[str]
    depends_on_hosts: list[str]
    protected: bool
    site: str | None
    reimage_method: str | None
    restore_method: str | None
    priority: int
    groups: list[str]
    data_categories: list[str]
    execution_node: str | None
    vars: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stable, secret-free JSON shape (documented in docs/commands.md)."""
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "connection": self.connection,
            "os": self.os,
            "tier": self.tier,
            "role": self.role,
            "site": self.site,
            "protected": self.protected,
            "priority": self.priority,
            "depends_on": self.depends_on,
            "depends_on_hosts": self.depends_on_hosts,
            "groups": self.groups,
            "reimage_method": self.reimage_method,
            "restore_method": self.restore_method,
            "data_categories": self.data_categories,
            "execution_node": self.execution_node,
        }


@dataclass
class Problem:
    """One thing wrong with the inventory, with where it was found."""

    message: str
    host: str | None = None
    where: str | None = None  # file[:line[:col]]

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        subject = f"host {self.host}: " if self.host else ""
        return f"{prefix}{subject}{self.message}"


@dataclass
class Inventory:
    sources: list[str]
    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    problems: list[Problem]
    _manager: Any = field(repr=False, default=None)

    def select(self, pattern: str | None) -> list[Host]:
        """Hosts matching an Ansible host pattern (`web:&north:!web03`, `tier0`, `ehr*`), in inventory order."""
        if not pattern:
            return list(self.hosts.values())
        if self._manager is None:
            raise InventoryError("host patterns need the inventory loaded with load(), not Prefetch")
        names = [h.name for h in self._manager.get_hosts(pattern=pattern)]
        if not names:
            raise InventoryError(f"--limit {pattern!r} matches no host in {', '.join(self.sources)}")
        return [self.hosts[n] for n in names if n in self.hosts]

    def require_valid(self) -> None:
        if self.problems:
            raise InventoryError(
                f"{self.problems[0]} ({len(self.problems)} problem(s); run 'orchestrator inventory check')",
                [str(p) for p in self.problems],
            )
