"""The host snapshot: what the inventory said about each host the last time a command looked.

Later stages (plan, status, reports) read hosts from here, so a report still names a host's tier and
data categories after the inventory file has moved on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, insert, update
from sqlmodel import Session, col, select

from orchestrator.host_facts import FIELDS
from orchestrator.inventory import Host as InventoryHost
from orchestrator.store import analyze, audit
from orchestrator.store.models import Host, utcnow

if TYPE_CHECKING:
    from orchestrator.store import Store

CHUNK = 10_000  # ids per statement, under every database's limit on bound parameters


def locked(session: Session, names: list[str]) -> dict[str, Host]:
    """The named hosts, row-locked until the write transaction ends (PostgreSQL: another writer waits
    and then reads what this one committed; SQLite's write transactions already exclude each other).
    Locked in id order, as `sync` locks them, so two writers never deadlock over the same rows."""
    query = select(Host).where(col(Host.name).in_(names)).order_by(col(Host.id)).with_for_update()
    return {h.name: h for h in session.exec(query)}


def sync(session: Session, hosts: Iterable[InventoryHost]) -> tuple[int, int]:
    """Insert new hosts and refresh known ones (recovery state untouched); return (added, updated).

    Every row is locked first: a run changing a host's state meanwhile waits, or is waited for.
    Written with SQLAlchemy Core, not ORM objects: at 50,000 hosts, loading and flushing one object
    per host took seconds before every triage, plan and run; rows and executemany take a fraction.
    No version check is needed on the rows written: they are locked until the transaction ends.
    """
    table = Host.__table__  # type: ignore[attr-defined]
    facts = (*FIELDS, "depends_on")
    query = select(table.c.id, table.c.name, *(table.c[f] for f in facts)).order_by(table.c.id)
    existing = {row.name: row for row in session.execute(query.with_for_update())}
    now = utcnow()
    new: list[dict] = []
    changed: list[dict] = []
    unchanged: list[int] = []
    for inv in hosts:
        values = {f: getattr(inv, f) for f in FIELDS}
        values["depends_on"] = inv.depends_on_hosts
        row = existing.get(inv.name)
        if row is None:
            new.append({"name": inv.name, **values, "state": "new", "version": 0, "synced_at": now})
        elif any(getattr(row, key) != value for key, value in values.items()):
            changed.append({"row_id": row.id, **{f"new_{k}": v for k, v in values.items()}})
        else:
            unchanged.append(int(row.id))
    if new:
        session.execute(insert(table), new)
    if changed:
        session.execute(
            update(table)
            .where(table.c.id == bindparam("row_id"))
            .values({**{f: bindparam(f"new_{f}") for f in facts}, "synced_at": now}),
            changed,
            execution_options={"synchronize_session": False},
        )
    # The rows whose facts did not change only get the new snapshot time: one statement per chunk.
    for start in range(0, len(unchanged), CHUNK):
        session.execute(
            update(table).where(table.c.id.in_(unchanged[start : start + CHUNK])).values(synced_at=now),
            execution_options={"synchronize_session": False},
        )
    analyze.after_bulk_write(session, [Host.__tablename__], len(new) + len(changed))
    return len(new), len(changed)


def sync_inventory(
    store: Store, operator: str, sources: Sequence[str], limit: str | None, args: dict[str, Any]
) -> tuple[int, int, int]:
    """`orchestrator inventory sync`: the inventory's hosts recorded, audited in the same transaction;
    nothing is written when the inventory has any problem. Returns (hosts, added, updated)."""
    from orchestrator.inventory import cache as inventory_cache

    inv = inventory_cache.load(list(sources))
    inv.require_valid()
    hosts = inv.select(limit)
    with store.write() as session:
        added, updated = sync(session, hosts)
        audit.record(session, operator, "inventory sync", args, {"added": added, "updated": updated})
    return len(hosts), added, updated
