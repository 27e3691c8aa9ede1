"""How fast `orchestrator status` and `status HOST` answer on a fleet-sized database.

Fills a database with 100,000 hosts (tiers, waves, triage verdicts, a recovery half done) and
2,000,000 stage events, then times both views through the library, through the CLI in-process and
through the CLI as a new process, against baselines measured in the same run (a trivial query, and
`orchestrator --version` for interpreter start-up). Goals: under 200 ms each in a process, and
under 300 ms as a new process (issue 18: what a person at a terminal waits for). Wall and CPU time
are both printed; on a shared, busy machine the CPU time is the figure to read (the load is printed too).

    .venv/bin/python bench/status.py                      # full size, temporary database
    .venv/bin/python bench/status.py --hosts 10000 --events 200000 --db /tmp/small.db --keep
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import text

from orchestrator.cli import main
from orchestrator.execution.states import ACTIVE, DONE, path_for
from orchestrator.reporting import fleet, host_view
from orchestrator.store import Store

GOAL_MS = 200.0
NEW_PROCESS_GOAL_MS = 300.0
T0 = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
WAVES = 20
TIERS = ((0, 0.03), (1, 0.12), (2, 0.30), (3, 0.55))
GROUPS_BY_TIER = {0: "domain_controllers", 1: "ehr_app", 2: "file_servers", 3: "ws_wards"}
PLAN_REASONS = {
    "hold": "unreachable: a person must check it",
    "protected": "PROTECTED HOST FOUND INFECTED: never wiped, verified only; a person must decide",
}
STAGE_S = {
    "isolate": 20,
    "collect": 300,
    "wipe": 120,
    "reimage": 900,
    "restore": 1200,
    "validate": 180,
    "harden": 240,
    "reconnect": 30,
}


def ts(dt: datetime) -> str:
    """The text form SQLAlchemy writes for a UTC datetime on SQLite."""
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill(db: Path, hosts: int, events: int, seed: int = 7) -> dict[str, int]:
    """Bulk-load a plausible mid-recovery database with executemany (the ORM would take minutes)."""
    Store.open(str(db)).close()  # schema and indexes exactly as the orchestrator creates them
    rnd = random.Random(seed)
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("BEGIN")
    now = ts(T0)
    con.execute(
        "INSERT INTO triage_run (id, started_at, finished_at, operator, forks, timeout_s, packs, host_count,"
        " counts) VALUES (1, ?, ?, 'bench', 50, 60, '[\"lockbit\"]', ?, '{}')",
        (now, now, hosts),
    )
    con.execute(
        "INSERT INTO plan (id, created_at, created_by, status, triage_run_id, params, content_hash,"
        " approved_by, approved_at, approved_hash, estimated_s, lower_bound_s)"
        " VALUES (1, ?, 'bench', 'approved', 1, '{}', 'x', 'bench', ?, 'x', 0, 0)",
        (now, now),
    )
    con.executemany(
        "INSERT INTO plan_wave (plan_id, number, tier, estimated_s) VALUES (1, ?, ?, 3600)",
        [(w, _tier((w - 1) / WAVES)) for w in range(1, WAVES + 1)],
    )
    host_rows, member_rows, triage_rows, match_rows = [], [], [], []
    run_rows: list[tuple] = []
    evidence_rows, restore_rows = [], []
    current_wave = WAVES // 2
    for i in range(hosts):
        name = f"h{i:06d}"
        tier = _tier(i / hosts)
        wave = min(WAVES, 1 + (i * WAVES) // hosts)
        verdict = rnd.choices(("infected", "suspicious", "clean"), (30, 10, 60))[0]
        protected = i % 2000 == 0
        action = "protected" if protected else ("rebuild" if verdict != "clean" else "verify")
        if rnd.random() < 0.01 and not protected:
            action = "hold"
        state, stage, reason, stages_done = _progress(rnd, action, wave, current_wave)
        compromise = ts(T0 - timedelta(days=rnd.randint(1, 20))) if verdict == "infected" else None
        host_rows.append(
            (
                i + 1,
                name,
                f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                "winrm" if tier == 3 else "ssh",
                "windows" if tier == 3 else "linux",
                tier,
                "workstation" if tier == 3 else "server",
                "north",
                protected,
                100,
                json.dumps([GROUPS_BY_TIER[tier], f"tier{tier}"]),
                json.dumps(["health"] if tier == 1 else []),
                state,
                stage,
                reason,
                now,
            )
        )
        member_rows.append(
            (
                None if action == "hold" else wave,
                name,
                action,
                PLAN_REASONS.get(action, verdict),
                tier,
                verdict,
            )
        )
        triage_rows.append((i + 1, name, verdict, compromise, now))
        if verdict == "infected":
            match_rows.append(
                (i + 1, "lockbit3_note", "LockBit 3.0 ransom note", "infected", "C:/x.README.txt")
            )
        start = T0 + timedelta(hours=2 * (wave - 1))
        for stage, status in stages_done:
            duration = STAGE_S[stage] * rnd.uniform(0.7, 1.4)
            finished = ts(start + timedelta(seconds=duration)) if status != "running" else None
            run_rows.append((1, wave, name, stage, status, ts(start), finished))
            start += timedelta(seconds=duration)
            if stage == "collect" and status == "ok":
                evidence_rows.append(
                    (name, f"/evidence/{name}/triage.tar", hashlib.sha256(name.encode()).hexdigest())
                )
            if stage == "restore" and status != "running":
                restore_rows.append((name, f"snap-{i:08x}", ts(T0 - timedelta(days=25))))
    con.executemany(
        "INSERT INTO host (id, name, address, connection, os, tier, role, site, protected, priority, groups,"
        " data_categories, state, stage, state_reason, synced_at, depends_on, version)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,'[]',0)",
        host_rows,
    )
    con.executemany(
        "INSERT INTO plan_member (plan_id, wave, host_name, action, reason, tier, priority, verdict,"
        " estimated_s) VALUES (1,?,?,?,?,?,100,?,3000)",
        member_rows,
    )
    con.executemany(
        "INSERT INTO triage_result (id, run_id, host_name, verdict, duration_s, compromise_time, created_at)"
        " VALUES (?,1,?,?,1.0,?,?)",
        triage_rows,
    )
    con.executemany(
        "INSERT INTO check_match (result_id, check_id, title, severity, evidence) VALUES (?,?,?,?,?)",
        match_rows,
    )
    con.executemany(
        "INSERT INTO stage_run (plan_id, wave, host_name, stage, attempt, status, check_mode, started_at,"
        " finished_at) VALUES (?,?,?,?,1,?,0,?,?)",
        run_rows,
    )
    con.executemany(
        "INSERT INTO evidence_item (host_name, path, sha256, size, collected_by, collected_at)"
        f" VALUES (?,?,?,1048576,'bench','{now}')",
        evidence_rows,
    )
    con.executemany(
        f"INSERT INTO restore_point (host_name, snapshot_id, snapshot_time, skipped, chosen_at) VALUES (?,?,?,'[]','{now}')",
        restore_rows,
    )
    con.executemany(
        "INSERT INTO stage_event (stage_run_id, host_name, event, task, created_at) VALUES (?,?,?,?,?)",
        _events(con, events),
    )
    con.commit()
    _audit(con, hosts)  # no ANALYZE: a recovery database never gets one, the queries must not need it
    counts = {
        table: con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("host", "stage_run", "stage_event", "triage_result", "evidence_item", "audit_log")
    }
    con.close()
    return counts


def _tier(position: float) -> int:
    """Hosts and waves are laid out by tier, as the plan orders them (tier 0 first)."""
    acc = 0.0
    for tier, share in TIERS:
        acc += share
        if position < acc:
            return tier
    return 3


def _progress(
    rnd: random.Random, action: str, wave: int, current_wave: int
) -> tuple[str, str | None, str | None, list[tuple[str, str]]]:
    """A host's state and the stage runs behind it: earlier waves done, the current one midway."""
    if action == "hold":  # set aside by the plan: the host's state does not change
        return "planned", None, None, []
    path = path_for(action, action == "protected")
    if wave > current_wave:
        return "planned", None, None, []
    reached = len(path) if wave < current_wave else rnd.randint(0, len(path) - 1)
    runs = [(stage, "ok") for stage in path[:reached]]
    if rnd.random() < 0.02:
        reached = min(reached, rnd.randrange(len(path)))
        stage = path[reached]
        return "failed", stage, f"{stage}: task failed", [*runs[:reached], (stage, "failed")]
    if reached == len(path):
        return "recovered", None, None, runs
    if reached and rnd.random() < 0.5:
        return DONE[path[reached - 1]], path[reached - 1], None, runs
    stage = path[reached]
    return ACTIVE[stage], stage, None, [*runs, (stage, "running")]


def _events(con: sqlite3.Connection, total: int) -> Iterator[tuple]:
    """`total` events spread evenly over the stage runs, as a runner would write them."""
    runs = con.execute("SELECT id, host_name, started_at FROM stage_run ORDER BY id").fetchall()
    per_run, extra = divmod(total, len(runs))
    tasks = ("Gathering Facts", "run stage", "record result")
    for n, (run_id, host, started) in enumerate(runs):
        for k in range(per_run + (1 if n < extra else 0)):
            yield (run_id, host, ("runner_on_start", "runner_on_ok")[k % 2], tasks[k % 3], started)


def _audit(con: sqlite3.Connection, hosts: int) -> None:
    """A real hash chain written by the library: one entry per stage over each wave run so far,
    listing its hosts (as the engine records them), and host entries (every 20th host)."""
    from orchestrator.store import audit

    waves: dict[int, list[str]] = {}
    for name, wave in con.execute("SELECT host_name, wave FROM plan_member WHERE wave IS NOT NULL"):
        waves.setdefault(wave, []).append(name)
    store = Store.open(str(con.execute("PRAGMA database_list").fetchone()[2]))
    with store.write() as session:
        for wave in range(1, WAVES // 2 + 1):
            for stage in STAGE_S:
                details = {"plan": 1, "wave": wave, "stage": stage, "ok": waves[wave], "failed": {}}
                audit.record(session, "bench", "run stage", {"wave": wave}, details)
        for i in range(0, hosts, 20):
            audit.record(session, "bench", "host reset", {"to": "isolate"}, {"state": "planned"}, f"h{i:06d}")
    store.close()


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children: on a shared, busy machine the wall
    clock measures the neighbours, CPU time measures the work."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(first call wall, median wall, median CPU) in milliseconds over `repeat` further calls."""
    start = time.perf_counter()
    fn()
    first = (time.perf_counter() - start) * 1000
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), _cpu_s()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((_cpu_s() - start_cpu) * 1000)
    return first, statistics.median(wall), statistics.median(cpu)


def run(db: Path, hosts: int, repeat: int) -> list[tuple[str, float, float, float]]:
    store = Store.open(str(db))
    host = f"h{hosts * 2 // 5 + 20:06d}"  # wave 9 of 20: recovered, a full timeline and audit entries
    runner = CliRunner()

    def cli(*args: str) -> None:
        result = runner.invoke(main, ["--db", str(db), *args])
        assert result.exit_code == 0, result.output

    def subprocess_cli(*args: str) -> None:
        exe = Path(sys.executable).with_name("orchestrator")
        subprocess.run([str(exe), "--db", str(db), *args], check=True, capture_output=True)

    def baseline_query() -> None:
        with store.read() as session:
            session.execute(text("SELECT count(*) FROM host")).scalar()

    figures = [
        ("baseline: SELECT count(*) FROM host", *timed(baseline_query, repeat)),
        ("library fleet.status()", *timed(lambda: fleet.status(store), repeat)),
        ("library host_view.timeline(HOST)", *timed(lambda: host_view.timeline(store, host), repeat)),
        ("CLI in-process: status --json", *timed(lambda: cli("status", "--json"), repeat)),
        ("CLI in-process: status (table)", *timed(lambda: cli("status"), repeat)),
        ("CLI in-process: status HOST --json", *timed(lambda: cli("status", host, "--json"), repeat)),
        ("baseline: new process, orchestrator --version", *timed(lambda: subprocess_cli("--version"), 5)),
        ("new process: orchestrator status --json", *timed(lambda: subprocess_cli("status", "--json"), 5)),
        ("new process: orchestrator status (table)", *timed(lambda: subprocess_cli("status"), 5)),
        (
            "new process: orchestrator status HOST --json",
            *timed(lambda: subprocess_cli("status", host, "--json"), 5),
        ),
    ]
    store.close()
    return figures


def main_() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--db", type=Path, help="database file to fill (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="reuse --db if it is already filled")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        db = args.db or Path(tmp) / "status.db"
        if not (args.keep and db.exists()):
            db.unlink(missing_ok=True)
            start = time.perf_counter()
            counts = fill(db, args.hosts, args.events)
            print(f"filled {db} in {time.perf_counter() - start:.1f} s: {counts}")
        figures = run(db, args.hosts, args.repeat)
    base_lib, base_proc = figures[0][3], figures[6][3]
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; ratios use CPU time")
    print(f"{'measure':48} {'first ms':>9} {'wall ms':>8} {'CPU ms':>7}  ratio")
    for label, first, wall, cpu in figures:
        if label.startswith("baseline"):
            ratio = ""
        elif label.startswith("new process"):
            verdict = "ok" if cpu <= NEW_PROCESS_GOAL_MS else "OVER"
            ratio = (
                f"goal {NEW_PROCESS_GOAL_MS:.0f} ms ({verdict}), {cpu / base_proc:.2f}x start-up, "
                f"{cpu - base_proc:.0f} ms beyond it"
            )
        else:
            verdict = "ok" if cpu < GOAL_MS else "OVER"
            ratio = f"{cpu / GOAL_MS:.2f}x goal ({verdict}), {cpu / base_lib:.0f}x baseline"
        print(f"{label:48} {first:9.1f} {wall:8.1f} {cpu:7.1f}  {ratio}")


if __name__ == "__main__":
    main_()
