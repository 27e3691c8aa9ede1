"""The append-only audit log, chained by a keyed hash so an edited, inserted or deleted row is
detectable, even by someone who can write the database.

Each entry's hash is an HMAC-SHA256, with the audit key (a file outside the database, see
`audit_key`), of its content and the previous entry's hash; the head row records the newest entry
and the count under a MAC of its own, so cutting the newest entries off is detectable too. Rows are
written inside the same transaction as the change they describe, so there is never a change without
its audit row.

Without the key, a rewritten chain cannot be made to verify: recomputing it with the plain SHA-256
formula (the scheme of entries written before the chain was keyed) fails. With the key, everything
in the database can be rewritten consistently; only a head written down elsewhere (printed after every
state-changing command, checked by `audit verify --expect HEAD`) shows that the log since then changed.

Entries from before keying (key_id NULL) stay as they were: the first keyed entry links to the last
of them, which pins them; a chain with no keyed entry at all proves nothing and `verify` says so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, or_, text
from sqlmodel import Session, col, select

from orchestrator.errors import StoreError
from orchestrator.store.audit_key import SCHEME, AuditKey
from orchestrator.store.models import AuditEntry, AuditHead, utcnow

APPENDED = "audit_appended"  # set in a write session's info by `record`: read by Store.write

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
    key: AuditKey | None,
    prev_hash: str,
    ts: datetime,
    operator: str,
    command: str,
    args: Any,
    details: Any,
    host: str | None,
) -> str:
    """HMAC-SHA256 with the audit key; plain SHA-256 when `key` is None (entries from before keying)."""
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
    return key.mac(payload.encode()) if key is not None else hashlib.sha256(payload.encode()).hexdigest()


def _head_message(last_id: int, last_hash: str, entries: int) -> bytes:
    return f"orchestrator audit head\0{last_id}\0{last_hash}\0{entries}".encode()


def session_key(session: Session) -> AuditKey:
    """The audit key of the store that opened `session` (a Store puts it there)."""
    key = session.info.get("audit_key")
    if not isinstance(key, AuditKey):
        raise StoreError("this session has no audit key: open the database through Store.open")
    return key


def writing_key(session: Session, last: AuditEntry | None = None) -> AuditKey:
    """The key for the next entry (or approval): the one the chain is keyed with, created only for a
    chain that has no keyed entry yet (never a second key beside the first)."""
    key = session_key(session)
    if last is None:
        last = session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(1)).first()
    if last is not None and last.key_id is not None:
        if not key.exists():
            raise StoreError(
                f"the audit log is keyed with key {last.key_id} but there is no key file at {key.path}: "
                "give its path with --audit-key (or ORCHESTRATOR_AUDIT_KEY); nothing was written"
            )
        if key.id != last.key_id:
            raise StoreError(
                f"the audit key at {key.path} is key {key.id}, but the log is keyed with {last.key_id}: "
                "give the right one with --audit-key; nothing was written"
            )
    key.get(create=True)
    return key


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
    session.info[APPENDED] = True  # the command prints the head once it is committed (see Store.write)
    last = session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(1)).first()
    key = writing_key(session, last)
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
        hash=_digest(key, prev_hash, ts, operator, command, clean_args, clean_details, host),
        key_id=key.id,
    )
    session.add(entry)
    session.flush()
    assert entry.id is not None
    head = session.get(AuditHead, 1) or AuditHead(id=1)
    head.last_id, head.last_hash, head.entries = entry.id, entry.hash, head.entries + 1
    head.mac = key.mac(_head_message(head.last_id, head.last_hash, head.entries))
    session.add(head)
    session.flush()
    return entry


@dataclass
class ChainProblem:
    """The first place the chain breaks: `entry_id` names the altered, inserted or deleted row."""

    entry_id: int
    kind: str  # altered | deleted | inserted | unkeyed | wrong-key | expected
    problem: str


def verify(session: Session, expect: str | None = None) -> ChainProblem | None:
    """Recompute the chain; return the first row that was altered, inserted or deleted.

    `expect`: a head hash written down elsewhere earlier (or a prefix of at least 16 hex digits): the
    chain must still hold that entry, so a log cut back or rewritten since then fails even when
    whoever did it held the key."""
    key = session_key(session)
    head = session.get(AuditHead, 1)
    prev_hash, prev_id, count, keyed = "", 0, 0, 0
    found_expected = expect is None
    query = select(AuditEntry).order_by(col(AuditEntry.id)).execution_options(yield_per=1000)
    for entry in session.exec(query):
        assert entry.id is not None
        count += 1
        if head is None or entry.id > head.last_id:
            after = f"the newest recorded entry, {head.last_id}" if head else "an empty log"
            return ChainProblem(entry.id, "inserted", f"entry {entry.id} was inserted after {after}")
        if entry.key_id is None:
            if keyed:
                return ChainProblem(
                    entry.id,
                    "altered",
                    f"entry {entry.id} was altered or forged: it has a plain SHA-256 hash after keyed "
                    "entries (rewritten by someone without the audit key)",
                )
            entry_key = None
        else:
            if key.get() is None:
                raise StoreError(
                    f"cannot verify: the log is keyed with key {entry.key_id} and there is no audit key "
                    f"at {key.path} (give it with --audit-key or ORCHESTRATOR_AUDIT_KEY)"
                )
            if entry.key_id != key.id:
                return ChainProblem(
                    entry.id,
                    "wrong-key",
                    f"entry {entry.id} names key {entry.key_id}, the audit key at {key.path} is {key.id}: "
                    "the wrong key file, or the entry was forged",
                )
            entry_key = key
            keyed += 1
        expected = _digest(
            entry_key,
            entry.prev_hash,
            entry.ts,
            entry.operator,
            entry.command,
            entry.args,
            entry.details,
            entry.host_name,
        )
        if not hmac.compare_digest(entry.hash, expected):
            return ChainProblem(
                entry.id,
                "altered",
                f"entry {entry.id} was altered or forged: its "
                + ("HMAC" if entry_key else "hash")
                + " does not match its content",
            )
        # Consistent in itself but not linked to the entry before: rows went missing, or it was put here.
        if entry.prev_hash != prev_hash:
            return _broken_link(entry.id, prev_id)
        prev_hash, prev_id = entry.hash, entry.id
        if not found_expected and expect is not None and entry.hash.startswith(expect.lower()):
            found_expected = True
    if head is not None and (prev_id, prev_hash) != (head.last_id, head.last_hash):
        return ChainProblem(
            head.last_id,
            "deleted",
            f"entry {head.last_id}, the newest recorded, was deleted"
            + (
                f" (with any after entry {prev_id}, where the log now ends)"
                if prev_id
                else " (the log is empty)"
            ),
        )
    if head is not None and count != head.entries:
        return ChainProblem(
            prev_id, "deleted", f"the log holds {count} entries but {head.entries} were recorded"
        )
    if (
        head is not None
        and keyed
        and not hmac.compare_digest(
            head.mac, key.mac(_head_message(head.last_id, head.last_hash, head.entries))
        )
    ):
        return ChainProblem(
            head.last_id, "altered", "the head record (newest entry and count) was altered: its MAC fails"
        )
    if count and not keyed:
        return ChainProblem(
            prev_id,
            "unkeyed",
            f"none of the {count} entries is keyed: they were written before the audit log was keyed, or "
            "rewritten by someone without the key, and prove nothing against anyone who can write the "
            "database (the next state-changing command keys the log from there on)",
        )
    if not found_expected:
        return ChainProblem(
            prev_id,
            "expected",
            f"no entry has the expected head {expect}: the log was cut back or rewritten since that "
            "head was written down",
        )
    return None


def _broken_link(entry_id: int, prev_id: int) -> ChainProblem:
    """Entry `entry_id` does not link to the entry before it: rows went missing, or it replaced one."""
    if entry_id > prev_id + 1:
        missing = (
            f"entry {prev_id + 1} was"
            if entry_id == prev_id + 2
            else f"entries {prev_id + 1}-{entry_id - 1} were"
        )
        return ChainProblem(
            prev_id + 1,
            "deleted",
            f"{missing} deleted: entry {entry_id} no longer links to "
            + (f"entry {prev_id}" if prev_id else "the start of the log"),
        )
    return ChainProblem(
        entry_id,
        "inserted",
        f"entry {entry_id} was inserted or replaced: it does not link to "
        + (f"entry {prev_id}" if prev_id else "the start of the log"),
    )


def head(session: Session) -> dict[str, Any]:
    """Where the log ends: write the hash down elsewhere to pin the log as it is now."""
    row = session.get(AuditHead, 1)
    last = (
        session.exec(select(AuditEntry.key_id).where(AuditEntry.id == row.last_id)).first()
        if row and row.last_id
        else None
    )
    return {
        "entries": row.entries if row else 0,
        "last_id": row.last_id if row else None,
        "last_hash": row.last_hash if row else None,
        "scheme": SCHEME if last else "sha256" if row and row.last_id else None,
        "key_id": last,
        "mac": row.mac or None if row else None,
    }


def head_line(data: dict[str, Any]) -> str:
    """The one line every state-changing command and every report ends with: note it elsewhere, and
    `audit verify --expect HASH` proves later that the log still holds everything up to it."""
    if not data.get("last_id"):
        return "audit head: the log is empty"
    keyed = f"{data['scheme']}, key {data['key_id']}" if data.get("key_id") else "plain sha256, NOT keyed"
    return f"audit head: entry {data['last_id']} {data['last_hash']} ({keyed})"


def entries(
    session: Session, hosts: Sequence[str] | None = None, limit: int | None = None
) -> list[AuditEntry]:
    """The newest `limit` entries (all when None), oldest first.

    With `hosts`, only those about them: entries recorded for one of them, and entries for no single
    host that name one in their details or arguments (a stage over a wave lists its hosts there).
    """
    newest_first = select(AuditEntry).order_by(col(AuditEntry.id).desc())
    if hosts is None:
        found = list(session.exec(newest_first.limit(limit) if limit is not None else newest_first))
        return found[::-1]
    wanted = set(hosts)
    found = []
    step = 10_000  # bound parameters per statement
    for start in range(0, len(hosts), step):
        query = newest_first.where(col(AuditEntry.host_name).in_(hosts[start : start + step]))
        found.extend(session.exec(query.limit(limit) if limit is not None else query))
    shared = newest_first.where(col(AuditEntry.host_name).is_(None))
    if len(wanted) <= 20:  # let the database skip the entries that cannot name them
        shared = shared.where(
            or_(
                *(
                    cast(column, String).contains(json.dumps(name))
                    for name in wanted
                    for column in (AuditEntry.details, AuditEntry.args)
                )
            )
        )
    matched = 0
    for entry in session.exec(shared.execution_options(yield_per=500)):
        if _names_any(entry.details, wanted) or _names_any(entry.args, wanted):
            found.append(entry)
            matched += 1
            if limit is not None and matched >= limit:
                break
    found.sort(key=lambda e: e.id or 0)
    return found if limit is None else found[-limit:]


def _names_any(value: Any, names: set[str]) -> bool:
    """Whether one of `names` appears as a string or a key anywhere in a JSON value."""
    if isinstance(value, str):
        return value in names
    if isinstance(value, dict):
        return any(k in names or _names_any(v, names) for k, v in value.items())
    if isinstance(value, list):
        return any(_names_any(v, names) for v in value)
    return False
