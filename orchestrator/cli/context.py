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

    def store(self) -> Store:
        """Open (and create or migrate) the database on first use only: read-only commands that
        fail validation never touch it."""
        if self._store is None:
            from orchestrator.store import Store

            self._store = Store.open(self.db, self.audit_key)
        return self._store

    def audit_head_line(self) -> str | None:
        """The audit head, when this command appended to the log (None for read-only commands)."""
        if self._store is None or not self._store.appended:
            return None  # read-only here, whatever other processes wrote meanwhile
        from orchestrator.store import audit

        with self._store.read() as session:
            return audit.head_line(audit.head(session))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
