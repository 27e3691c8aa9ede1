"""Wave claims: an `orchestrator run` owns the waves it runs, so two runs (two operators, two
controllers on one PostgreSQL database) can work on different waves at once but never on the same one.

A claim must vanish with the process that holds it, or a crashed run would lock its waves forever:
on PostgreSQL it is a session-level advisory lock on a connection of its own (the server releases it
when the connection closes or the process dies); on SQLite it is an flock on a file beside the
database (the kernel releases it when the process dies). Because a held claim means a live run, a
"running" stage run in a wave this run has claimed can only be left by a dead one.

A PostgreSQL claim lives as long as its connection: if the connection drops mid-run (a network blip,
a restarted server), the server frees the claim while the run goes on. So the engine asks `verify()`
before every stage: a lost claim is taken again if nobody took it meanwhile, and otherwise the run
stops before its next stage rather than share a wave with another run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from orchestrator.errors import RefusedError, StoreError
from orchestrator.store import Store

WAVE_LOCKS = 0x0A0D18  # first key of every wave claim; the wave number is the second


def _refuse(held: list[int], where: str) -> RefusedError:
    waves = ", ".join(map(str, held))
    return RefusedError(
        f"wave{'s' if len(held) > 1 else ''} {waves} {'are' if len(held) > 1 else 'is'} being run by another "
        f"'orchestrator run' ({where}): wait for it to end, or run another wave"
    )


class Claim:
    """What the engine holds while it runs; `verify()` before each stage (see the module docstring)."""

    def verify(self) -> None:
        """Kernel-held claims (flock) cannot be lost while the process lives."""


class _AdvisoryClaim(Claim):
    def __init__(self, engine: Any, conn: Any, waves: list[int]) -> None:
        self.engine, self.conn, self.waves = engine, conn, waves

    def backend_pid(self) -> int:
        return int(self.conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

    def verify(self) -> None:
        try:
            held = self.conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                    "AND classid = :space AND objid = ANY(:waves) AND objsubid = 2 AND granted"
                ),
                {"space": WAVE_LOCKS, "waves": self.waves},
            ).scalar_one()
            if held == len(self.waves):
                return
        except OperationalError:
            pass  # the connection is gone, and its locks with it
        with contextlib.suppress(Exception):
            self.conn.close()
        try:
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except OperationalError as exc:
            raise StoreError(
                f"lost the claim on wave(s) {self.waves} and cannot reconnect: {exc.orig}"
            ) from exc
        held_elsewhere = _try_locks(self.conn, self.waves)
        if held_elsewhere:
            self.conn.close()
            raise RefusedError(
                f"the claim on wave(s) {', '.join(map(str, held_elsewhere))} was lost (the database connection "
                "dropped) and another 'orchestrator run' holds it now: stopped before the next stage; "
                "the hosts are where the database says, resumable"
            )


def _try_locks(conn: Any, waves: list[int]) -> list[int]:
    """Take each wave's lock; returns the waves another session holds."""
    lock = text("SELECT pg_try_advisory_lock(:space, :wave)")
    return [w for w in waves if not conn.execute(lock, {"space": WAVE_LOCKS, "wave": w}).scalar_one()]


@contextlib.contextmanager
def claim_waves(store: Store, waves: list[int], runs_dir: Path) -> Iterator[Claim]:
    """Hold every wave in `waves` for the duration, or refuse (naming the held ones) holding none.

    Databases other than SQLite and PostgreSQL get lock files in `runs_dir`: claims then only hold
    between runs sharing that directory (one controller).
    """
    url = make_url(store.url)
    if url.get_backend_name() == "postgresql":
        with _advisory(store.url, waves) as claim:
            yield claim
        return
    if url.get_backend_name() == "sqlite" and url.database:
        db = Path(url.database)
        paths = [db.with_name(f"{db.name}.wave-{wave}.lock") for wave in waves]
    else:
        runs_dir.mkdir(parents=True, exist_ok=True)
        paths = [runs_dir / f".wave-{wave}.lock" for wave in waves]
    with _flocks(waves, paths):
        yield Claim()


@contextlib.contextmanager
def _flocks(waves: list[int], paths: list[Path]) -> Iterator[None]:
    fds: list[int] = []
    held: list[tuple[int, Path]] = []
    try:
        for wave, path in zip(waves, paths, strict=True):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append((wave, path))
        if held:
            raise _refuse([wave for wave, _ in held], f"lock {held[0][1]}")
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing the descriptor releases its lock


@contextlib.contextmanager
def _advisory(url: str, waves: list[int]) -> Iterator[Claim]:
    # Its own connection, outside the store's pool: closing it (NullPool) ends the session and its locks.
    engine = create_engine(url, poolclass=NullPool)
    try:
        try:
            conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except OperationalError as exc:
            raise StoreError(f"cannot claim waves on the database: {exc.orig}") from exc
        claim = _AdvisoryClaim(engine, conn, waves)
        try:
            held = _try_locks(conn, waves)
            if held:
                raise _refuse(held, f"PostgreSQL advisory locks ({WAVE_LOCKS}, wave)")
            yield claim
        finally:
            with contextlib.suppress(Exception):
                claim.conn.close()
    finally:
        engine.dispose()
