"""Ctrl-C on a fleet triage (issue 18): a real `orchestrator triage` process on a generated fleet of
loopback hosts, SIGINT at a chosen moment, then what the operator and the database see.

The fleet: a host whose port is a listener of this test, checked first (its connection says the
triage has started), 2,000 hosts on closed loopback ports (each refused at once, so results pour in
and the recorder writes a batch every few hundredths of a second), then 300 hosts that accept the
connection and never answer (each takes the whole per-host timeout). Checking every host takes at
least 300 / FORKS x TIMEOUT = 60 s; a triage that stops ends within the in-flight hosts' timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REFUSED = 2000  # 127.77.x.y, port 1: nothing listens there (a root-only port)
SILENT = 300  # 127.78.0.1, one listener each that never accepts
FORKS = 10
TIMEOUT = 2.0
BOUND_S = 5 * TIMEOUT  # stops: the in-flight hosts' timeout and the exit; running on takes >= 60 s


@contextlib.contextmanager
def _fleet(tmp_path: Path) -> Iterator[tuple[Path, socket.socket]]:
    """The inventory, with the first host's listener and the silent hosts' listeners open."""
    first = socket.create_server(("127.78.0.2", 0))
    silent = [socket.create_server(("127.78.0.1", 0), backlog=1) for _ in range(SILENT)]
    try:
        lines = ["all:", "  children:", "    linux:", "      hosts:"]
        lines.append(f"        a-first: {{ansible_host: 127.78.0.2, ansible_port: {first.getsockname()[1]}}}")
        lines += [
            f"        b-refused-{i:04d}: {{ansible_host: 127.77.{i // 250}.{i % 250 + 1}, ansible_port: 1}}"
            for i in range(REFUSED)
        ]
        lines += [
            f"        c-silent-{i:03d}: {{ansible_host: 127.78.0.1, ansible_port: {s.getsockname()[1]}}}"
            for i, s in enumerate(silent)
        ]
        inventory = tmp_path / "fleet"
        inventory.mkdir()
        (inventory / "hosts.yml").write_text("\n".join(lines) + "\n")
        (inventory / "group_vars").mkdir()
        (inventory / "group_vars" / "all.yml").write_text("ansible_user: recovery\n")
        yield inventory, first
    finally:
        first.close()
        for s in silent:
            s.close()


def _start(tmp_path: Path, inventory: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "orchestrator", "--db", str(tmp_path / "recovery.db"), "triage"]
    argv += ["-i", str(inventory), "--forks", str(FORKS), "--timeout", str(TIMEOUT)]
    env = {**os.environ, "ORCHESTRATOR_OPERATOR": "tester", "COLUMNS": "120"}
    errors = (tmp_path / "stderr").open("wb")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors, env=env)


def _first_connection(proc: subprocess.Popen[bytes], listener: socket.socket, tmp_path: Path) -> None:
    listener.settimeout(0.05)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            assert proc.poll() is None, (tmp_path / "stderr").read_text()[-2000:]
            continue
        conn.close()
        return
    pytest.fail("the triage made no connection within 120 s")


def _while_writing(proc: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """Returns while the triage holds the database's write lock (a batch of results being written):
    the moment where an interrupt used to leave the lock held."""
    con = sqlite3.connect(tmp_path / "recovery.db", timeout=0, isolation_level=None)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "stderr").read_text()[-2000:]
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc):
                    return
                raise
            con.execute("ROLLBACK")
            time.sleep(0.0005)
        pytest.fail("the triage wrote no result within 30 s")
    finally:
        con.close()


@pytest.mark.parametrize("moment", ["first connection", "while writing results"])
def test_ctrl_c_stops_a_fleet_triage_promptly_and_keeps_what_is_done(tmp_path: Path, moment: str) -> None:
    with _fleet(tmp_path) as (inventory, first):
        proc = _start(tmp_path, inventory)
        try:
            _first_connection(proc, first, tmp_path)
            if moment == "while writing results":
                _while_writing(proc, tmp_path)
            interrupted = time.monotonic()
            proc.send_signal(signal.SIGINT)
            rc = proc.wait(timeout=120)
            took = time.monotonic() - interrupted
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = (tmp_path / "stderr").read_text()
    assert rc == 130, stderr[-2000:]
    assert "error: interrupted" in stderr
    assert took < BOUND_S, f"{took:.1f} s from SIGINT to exit"

    con = sqlite3.connect(tmp_path / "recovery.db")
    ((finished, counts, host_count),) = con.execute("SELECT finished_at, counts, host_count FROM triage_run")
    assert finished is None  # reads as interrupted
    assert host_count == 1 + REFUSED + SILENT
    stored = dict(con.execute("SELECT host_name, verdict FROM triage_result"))
    # What was handed on is stored, once each, and the run's counts are exactly those rows.
    assert con.execute("SELECT COUNT(*) FROM triage_result").fetchone()[0] == len(stored)
    assert sum(json.loads(counts).values()) == len(stored)
    assert set(stored.values()) <= {"unreachable"}
    # Not every host: the silent ones start only after the refused ones, and none was reached.
    assert not [h for h in stored if h.startswith("c-silent-")]
    if moment == "while writing results":
        assert stored  # the batches written before the interrupt (and the one being written) are kept
    (details,) = con.execute("SELECT details FROM audit_log WHERE command = 'triage'").fetchone()
    assert json.loads(details)["interrupted"] is True
    assert json.loads(details)["hosts"] == len(stored)


def test_ctrl_c_inside_a_result_write_still_stores_the_run(tmp_path: Path) -> None:
    """SIGINT delivered while the recorder's INSERT of a batch is under way (its returned ids not yet
    read): before, KeyboardInterrupt surfaced there and left a half-closed SQLite connection holding
    the write lock, so storing the run waited 30 s, failed with 'database is locked' and lost every
    finished host. Now the batch completes, the run stops at the next result and is stored."""
    from sqlalchemy import event

    from orchestrator import inventory
    from orchestrator.store import Store
    from orchestrator.triage import packs, runner
    from orchestrator.triage.engine import Settings

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with _fleet(tmp_path) as (path, _):
        hosts = list(inventory.load([str(path)]).hosts.values())
        store = Store.open(str(tmp_path / "recovery.db"))
        sent: list[str] = []

        def interrupt_inside(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if statement.startswith("INSERT INTO triage_result") and not sent:
                sent.append(statement)
                os.kill(os.getpid(), signal.SIGINT)

        event.listen(store._write, "after_cursor_execute", interrupt_inside)
        started = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                runner.run(store, "tester", hosts, packs.load(), Settings(forks=FORKS, timeout=TIMEOUT))
        finally:
            store.close()
        took = time.monotonic() - started
    assert sent
    assert took < BOUND_S, f"{took:.1f} s"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back
    con = sqlite3.connect(tmp_path / "recovery.db")
    assert con.execute("SELECT finished_at FROM triage_run").fetchall() == [(None,)]
    stored = [h for (h,) in con.execute("SELECT host_name FROM triage_result")]
    assert len(stored) >= 200  # the batch being written when Ctrl-C came
    assert not [h for h in stored if h.startswith("c-silent-")]
    (details,) = con.execute("SELECT details FROM audit_log WHERE command = 'triage'").fetchone()
    assert json.loads(details) | {"interrupted": True, "hosts": len(stored)} == json.loads(details)


def test_ctrl_c_is_noted_only_in_place_of_pythons_own_handler_in_the_main_thread() -> None:
    """A caller that handles SIGINT itself (or ignores it) keeps its handler; so does a triage run
    from another thread, where signals never arrive anyway."""
    import threading

    from orchestrator.triage.interrupt import Interrupt

    with pytest.raises(KeyboardInterrupt), Interrupt() as interrupt:
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        interrupt.check()  # nothing yet
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs in this thread, between two bytecodes: noted, not raised
        assert interrupt.requested.is_set()
    # ... and raised when the context is left
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with Interrupt():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        seen: list[Any] = []
        worker = threading.Thread(target=lambda: seen.append(Interrupt().__enter__()._installed))
        worker.start()
        worker.join()
        assert seen == [False]
    finally:
        signal.signal(signal.SIGINT, previous)
