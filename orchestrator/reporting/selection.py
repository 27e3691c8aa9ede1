"""Which hosts a status, report or audit view covers: filters on the plan and state, and Ansible host
patterns matched against the hosts recorded in the database.

Patterns are resolved by Ansible's own InventoryManager, fed with each host's recorded groups, so
`-l 'tier0:&site_north:!dc02'` means exactly what it means to `ansible-playbook`, even when the
inventory file is not at hand (a status run from another machine).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:  # `status` builds a HostFilter before it knows whether it needs SQLAlchemy
    from sqlmodel import Session

# SQLite accepts 32,766 bound parameters per statement; stay well below.
CHUNK = 10_000


@dataclass(frozen=True)
class HostFilter:
    """`--wave`, `--tier`, `--state` (a state or a bucket such as `in_progress`) and `-l PATTERN`."""

    wave: int | None = None
    tier: int | None = None
    state: str | None = None
    pattern: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"wave": self.wave, "tier": self.tier, "state": self.state, "limit": self.pattern}


def match_pattern(session: Session, pattern: str) -> list[str]:
    """Names of the recorded hosts an Ansible pattern selects; refuses a pattern that selects none."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from sqlmodel import select

    from orchestrator.store.models import Host

    manager = InventoryManager(loader=DataLoader(), sources=[], parse=False)
    known_groups: set[str] = set()
    for name, groups in session.exec(select(Host.name, Host.groups)):
        manager.add_host(name)
        for group in groups or ():
            if group in ("all", "ungrouped"):
                continue
            if group not in known_groups:
                manager.add_group(group)
                known_groups.add(group)
            manager.add_host(name, group=group)
    names = _quietly(manager, pattern)
    if not names:
        raise OrchestratorError(f"-l {pattern!r} matches no host recorded in the database")
    return names


def _quietly(manager: Any, pattern: str) -> list[str]:
    """Ansible warns on stderr for each part of a pattern that matches nothing; we say it once, as
    an error, and only when the whole pattern matches nothing."""
    from ansible.inventory import manager as manager_module

    display = manager_module.display
    original = display.warning

    def warning(msg: str, *args: Any, **kwargs: Any) -> None:
        if not msg.startswith("Could not match supplied host pattern"):
            original(msg, *args, **kwargs)

    display.warning = warning  # type: ignore[method-assign]
    try:
        return [h.name for h in manager.get_hosts(pattern=pattern)]
    finally:
        display.warning = original  # type: ignore[method-assign]


def chunks(names: Sequence[str] | None) -> Iterator[Sequence[str] | None]:
    """Name lists split to fit in one statement; None (no pattern) is one pass over everything."""
    if names is None:
        yield None
        return
    for start in range(0, len(names), CHUNK):
        yield names[start : start + CHUNK]
