"""The inventory facts a host row mirrors (besides its name and resolved dependencies).

One list for the two that must agree: the store writes these columns from the inventory
(`store.hosts.sync`), and `status HOST` shows them (`reporting.host_summary`, on the lean path that
imports no SQLAlchemy, so the list lives here, importing nothing)."""

from __future__ import annotations

FIELDS = (
    "address",
    "port",
    "connection",
    "os",
    "tier",
    "role",
    "site",
    "protected",
    "priority",
    "reimage_method",
    "restore_method",
    "execution_node",
    "groups",
    "data_categories",
)
