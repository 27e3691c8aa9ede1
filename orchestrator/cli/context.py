"""What every command receives: where the state lives, who is acting, and how loud to be."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.store import Store


@dataclass
class AppContext:
    db: str
    operator: str
    debug: bool = False
    argv: list[str] = field(default_factory=list)
    audit_key: str | None = None
    _store: Store | None = None
    _head_at_open: int | None = None

    def store(self) -> Store:
        """Open (and create or migrate) the database on first use only: read-only commands that
        fail validation never touch it."""
        if self._store is None:
            from orchestrator.store import Store, audit

            self._store = Store.open(self.db, self.audit_key)
            with self._store.read() as session:
                self._head_at_open = audit.head(session)["last_id"]
        return self._store

    def audit_head_line(self) -> str | None:
        """The audit head, when this command appended to the log (None for read-only commands)."""
        if self._store is None:
            return None
        from orchestrator.store import audit

        with self._store.read() as session:
            head = audit.head(session)
        return audit.head_line(head) if head["last_id"] != self._head_at_open else None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
