"""The host snapshot: what the inventory said about each host the last time a command looked.

Later stages (plan, status, reports) read hosts from here, so a report still names a host's tier and
data categories after the inventory file has moved on.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import Session, col, select

from orchestrator.inventory import Host as InventoryHost
from orchestrator.store.models import Host, utcnow

# The inventory facts a host row mirrors (besides its name and resolved dependencies).
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


def locked(session: Session, names: list[str]) -> dict[str, Host]:
    """The named hosts, row-locked until the write transaction ends (PostgreSQL: another writer waits
    and then reads what this one committed; SQLite's write transactions already exclude each other).
    Locked in id order, as `sync` locks them, so two writers never deadlock over the same rows."""
    query = select(Host).where(col(Host.name).in_(names)).order_by(col(Host.id)).with_for_update()
    return {h.name: h for h in session.exec(query)}


def sync(session: Session, hosts: Iterable[InventoryHost]) -> tuple[int, int]:
    """Insert new hosts and refresh known ones (recovery state untouched); return (added, updated).

    Every row is locked first: a run changing a host's state meanwhile waits, or is waited for."""
    existing = {h.name: h for h in session.exec(select(Host).order_by(col(Host.id)).with_for_update())}
    added = updated = 0
    now = utcnow()
    for inv in hosts:
        row = existing.get(inv.name)
        values = {f: getattr(inv, f) for f in FIELDS}
        values["depends_on"] = inv.depends_on_hosts
        if row is None:
            session.add(Host(name=inv.name, synced_at=now, **values))
            added += 1
            continue
        changed = False
        for key, value in values.items():
            if getattr(row, key) != value:
                setattr(row, key, value)
                changed = True
        row.synced_at = now
        session.add(row)
        updated += changed
    session.flush()
    return added, updated
