"""Hosts from a standard Ansible inventory, with their recovery attributes, and the checks that say
whether that inventory can drive a recovery.

Parsing is Ansible's own (InventoryManager, vars plugins for group_vars/host_vars, Vault): INI, YAML,
directories, inventory plugins and dynamic inventory scripts read exactly as `ansible-inventory`
reads them. `loading` reads the sources, `records` turns one host's variables into a `Host`,
`checks` looks across hosts, `prefetch` loads in a forked helper.
"""

from orchestrator.inventory.checks import find_cycles
from orchestrator.inventory.loading import load
from orchestrator.inventory.model import (
    DEFAULT_TIER_BY_ROLE,
    FLEET_WIDE_VARS,
    ROLES,
    SECRET_VARS,
    TIERS,
    WINDOWS_CONNECTIONS,
    WINRM_TRANSPORTS,
    Host,
    Inventory,
    Problem,
)
from orchestrator.inventory.prefetch import Prefetch, TrustedTemplate, ansible_value

__all__ = [
    "DEFAULT_TIER_BY_ROLE",
    "FLEET_WIDE_VARS",
    "ROLES",
    "SECRET_VARS",
    "TIERS",
    "WINDOWS_CONNECTIONS",
    "WINRM_TRANSPORTS",
    "Host",
    "Inventory",
    "Prefetch",
    "Problem",
    "TrustedTemplate",
    "ansible_value",
    "find_cycles",
    "load",
]
