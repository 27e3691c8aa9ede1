"""The state store: one database (SQLite by default, any SQLAlchemy URL), opened and migrated on
first use.

Two engines share one database: writes begin `IMMEDIATE` on SQLite so a read-then-write (the audit
chain, state transitions) cannot interleave with another process, while reads stay deferred so a
`status` in another terminal never waits for a running wave (WAL). On PostgreSQL, where writers do
run side by side, host rows are locked by the transactions that change them and carry a version: a
write from a stale read fails as a StoreError naming the host, never as a lost update.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.pool import QueuePool
from sqlmodel import Session, col, select

from orchestrator.errors import StoreError
from orchestrator.store import audit as audit_lib
from orchestrator.store import migrations
from orchestrator.store.audit_key import AuditKey
from orchestrator.store.models import Host

__all__ = ["Store", "db_url"]


def db_url(db: str) -> str:
    """A path becomes a SQLite URL; anything with a scheme is taken as an SQLAlchemy URL."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().absolute()}"


def _sqlite_engine(url: str, begin: str) -> Engine:
    # Connections are kept between transactions: opening one costs its pragmas, and closing the last
    # one checkpoints the WAL, each time (a stage makes several transactions). Five stay open; past
    # that each thread opens its own, as many as it takes, so busy triage threads never queue here.
    engine = create_engine(
        url, poolclass=QueuePool, pool_size=5, max_overflow=-1, connect_args={"timeout": 30}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # pragma: no branch - tiny hook
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql(begin)

    return engine


class Store:
    def __init__(self, url: str, read_engine: Engine, write_engine: Engine, audit_key: AuditKey) -> None:
        self.url = url
        self._read = read_engine
        self._write = write_engine
        self.audit_key = audit_key
        self.appended = False  # an audit entry was committed through this store (the head is printed)

    @classmethod
    def open(cls, db: str, audit_key: str | None = None) -> Store:
        """`audit_key`: the key file's path (default: see `orchestrator.store.audit_key`)."""
        url = db_url(db)
        key = AuditKey.resolve(url, audit_key)
        if url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if not path.parent.is_dir():
                raise StoreError(f"{path}: directory {path.parent} does not exist")
            if path.exists() and not os.access(path, os.R_OK | os.W_OK):
                raise StoreError(f"{path}: not readable and writable by this user")
            private_file(path)
            read = _sqlite_engine(url, "BEGIN")
            write = _sqlite_engine(url, "BEGIN IMMEDIATE")
        else:
            try:
                read = write = create_engine(url, pool_pre_ping=True)
            except (SQLAlchemyError, ImportError) as exc:
                raise StoreError(f"cannot use database URL {_safe_url(url)}: {exc}") from exc
        store = cls(url, read, write, key)
        try:
            migrations.upgrade(store._write_connection)
        except OperationalError as exc:
            raise StoreError(f"cannot open database {_safe_url(url)}: {exc.orig}") from exc
        except StoreError as exc:
            raise StoreError(f"{_safe_url(url)}: {exc}") from exc
        return store

    @contextlib.contextmanager
    def _write_connection(self) -> Iterator:
        with self._write.begin() as conn:
            if conn.dialect.name == "postgresql":  # two first uses at once must not both create tables
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(20261128)")
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes are committed together or not at all."""
        with Session(self._write, expire_on_commit=False) as session:
            session.info[AUDIT_KEY] = self.audit_key
            event.listen(session, "before_flush", _note_read_versions)
            try:
                yield session
                session.commit()
                if session.info.get(audit_lib.APPENDED):
                    self.appended = True
            except StaleDataError as exc:
                session.rollback()
                raise StoreError(self._stale(session.info.get(READ_VERSIONS, {}))) from exc
            except BaseException:
                session.rollback()
                raise

    def _stale(self, read_versions: dict[str, int]) -> str:
        """Which hosts another process changed since they were read (all written ones if none differ)."""
        with self.read() as session:
            query = select(Host.name, Host.version).where(col(Host.name).in_(list(read_versions)))
            now = dict(session.exec(query).all())
        names = sorted(n for n, v in read_versions.items() if now.get(n) != v) or sorted(read_versions)
        if not names:
            return "a row was changed by another process meanwhile: nothing was written; rerun the command"
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (
            f"host{'s' if len(names) > 1 else ''} {shown} {'were' if len(names) > 1 else 'was'} changed by "
            "another process since this one read it: nothing was written; rerun the command"
        )

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self._read) as session:
            session.info[AUDIT_KEY] = self.audit_key
            yield session

    def close(self) -> None:
        self._read.dispose()
        if self._write is not self._read:
            self._write.dispose()


READ_VERSIONS = "read_versions"
AUDIT_KEY = "audit_key"


def private_file(path: Path) -> None:
    """The database and its -wal/-shm readable by this user only: they hold evidence, host names and
    the audit log. Created empty 0600 before SQLite opens it: SQLite gives -wal and -shm the mode of
    the database file; an existing file (and its -wal/-shm) is narrowed to 0600 if it was wider."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = candidate.stat().st_mode & 0o777
            if mode & 0o077:
                candidate.chmod(mode & 0o700)
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            raise StoreError(f"{candidate}: readable by others and not ours to narrow: {exc}") from exc


def _note_read_versions(session: Session, _context: object, _instances: object) -> None:
    """Before each flush, the version every changed host was read with: the flush requires it, and
    if another process moved it on, these are the hosts to name."""
    noted = session.info.setdefault(READ_VERSIONS, {})
    for obj in session.dirty:
        if isinstance(obj, Host):
            history = inspect(obj).attrs.version.history
            noted[obj.name] = (history.deleted or history.unchanged or [obj.version])[0]


def _safe_url(url: str) -> str:
    """Never echo a password from a database URL."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database URL>"
