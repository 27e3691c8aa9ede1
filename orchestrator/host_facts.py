"""The inventory facts a host row mirrors (besides its name and resolved dependencies), and the ones
that say which host it is, in the order people read them.

One list for the places that must agree: the store writes these columns from the inventory
(`store.hosts.sync`), `status HOST` shows them (`reporting.host_summary`, on the lean path that
imports no SQLAlchemy, so the lists live here, importing nothing) and the report's row begins with
them."""

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
# Which host it is, first in `status HOST`'s inventory table and in the report's row.
IDENTITY = ("address", "os", "tier", "role", "site", "protected")
