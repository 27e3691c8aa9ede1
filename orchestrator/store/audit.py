"""The append-only audit log, chained by hash so an edited, inserted or deleted row is detectable.

Each entry's hash covers its content and the previous entry's hash. Rows are written inside the same
transaction as the change they describe, so there is never a change without its audit row.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session, col, select

from orchestrator.store.models import AuditEntry, utcnow

SECRET_NAME = re.compile(r"pass(word)?|secret|token|private|credential|vault", re.IGNORECASE)
REDACTED = "***"


def redact(value: Any, name: str = "") -> Any:
    """Replace the value of anything whose name says it is a secret, at any depth."""
    if name and SECRET_NAME.search(name) and value not in (None, False, True, "", [], {}):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, name) for v in value]
    return value


AUDIT_LOCK = 0x0A0D17  # any constant shared by every writer of the chain


def serialize_writers(session: Session) -> None:
    """Make concurrent appenders take turns, so the chain never forks.

    SQLite write transactions already begin IMMEDIATE (one writer at a time); PostgreSQL needs a
    transaction-scoped advisory lock, released at commit or rollback.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})"))


def _digest(
    prev_hash: str, ts: datetime, operator: str, command: str, args: Any, details: Any, host: str | None
) -> str:
    payload = json.dumps(
        {
            "prev": prev_hash,
            "ts": ts.isoformat(timespec="microseconds"),
            "operator": operator,
            "command": command,
            "args": args,
            "details": details,
            "host": host,
        },
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def record(
    session: Session,
    operator: str,
    command: str,
    args: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    host: str | None = None,
) -> AuditEntry:
    """Append one entry in the caller's transaction (which must be a write transaction)."""
    serialize_writers(session)
    last = session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(1)).first()
    prev_hash = last.hash if last else ""
    clean_args = json.loads(json.dumps(redact(args or {}), default=str))
    clean_details = json.loads(json.dumps(redact(details or {}), default=str))
    ts = utcnow()
    entry = AuditEntry(
        ts=ts,
        operator=operator,
        command=command,
        args=clean_args,
        details=clean_details,
        host_name=host,
        prev_hash=prev_hash,
        hash=_digest(prev_hash, ts, operator, command, clean_args, clean_details, host),
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass
class ChainProblem:
    entry_id: int
    problem: str


def verify(session: Session) -> ChainProblem | None:
    """Recompute the chain; return the first row that was altered, inserted or follows a deletion."""
    prev_hash = ""
    prev_id = 0
    for entry in session.exec(select(AuditEntry).order_by(col(AuditEntry.id))):
        assert entry.id is not None
        if entry.prev_hash != prev_hash:
            what = (
                "a row before it was deleted or altered"
                if entry.id != prev_id + 1
                else "inserted or re-chained"
            )
            return ChainProblem(entry.id, f"previous-hash link broken ({what})")
        expected = _digest(
            entry.prev_hash,
            entry.ts,
            entry.operator,
            entry.command,
            entry.args,
            entry.details,
            entry.host_name,
        )
        if entry.hash != expected:
            return ChainProblem(entry.id, "content altered (hash mismatch)")
        prev_hash = entry.hash
        prev_id = entry.id
    return None
