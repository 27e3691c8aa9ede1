"""The host snapshot (`store.hosts.sync`, SQLAlchemy Core): new hosts inserted as the ORM would,
changed facts refreshed, the recovery state and version never touched, every row's snapshot time
renewed."""

from __future__ import annotations

from pathlib import Path

import yaml
from sqlmodel import select

from orchestrator import inventory as inventory_lib
from orchestrator.store import Store
from orchestrator.store import hosts as host_store
from orchestrator.store.models import Host


def _inventory(path: Path, ws_tier: int, extra_group: bool) -> list[inventory_lib.Host]:
    children = {
        "domain_controllers": {"hosts": {"dc01": {"ansible_host": "127.0.0.2", "recovery_tier": 0}}},
        "workstations": {
            "hosts": {
                "ws01": {
                    "ansible_host": "127.0.0.3",
                    "recovery_tier": ws_tier,
                    "recovery_depends_on": ["dc01"],
                },
                "ws02": {"ansible_host": "127.0.0.4", "recovery_tier": 3},
            }
        },
    }
    if extra_group:
        children["wards"] = {"hosts": {"ws01": None}}
    path.write_text(yaml.safe_dump({"all": {"children": children}}))
    inv = inventory_lib.load([str(path)])
    inv.require_valid()
    return list(inv.hosts.values())


def _rows(store: Store) -> dict[str, Host]:
    with store.read() as session:
        return {h.name: h for h in session.exec(select(Host))}


def test_sync_inserts_refreshes_and_leaves_the_recovery_state(tmp_path: Path) -> None:
    store = Store.open(str(tmp_path / "r.db"))
    with store.write() as session:
        assert host_store.sync(session, _inventory(tmp_path / "a.yml", 3, False)) == (3, 0)
    first = _rows(store)
    assert first["ws01"].state == "new" and first["ws01"].version == 0 and first["ws01"].tier == 3
    assert first["ws01"].depends_on == ["dc01"] and first["dc01"].protected is False
    with store.write() as session:  # a run moved ws02 on meanwhile
        row = session.exec(select(Host).where(Host.name == "ws02")).one()
        row.state, row.version = "isolating", 4
        session.add(row)
    with store.write() as session:
        assert host_store.sync(session, _inventory(tmp_path / "b.yml", 2, True)) == (0, 1)
    second = _rows(store)
    assert second["ws01"].tier == 2 and "wards" in second["ws01"].groups
    assert second["ws02"].state == "isolating" and second["ws02"].version == 4
    assert all(second[n].synced_at > first[n].synced_at for n in first)
    with store.write() as session:
        assert host_store.sync(session, _inventory(tmp_path / "c.yml", 2, True)) == (0, 0)
    store.close()
