"""The secret that keys the audit chain and plan approvals, kept outside the database.

Whoever can write the database can recompute a plain SHA-256 chain; an HMAC needs this key as well.
The key is 32 random bytes in a file of its own (hex, 0600), created on the first write that needs it.
Its location, first match wins: `--audit-key PATH`, env ORCHESTRATOR_AUDIT_KEY, then beside a SQLite
database (`<db>.audit-key`), or for a database URL (PostgreSQL) `$XDG_CONFIG_HOME/orchestrator/
audit-key` (~/.config/...): every controller writing one database must hold the same key file.

Each keyed row names the key by its id (a hash of the key, never the key), so a missing or different
key file is reported as such instead of being silently replaced by a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from orchestrator.errors import StoreError

ENV = "ORCHESTRATOR_AUDIT_KEY"
SCHEME = "hmac-sha256"


def default_path(db: str) -> Path:
    """Beside a SQLite file; under the user's config directory for a database URL."""
    if "://" not in db or db.startswith("sqlite:///"):
        path = Path(db.removeprefix("sqlite:///")).expanduser().absolute()
        return path.with_name(path.name + ".audit-key")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "orchestrator" / "audit-key"


def key_id(key: bytes) -> str:
    """A name for the key that reveals nothing of it (a domain-separated hash, 16 hex digits)."""
    return hashlib.sha256(b"orchestrator audit key id\0" + key).hexdigest()[:16]


class AuditKey:
    """The key file at `path`, read once; `get(create=True)` makes it (0600) when it does not exist."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: bytes | None = None

    @classmethod
    def resolve(cls, db: str, explicit: str | None = None) -> AuditKey:
        chosen = explicit or os.environ.get(ENV) or None
        return cls(Path(chosen).expanduser().absolute() if chosen else default_path(db))

    def exists(self) -> bool:
        return self._key is not None or self.path.is_file()

    def get(self, create: bool = False) -> bytes | None:
        if self._key is None:
            if self.path.is_file():
                self._key = self._read()
            elif create:
                self._key = self._create()
        return self._key

    @property
    def id(self) -> str | None:
        key = self.get()
        return key_id(key) if key else None

    def mac(self, message: bytes) -> str:
        key = self.get()
        if key is None:
            raise StoreError(f"no audit key at {self.path}")
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def _read(self) -> bytes:
        try:
            mode = self.path.stat().st_mode & 0o777
            text = self.path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise StoreError(f"audit key {self.path}: cannot read it: {exc}") from exc
        if mode & 0o077:
            raise StoreError(
                f"audit key {self.path} is readable by others (mode {mode:o}): chmod 600 it, and treat "
                "it as disclosed if anyone else may have read it"
            )
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) < 32:
            raise StoreError(f"audit key {self.path}: not a key (64 hex digits expected)")
        return key

    def _create(self) -> bytes:
        """Written to a private temporary file, then linked into place: a second process creating it
        at the same moment finds either no file or a whole one, and then uses that one."""
        key = secrets.token_bytes(32)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                os.fchmod(handle.fileno(), 0o600)
                handle.write(key.hex() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, self.path)
            except FileExistsError:
                return self._read()
            finally:
                temp.unlink()
        except OSError as exc:
            raise StoreError(f"audit key {self.path}: cannot create it: {exc}") from exc
        return key
