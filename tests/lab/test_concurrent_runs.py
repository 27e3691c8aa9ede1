"""Several writers on one database: `orchestrator run` processes on different waves at once (on a real
PostgreSQL server and on SQLite), `status --watch` reading beside them, a run refused on a wave another
one holds, claims that die with their process, and host rows that refuse a lost update."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import col, select

from orchestrator import inventory as inventory_lib
from orchestrator.errors import RefusedError, StoreError
from orchestrator.execution import engine, states
from orchestrator.execution.locks import WAVE_LOCKS, claim_waves
from orchestrator.store import Store, audit
from orchestrator.store import hosts as host_store
from orchestrator.store.models import AuditEntry, Host, StageEvent, StageRun
from tests.conftest import ROOT, Cli, needs_lab
from tests.lab.execution_support import TOY_PLAY, approved_plan, toy_inventory, toy_playbooks

ORCHESTRATOR = str(Path(sys.executable).parent / "orchestrator")
NET = "127.97.0.0/16"
HELD = "is being run by another 'orchestrator run'"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    return request.getfixturevalue("postgres_url")


def wait_for(condition: Callable[[], object], what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def stage_runs(store: Store, **where: object) -> list[StageRun]:
    with store.read() as s:
        query = select(StageRun).order_by(col(StageRun.id))
        for key, value in where.items():
            query = query.where(getattr(StageRun, key) == value)
        return list(s.exec(query))


def versions(store: Store) -> dict[str, int]:
    with store.read() as s:
        return {h.name: h.version for h in s.exec(select(Host))}


# --- lost updates, directly ------------------------------------------------------------------------


def test_a_write_from_a_stale_read_fails_clearly_and_writes_nothing(url: str) -> None:
    store = Store.open(url)
    with store.write() as s:
        s.add(Host(name="ehr-db01"))
        s.add(Host(name="pacs01"))
    with store.read() as s:  # two processes read the same rows...
        first = {h.name: h for h in s.exec(select(Host))}
    with store.read() as s:
        second = {h.name: h for h in s.exec(select(Host))}
    with store.read() as s:
        third = {h.name: h for h in s.exec(select(Host))}
    with store.write() as s:  # ...the first writes...
        states.begin(first["ehr-db01"], "isolate", states.REBUILD)
        s.add(first["ehr-db01"])
    with pytest.raises(StoreError) as caught, store.write() as s:  # ...the second's write is refused
        for name in ("ehr-db01", "pacs01"):
            states.begin(second[name], "validate", states.VERIFY)
            s.add(second[name])
    assert str(caught.value) == (
        "host ehr-db01 was changed by another process since this one read it: "
        "nothing was written; rerun the command"
    )
    with store.read() as s:
        rows = {h.name: (h.state, h.version) for h in s.exec(select(Host))}
    assert rows == {"ehr-db01": ("isolating", 1), "pacs01": ("new", 0)}  # pacs01's change went too
    # Merging a stale copy is refused the same way; a current one goes through (the version checked,
    # not bumped, when only the inventory snapshot changes).
    with pytest.raises(StoreError, match="changed by another process"), store.write() as s:
        s.merge(third["ehr-db01"])
    with store.write() as s:
        s.merge(first["pacs01"]).site = "north"
    assert versions(store) == {"ehr-db01": 1, "pacs01": 0}
    store.close()


def test_a_second_writer_waits_for_the_row_lock_then_sees_the_first_ones_change(url: str) -> None:
    """`locked` (every read-then-write of host state) makes the second writer read after the first
    commits: on PostgreSQL by the row lock, on SQLite by the write transaction itself."""
    store = Store.open(url)
    with store.write() as s:
        s.add(Host(name="dc01"))
    first_locked, seen = threading.Event(), []

    def second() -> None:
        first_locked.wait(10)
        other = Store.open(url)
        with other.write() as s:
            row = host_store.locked(s, ["dc01"])["dc01"]
            seen.append((row.state, row.version))
            states.finish(row, "validate")
        other.close()

    thread = threading.Thread(target=second)
    thread.start()
    with store.write() as s:
        row = host_store.locked(s, ["dc01"])["dc01"]
        first_locked.set()
        time.sleep(1.0)  # the second writer is blocked meanwhile
        states.begin(row, "validate", states.VERIFY)
    thread.join(20)
    assert seen == [("validating", 1)]
    with store.read() as s:
        row = s.exec(select(Host)).one()
    assert (row.state, row.version) == ("validated", 2)
    store.close()


# --- wave claims on toy runs (real ansible-playbook, local connection) -------------------------------

GATE = """    - name: Wait at the gate
      ansible.builtin.wait_for:
        path: "{{ toy_gate }}"
        timeout: 120
      when: toy_gate is defined
"""
RUN_WAVE = """
import json, sys
from pathlib import Path
from orchestrator.execution import engine
from orchestrator.store import Store
a = json.loads(sys.argv[1])
options = engine.RunOptions(
    inventory=[a["inventory"]], operator="tester", wave=a["wave"], runs_dir=Path(a["runs"]),
    playbooks=Path(a["playbooks"]), validator=lambda hosts: {h.name: (True, "clean") for h in hosts},
)
engine.run(Store.open(a["db"]), options)
"""


def _playbooks_under(runs: Path) -> list[int]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and str(runs) in cmdline and "ansible-playbook" in cmdline:
            out.append(int(proc.name))
    return out


def test_runs_claim_their_waves_a_held_one_is_refused_and_a_dead_runs_claim_is_freed(
    url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    inv = toy_inventory(tmp_path / "inv", {"a": {"toy_gate": str(gate)}, "b": {}})
    playbooks = toy_playbooks(tmp_path / "playbooks")
    (playbooks / "validate.yml").write_text(TOY_PLAY.format(stage="validate", extra=GATE))
    store = Store.open(url)
    approved_plan(store, inv, [("a", "verify", 1), ("b", "verify", 2)])
    args = {"inventory": str(inv), "playbooks": str(playbooks), "db": url}
    first = subprocess.Popen(
        [sys.executable, "-c", RUN_WAVE, json.dumps({**args, "wave": 1, "runs": str(tmp_path / "runs1")})],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: stage_runs(store, host_name="a", status="running") or first.poll() is not None,
                 "wave 1 to enter validate")  # fmt: skip
        assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""

        # The CLI refuses a run on the held wave, and --all, before writing anything.
        cli = Cli(url)  # type: ignore[arg-type]
        with store.read() as s:
            audited = len(s.exec(select(AuditEntry)).all())
        for wave_args in (["--wave", "1"], ["--all"]):
            result = cli("run", "-i", str(inv), *wave_args, "--yes", "--runs-dir", str(tmp_path / "refused"))
            assert result.exit_code == 2, result.output + result.stderr
            assert f"error: wave 1 {HELD}" in result.stderr and "wave 2" not in result.stderr
        assert not (tmp_path / "refused").exists()
        with store.read() as s:
            assert len(s.exec(select(AuditEntry)).all()) == audited

        # Wave 2 runs meanwhile, and leaves wave 1's running stage alone.
        options = engine.RunOptions(
            inventory=[str(inv)], operator="tester", wave=2, runs_dir=tmp_path / "runs2", playbooks=playbooks,
            validator=lambda hosts: {h.name: (True, "clean") for h in hosts},
        )  # fmt: skip
        report = engine.run(store, options)
        assert {h.name: h.outcome for h in report.hosts.values() if h.wave == 2} == {"b": "recovered"}
        [held] = stage_runs(store, host_name="a")
        assert (held.stage, held.status) == ("validate", "running")
        with store.read() as s:
            starts = s.exec(select(AuditEntry).where(AuditEntry.command == "run start")).all()
        assert [e.details["resumed_stage_runs"] for e in starts] == [0, 0]

        # kill -9 of the first run: its claim goes with it (kernel / server), so wave 1 can be resumed.
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        # Ansible's workers run in sessions of their own: the one at the gate ends its task when it opens.
        gate.touch()
        wait_for(lambda: not _playbooks_under(tmp_path / "runs1"), "the killed run's playbook to end", 30)
    options.wave, options.runs_dir = 1, tmp_path / "runs3"
    deadline = time.monotonic() + 10  # the server may take a moment to see the connection gone
    while True:
        try:
            report = engine.run(store, options)
            break
        except RefusedError as exc:
            assert HELD in str(exc) and time.monotonic() < deadline, exc
            time.sleep(0.2)
    assert {h.name: h.outcome for h in report.hosts.values()} == {"a": "recovered", "b": "recovered"}
    runs = [(r.stage, r.attempt, r.status) for r in stage_runs(store, host_name="a")]
    assert runs == [
        ("validate", 1, "interrupted"),
        ("validate", 2, "ok"),
        ("harden", 1, "ok"),
        ("reconnect", 1, "ok"),
    ]
    # One state change per begin and per finish: the killed run's begin of validate, then 3 stages.
    assert versions(store) == {"a": 1 + 2 * 3, "b": 2 * 3}
    with store.read() as s:
        assert audit.verify(s) is None
    store.close()


# --- two real runs on the lab, on PostgreSQL, watched ------------------------------------------------


class Watcher:
    """`orchestrator status --watch` on a pseudo-terminal (as an operator sees it), read as it draws."""

    def __init__(self, db: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
        self.proc = subprocess.Popen(
            [ORCHESTRATOR, "--db", db, "status", "--watch", "--interval", "0.5"],
            stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE, start_new_session=True,
            env={**os.environ, "ORCHESTRATOR_OPERATOR": "tester"},
        )  # fmt: skip
        os.close(slave)
        self.master = master
        self.out = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.out.extend(data)

    def refreshes(self) -> list[dict[str, int]]:
        """The counts of each drawing of 'Hosts by state' so far."""
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", bytes(self.out).decode(errors="replace"))
        found = []
        for block in text.split("Hosts by state")[1:]:
            rows = re.findall(
                r"│ (pending|in progress|recovered|failed|on hold|protected)\s*│\s*(\d+) │", block
            )
            found.append({name: int(n) for name, n in rows})
        return found

    def stop(self) -> tuple[int, str]:
        """Ctrl-C; returns its exit code and stderr."""
        os.kill(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(20)
        self.reader.join(10)
        os.close(self.master)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read().decode()


def _run(db: str, inventory: Path, wave: int, runs: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [ORCHESTRATOR, "--db", db, "run", "-i", str(inventory), "--wave", str(wave), "--yes",
         "--runs-dir", str(runs), "--json"],
        stdout=(out / f"wave{wave}.json").open("w"), stderr=(out / f"wave{wave}.err").open("w"),
        env={**os.environ, "ORCHESTRATOR_OPERATOR": "tester"}, start_new_session=True,
    )  # fmt: skip


@pytest.mark.lab
@needs_lab
def test_two_runs_on_different_waves_and_a_watcher_on_postgresql(
    postgres_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from orchestrator_lab import LabConfig, down, up

    lab = tmp_path_factory.mktemp("concurrent-lab") / "lab"
    up(LabConfig(dir=lab, hosts=6, seed=3, net=NET, infected=0.5))
    procs: list[subprocess.Popen] = []
    watcher: Watcher | None = None
    try:
        inventory = lab / "inventory"
        cli = Cli(postgres_url)  # type: ignore[arg-type]
        assert cli("triage", "-i", str(inventory), "--timeout", "5").exit_code in (0, 1)
        # Waves of one host: two waves whose hosts do not depend on each other (the plan order puts
        # a host after those it depends on, so larger waves here chain every wave to the one before).
        assert cli("plan", "-i", str(inventory), "--max-wave-size", "1").exit_code == 0
        assert cli("plan", "approve").exit_code == 0
        # Containment first (issue 14): every infected host isolated and its evidence collected, then
        # the waves' rebuild work. Two waves whose hosts do not wait for each other run at once.
        contained = cli("contain", "-i", str(inventory), "--runs-dir", str(tmp_path / "runs-c"), "--yes")
        assert contained.exit_code in (0, 1), contained.output + contained.stderr
        members = cli.json("plan", "show")["members"]
        waves: dict[int, list[dict]] = {}
        for m in members:
            if m["wave"] is not None:
                waves.setdefault(m["wave"], []).append(m)
        inv = inventory_lib.load([str(inventory)])

        def independent(a: int, b: int) -> bool:
            left, right = {m["host"] for m in waves[a]}, {m["host"] for m in waves[b]}
            return not (
                {d for n in right for d in inv.hosts[n].depends_on_hosts} & left
                or {d for n in left for d in inv.hosts[n].depends_on_hosts} & right
            )

        def rebuilds(w: int) -> bool:
            return any(m["action"] == "rebuild" for m in waves[w])

        pair = next(
            (a, b)
            for a in sorted(waves)
            for b in sorted(waves)
            if a < b and independent(a, b) and (rebuilds(a) or rebuilds(b))
        )
        # The wave with rebuild work runs first ("high"), the other starts inside one of its long stages.
        low, high = pair if rebuilds(pair[1]) else pair[::-1]
        first, second = waves[low], waves[high]
        names = {m["host"] for m in first} | {m["host"] for m in second}

        watcher = Watcher(postgres_url)
        out = tmp_path / "out"
        out.mkdir()
        store = Store.open(postgres_url)
        procs = [_run(postgres_url, inventory, high, tmp_path / "runs-a", out)]

        # The other wave starts while this one is inside a long stage: it must leave that stage run alone.
        def long_stage() -> list[StageRun]:
            running = stage_runs(store, wave=high, status="running")
            return [r for r in running if r.stage in ("wipe", "reimage", "restore")]

        wait_for(long_stage, f"wave {high}'s rebuild work")
        inside = long_stage()[0]
        procs.append(_run(postgres_url, inventory, low, tmp_path / "runs-b", out))
        wait_for(lambda: stage_runs(store, wave=low), f"wave {low} to start a stage")
        # Meanwhile: a second run on a held wave is refused, and an inventory sync goes through.
        refused = cli(
            "run", "-i", str(inventory), "--wave", str(high), "--yes", "--runs-dir", str(tmp_path / "r")
        )
        assert refused.exit_code == 2 and f"wave {high} {HELD}" in refused.stderr, refused.stderr
        assert cli("inventory", "sync", "-i", str(inventory)).exit_code == 0
        codes = {wave: p.wait(600) for wave, p in zip((high, low), procs, strict=True)}
        for wave in (low, high):
            assert codes[wave] == 0, (out / f"wave{wave}.err").read_text()
        # Hosts whose dependencies sit in other waves were rebuilt and wait, isolated ("awaiting"): one
        # more run reconnects them once what they depend on is back.
        final_runs = tmp_path / "runs-final"
        final = cli("run", "-i", str(inventory), "--all", "--yes", "--runs-dir", str(final_runs))
        assert final.exit_code == 0, final.output + final.stderr
        # The watcher saw both waves at work, then every host of both recovered (and the other waves'
        # hosts, run by the final run, recovered or waiting).
        wait_for(
            lambda: (
                (watcher.refreshes() or [{}])[-1].get("recovered", 0) >= len(names)
                and (watcher.refreshes() or [{}])[-1].get("in progress", 1) == 0
            ),
            "the final refresh",
            20,
        )
        refreshes = watcher.refreshes()
        assert len(refreshes) >= 5 and any(r.get("in progress", 0) >= 2 for r in refreshes), refreshes
        assert watcher.stop() == (0, "")

        paths = {m["host"]: states.path_for(m["action"], m["action"] == "protected") for m in first + second}
        with store.read() as s:
            hosts = {h.name: h for h in s.exec(select(Host).where(col(Host.name).in_(names)))}
            runs = list(s.exec(select(StageRun).order_by(col(StageRun.id))))
            with_events = set(s.exec(select(StageEvent.stage_run_id)).all())
            assert audit.verify(s) is None
            entries = list(s.exec(select(AuditEntry).order_by(col(AuditEntry.id))))
        assert not [
            (r.host_name, r.stage, r.status) for r in runs if r.status != "ok" or r.finished_at is None
        ]
        for name, path in paths.items():
            host = hosts[name]
            mine = [r for r in runs if r.host_name == name]
            assert host.state == states.RECOVERED, (name, host.state, host.state_reason)
            assert [r.stage for r in mine] == list(path)
            assert all(r.id in with_events for r in mine), f"{name}: a stage run without events"
            # A begin and a finish per stage, and the wait for dependencies when there was one.
            assert host.version >= 2 * len(mine), (name, host.version)
        # The runs overlapped: the second started inside the first one's stage, and they interleave.
        inside = next(r for r in runs if r.id == inside.id)
        starts = [e for e in entries if e.command == "run start" and e.args.get("wave") is not None]
        assert [e.args["wave"] for e in starts][:2] == [high, low]
        assert inside.started_at < starts[1].ts < inside.finished_at  # type: ignore[operator]
        concurrent = [e for e in entries if e.command == "run stage" and e.details["wave"] in (low, high)]
        final_start = [e for e in entries if e.command == "run start"][-1]
        stage_waves = [e.details["wave"] for e in concurrent if e.id < final_start.id]
        assert stage_waves != sorted(stage_waves, reverse=True), stage_waves
        assert [e.command for e in entries].count("run end") >= 3  # both waves, then the final run
        assert not (tmp_path / "r").exists()
        assert cli("audit", "verify").exit_code == 0
        for wave, members_of in ((low, first), (high, second)):
            report = json.loads((out / f"wave{wave}.json").read_text())
            outcome = {h["name"]: h["outcome"] for h in report["hosts"]}
            assert {outcome[m["host"]] for m in members_of} <= {"recovered", "awaiting"}, outcome
    finally:
        for p in [*procs, *([watcher.proc] if watcher else [])]:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
        down(lab)


def test_a_claim_lost_with_its_connection_is_taken_again_or_stops_the_run(
    postgres_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import create_engine, text

    store = Store.open(postgres_url)
    other = create_engine(postgres_url).connect().execution_options(isolation_level="AUTOCOMMIT")

    def drop(pid: int) -> None:
        """The claim's connection ends (here: the server ends it), and its locks with it."""
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        gone = text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid")
        wait_for(lambda: other.execute(gone, {"pid": pid}).scalar_one(), "the connection to end", 10)

    try:
        with claim_waves(store, [1, 2], tmp_path) as claim:
            claim.verify()  # held: nothing to do
            drop(claim.backend_pid())
            claim.verify()  # nobody took the waves meanwhile: taken again
            taken = other.execute(text("SELECT pg_try_advisory_lock(:s, 1)"), {"s": WAVE_LOCKS}).scalar_one()
            assert taken is False, "the claim was not taken again"
            drop(claim.backend_pid())
            assert other.execute(text("SELECT pg_try_advisory_lock(:s, 2)"), {"s": WAVE_LOCKS}).scalar_one()
            with pytest.raises(
                RefusedError, match=r"claim on wave\(s\) 2 was lost .* another 'orchestrator run'"
            ):
                claim.verify()  # another session holds wave 2 now: the run must stop
    finally:
        other.close()
