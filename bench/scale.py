"""How far one controller goes.

`fleet`: a simulated organisation after NotPetya (Maersk: 45,000 PCs and 4,000 servers): sites of
2,000 hosts, 200 servers and 1,800 workstations each (bench/plan.py's hospital services, its
application tier cut to 102 servers and its office workstations raised to 600), under a 3-host forest
root; `--hosts 50000` gives 25 sites, 5,000 servers and 45,000 workstations. It is written as a real
Ansible inventory on disk (one YAML file, a group_vars file per group) and taken through the real CLI,
each step a new process, on SQLite and on PostgreSQL, against baselines measured in the same run and
the targets of issue 18:

    step                                  baseline                                  target
    inventory sync -i FLEET               ansible-inventory -i FLEET --list         <= 1.0x baseline
    inventory check (unchanged files)     -                                         <= 3 s
    triage: first connection              -                                         <= 10 s
    triage: SIGINT to exit                -                                         (the in-flight hosts)
    triage, recorded (no SSH)             one bulk INSERT of the same result rows, rolled back
    plan -i FLEET                         graphlib ordering the same dependency graph <= 10 s
    plan approve                          orchestrator plan approve --help (start-up: the interpreter,
                                          the CLI and the command's imports, no database)
    status, status --json, status HOST    orchestrator status --help            <= 1 s
    (a recovery half done is written, as the engine writes it)
    status, status --json, status HOST    orchestrator status --help            <= 1 s
    any orchestrator process              -                                         peak RSS <= 1 GiB

`triage: first connection`: the whole fleet's triage, started as an operator starts it, with a TCP
listener on loopback at the address and port of the first host it checks: the time from start to the
listener's first accepted connection; the triage is then interrupted (SIGINT) and stores what it did:
`triage: SIGINT to exit` is the time from the signal to its exit (130), bounded by the hosts in flight
(--timeout 5 here), not by the fleet's size.
The first `inventory sync` loads with Ansible and fills the inventory cache; later steps read it.

`orchestrator --version` (the interpreter alone) is printed too.

`nodes`: a lab of M Linux hosts plus N execution nodes (lab hosts running `ansible-runner worker`); the
verify path's stages (harden, reconnect) through `orchestrator run --all`, with the hosts shared out over
0 nodes (the controller alone, the baseline), 1, 2, ... nodes, alternately, in one run: wall time and
the controller's CPU time (the orchestrator and everything it starts here; a node's work runs under
its own sshd and is not counted).

The triage is seeded (bench/plan.py's mix: 30% infected, 10% suspicious, 2% of workstations
unreachable) and stored through the triage's own recorder; the recovery writes host states, stage runs,
runner events (through the runner's event writer), evidence manifests and audit rows the way
`orchestrator run` does, without Ansible: the waves of about half the hosts done, 2% of the hosts
nothing depends on failed at a random stage, the next wave stopped midway through a stage. The plan
uses bench/plan.py's limits for this fleet (--max-wave-size 1000, image-server=300, restores=100).

Ratios are wall-clock (on PostgreSQL the client's CPU time leaves out the server's work); CPU time and
peak RSS of each orchestrator process are printed beside them. Steps over 10 s are flagged.

    .venv/bin/python bench/scale.py fleet                 # 4,000 hosts; SQLite and a private PostgreSQL
    .venv/bin/python bench/scale.py fleet --hosts 50000   # issue 18's fleet (about 30 min on 2 CPUs)
    .venv/bin/python bench/scale.py fleet --hosts 2000 --no-pg
    .venv/bin/python bench/scale.py fleet --hosts 50000 --no-sqlite --no-first-connection --pg URL
    .venv/bin/python bench/scale.py fleet --pg postgresql+psycopg://me@127.0.0.1:5432/empty_db
    .venv/bin/python bench/scale.py fleet --workdir /tmp/scale --profile   # keep files, cProfile each step
    .venv/bin/python bench/scale.py nodes                 # 40 hosts; 0, 1, 2, 4 nodes; 3 rounds
    .venv/bin/python bench/scale.py nodes --hosts 100 --nodes 2 5 --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "inventory")]

import plan as plan_bench  # noqa: E402  bench/plan.py: the regional group's shape and seeded triage
from generate_hospital import SERVER_GROUPS as HOSPITAL_GROUPS  # noqa: E402
from generate_hospital import _group_vars, _yaml_hosts  # noqa: E402
from sqlalchemy import insert  # noqa: E402
from sqlmodel import col, func, select  # noqa: E402

from orchestrator import inventory, lifecycle  # noqa: E402
from orchestrator.execution import states  # noqa: E402
from orchestrator.execution.containment import CONTAINMENT_WAVE  # noqa: E402
from orchestrator.execution.runner import DONE_TASK, EventWriter, HostResult, StageSpec  # noqa: E402
from orchestrator.planning.store import load_approved_plan  # noqa: E402
from orchestrator.store import Store, audit  # noqa: E402
from orchestrator.store.models import EvidenceItem, Host, StageRun, TriageResult, TriageRun, utcnow  # noqa: E402
from orchestrator.triage.engine import Hit, Settings  # noqa: E402
from orchestrator.triage.engine import HostResult as TriageHostResult  # noqa: E402
from orchestrator.triage.results import RunRecorder  # noqa: E402

BIN = Path(sys.executable).parent
OPERATOR = "bench"
SLOW_S = 10.0
HOSTS_PER_HOSPITAL = 2000
# Per site: 200 servers (bench/plan.py's services, the application tier cut to 102) and 1,800
# workstations (office workstations raised to 600): Maersk's 9 PCs to 1 server.
SERVER_GROUPS = {**plan_bench.SERVER_GROUPS, "app": (102, *plan_bench.SERVER_GROUPS["app"][1:])}
WORKSTATION_GROUPS = {
    **plan_bench.WORKSTATION_GROUPS,
    "wsadmin": (600, *plan_bench.WORKSTATION_GROUPS["wsadmin"][1:]),
}
# Issue 18's targets: a step's wall time at most this many seconds ...
TARGET_S = {"inventory check": 3.0, "triage: first connection": 10.0, "plan -i": 10.0, "status": 1.0}
TARGET_RATIO = {"inventory sync": 1.0}  # ... or at most this times its baseline
TARGET_RSS_MIB = 1024
PLAN_OPTIONS = ("--max-wave-size", "1000", "--capacity", "image-server=300", "--capacity", "restores=100")
DATA = {spec["prefix"]: spec["data"] for spec in HOSPITAL_GROUPS.values()}
EXECUTABLE = ("rebuild", "verify", "protected")
CONTAIN_BATCH = 1000  # containment's stage runs, written as the engine writes one batch
GRAPHLIB = (
    "import graphlib, json, sys; "
    "list(graphlib.TopologicalSorter(json.load(open(sys.argv[1]))).static_order())"
)


# --- the fleet on disk ----------------------------------------------------------------------------


def write_fleet(out: Path, hospitals: int) -> int:
    """An inventory directory like inventory/hospital/: hosts.yml plus recovery attributes as
    group_vars, one group per hospital and role so each hospital's services depend on its own."""
    (out / "group_vars").mkdir(parents=True)
    lines = [
        "# A simulated regional group written by bench/scale.py: not a real fleet.",
        "all:",
        "  children:",
    ]
    by_os: dict[str, list[str]] = {"windows": ["forest_root"], "linux": []}
    by_role: dict[str, list[str]] = {"servers": ["forest_root"], "workstations": []}
    root = [(f"root-dc{i}", f"127.19.0.{i + 1}") for i in range(3)]
    lines += ["    forest_root:", "      hosts:", *_yaml_hosts(root, 8)]
    _group_vars(out, "forest_root", "server", 0, 1, [], [], False, "windows")
    with (out / "group_vars" / "forest_root.yml").open("a") as f:
        f.write("recovery_site: core\n")
    count = len(root)
    for k in range(hospitals):
        site = f"h{k:02d}"
        lines += [f"    {site}:", "      children:"]
        n = 0  # loopback addresses, never contacted: each host's is unique, as the inventory check wants

        def entries(names: list[str], k: int = k) -> list[tuple[str, str]]:
            nonlocal n
            out_ = [
                (name, f"127.{20 + k}.{(n + i) // 250}.{(n + i) % 250 + 1}") for i, name in enumerate(names)
            ]
            n += len(names)
            return out_

        for group, (size, tier, priority, os_name, deps, protected) in SERVER_GROUPS.items():
            name = f"{site}_{group}"
            hosts = entries([f"{group}-{site}-{i:03d}" for i in range(size)])
            lines += [f"        {name}:", "          hosts:", *_yaml_hosts(hosts, 12)]
            dep_groups = ["forest_root" if d == "root" else f"{site}_{d}" for d in deps]
            _group_vars(out, name, "server", tier, priority, dep_groups, DATA[group], protected, os_name)
            by_os[os_name].append(name)
            by_role["servers"].append(name)
        for group, (size, priority, deps) in WORKSTATION_GROUPS.items():
            name = f"{site}_{group}"
            hosts = entries([f"{group}-{site}-{i:04d}" for i in range(size)])
            lines += [f"        {name}:", "          hosts:", *_yaml_hosts(hosts, 12)]
            dep_groups = [f"{site}_{d}" for d in deps]
            _group_vars(out, name, "workstation", 3, priority, dep_groups, ["personal"], False, "windows")
            by_os["windows"].append(name)
            by_role["workstations"].append(name)
        (out / "group_vars" / f"{site}.yml").write_text(f"recovery_site: {site}\n")
        count += n
    for parent, children in (*by_os.items(), *by_role.items()):
        lines += [f"    {parent}:", "      children:", *[f"        {c}: {{}}" for c in children]]
    (out / "hosts.yml").write_text("\n".join(lines) + "\n")
    group_vars = {
        "all": "ansible_user: recovery\nrecovery_reimage_method: pxe\nrecovery_restore_method: restic\n",
        # The service account's password from the environment, as a real fleet keeps it out of files.
        "windows": "ansible_connection: winrm\nansible_user: 'REGION\\recovery-svc'\nansible_port: 5986\n"
        "ansible_password: \"{{ lookup('env', 'BENCH_SCALE_PASSWORD') }}\"\n"
        "ansible_winrm_transport: ntlm\nrecovery_reimage_method: vsphere\n",
        "workstations": "recovery_role: workstation\nrecovery_reimage_method: pxe\nrecovery_restore_method: none\n",
    }
    for name, body in group_vars.items():
        (out / "group_vars" / f"{name}.yml").write_text(body)
    return count


# --- measuring a process ---------------------------------------------------------------------------


@dataclass
class Figure:
    wall: float
    cpu: float | None = None
    rss_mib: float | None = None


# Run by a small launcher process: a child forked from this (large) process would report this
# process's memory as its own peak RSS, since Linux keeps the high-water mark across exec.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
_, status, usage = os.wait4(subprocess.Popen(sys.argv[2:]).pid, 0)
json.dump({"rc": os.waitstatus_to_exitcode(status), "wall": time.perf_counter() - start,
           "cpu": usage.ru_utime + usage.ru_stime, "rss_kib": usage.ru_maxrss}, open(sys.argv[1], "w"))
"""


def spawn(argv: Sequence[str], stdout: Path | None = None) -> Figure:
    """One new process, timed; its own CPU time and peak RSS come from wait4()."""
    env = {
        **os.environ,
        "ORCHESTRATOR_OPERATOR": OPERATOR,
        "COLUMNS": "120",
        "BENCH_SCALE_PASSWORD": "bench-only",
    }
    with (
        open(stdout or os.devnull, "wb") as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile(suffix=".json") as report,
    ):
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, report.name, *argv]
        subprocess.run(launcher, stdout=out, stderr=err, env=env, check=True)
        figures = json.loads(Path(report.name).read_text())
        if figures["rc"] != 0:
            err.seek(0)
            tail = err.read()[-3000:].decode(errors="replace")
            raise SystemExit(f"{' '.join(argv)}: exit code {figures['rc']}\n{tail}")
    return Figure(figures["wall"], figures["cpu"], figures["rss_kib"] / 1024)


def median(figures: list[Figure]) -> Figure:
    """The median run by wall time, with the highest peak RSS of all runs."""
    mid = sorted(figures, key=lambda f: f.wall)[len(figures) // 2]
    rss = [f.rss_mib for f in figures if f.rss_mib is not None]
    return Figure(mid.wall, mid.cpu, max(rss) if rss else None)


def in_process(fn: Callable[[], Any]) -> Figure:
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return Figure(time.perf_counter() - start, time.process_time() - cpu)


class Cli:
    """`orchestrator --db URL ...` as a new process, optionally under cProfile (one .prof per step)."""

    def __init__(self, db: str, profile_dir: Path | None, tag: str) -> None:
        self.db = db
        self.profile_dir = profile_dir
        self.tag = tag
        self.steps = 0

    def __call__(self, *args: str, repeat: int = 1, stdout: Path | None = None) -> Figure:
        runs = []
        for i in range(repeat):
            argv = [str(BIN / "orchestrator"), "--db", self.db, *args]
            if self.profile_dir is not None and i == 0:
                slug = "-".join(a.strip("-") for a in args if not a.startswith("/"))[:60]
                self.steps += 1
                prof = self.profile_dir / f"{self.tag}-{self.steps:02d}-{slug}.prof"
                argv = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "orchestrator", *argv[1:]]
            runs.append(spawn(argv, stdout))
        return median(runs)


# --- a triage without SSH, stored as the triage stores it ---------------------------------------------

T0 = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)


def simulated_triage(hosts: list[inventory.Host], seed: int) -> list[TriageHostResult]:
    """bench/plan.py's seeded verdicts, with the evidence a real check would attach."""
    verdicts = plan_bench.triage(hosts, seed)
    rng = random.Random(seed)
    results = []
    for h in hosts:
        verdict = verdicts[h.name].verdict
        result = TriageHostResult(h.name, h.os, verdict, duration_s=rng.uniform(0.5, 3.0))
        if verdict == "unreachable":
            result.reason = "connection timed out"
        elif verdict in ("infected", "suspicious"):
            seen = T0 - timedelta(days=rng.randint(1, 20), minutes=rng.randint(0, 1440))
            check = (
                ("lockbit3_note", "LockBit 3.0 ransom note", "C:/Users/Public/Desktop/x.README.txt")
                if verdict == "infected"
                else ("new_service", "Service installed recently", "svc PSEXESVC (C:/Windows/PSEXESVC.exe)")
            )
            result.hits = [Hit(check[0], check[1], verdict, check[2], seen)]
            result.compromise_time = seen
        results.append(result)
    return results


def record_triage(store: Store, hosts: list[inventory.Host], results: list[TriageHostResult]) -> None:
    recorder = RunRecorder(store, OPERATOR)
    recorder.start(hosts, ["bench/scale.py (simulated, no SSH)"], Settings(), None)
    for result in results:
        recorder.add(result)
    recorder.finish(results, "triage", {"simulated": True})


def bulk_insert_baseline(store: Store, results: list[TriageHostResult]) -> None:
    """The least a store of these results must do: a run row and one bulk INSERT of the result rows,
    rolled back."""
    with store.write() as session:
        run = TriageRun(operator=OPERATOR, host_count=len(results))
        session.add(run)
        session.flush()
        session.execute(
            insert(TriageResult),
            [
                {"run_id": run.id, "host_name": r.host, "verdict": r.verdict, "reason": r.reason,
                 "duration_s": r.duration_s, "compromise_time": r.compromise_time}
                for r in results
            ],
        )  # fmt: skip
        session.rollback()


# --- a recovery half done, written as the engine writes it --------------------------------------------


def _events(stage: str, hosts: list[str], fails: set[str]) -> Iterator[dict[str, Any]]:
    """ansible-runner's events for one stage, as its event handler receives them."""
    now = datetime.now(UTC).isoformat()

    def event(name: str, host: str, task: str, res: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"event": name, "created": now, "event_data": {"host": host, "task": task, "res": res}}

    for host in hosts:
        yield event("runner_on_start", host, "Gathering Facts")
        yield event("runner_on_ok", host, "Gathering Facts")
        yield event("runner_on_start", host, f"{stage}: apply")
        if host in fails:
            yield event("runner_on_failed", host, f"{stage}: apply", {"msg": "simulated failure"})
            continue
        yield event("runner_on_ok", host, f"{stage}: apply")
        yield event("runner_on_start", host, DONE_TASK)
        yield event("runner_on_ok", host, DONE_TASK)


class Recovery:
    """Engine._begin / runner events / Engine._end, without ansible-playbook in between."""

    def __init__(self, store: Store, seed: int) -> None:
        self.store = store
        self.rng = random.Random(seed)
        with store.read() as session:
            self.view = load_approved_plan(session)
            rows = {h.name: h for h in session.exec(select(Host))}
        self.plan_id = int(self.view.plan.id or 0)
        self.members = {
            m.host_name: m for m in self.view.members if m.wave is not None and m.action in EXECUTABLE
        }
        self.paths = {
            n: states.path_for(m.action, rows[n].protected or m.action == "protected")
            for n, m in self.members.items()
        }
        self.depends = {n: [d for d in rows[n].depends_on if d in self.members] for n in self.members}
        # Failures fall on hosts nothing depends on: one failed domain controller would leave every
        # later wave waiting (as the engine does), a stall rather than a recovery half done.
        self.leaves = set(self.members) - {d for ds in self.depends.values() for d in ds}
        self.recovered: set[str] = set()
        self.failed: set[str] = set()
        self.awaiting: set[str] = set()

    def run(self, share: float, fail_rate: float) -> dict[str, int]:
        """As the engine runs a plan: containment of every rebuilt host first, then the waves, each
        rebuilding every host; a host whose dependencies are not recovered waits (awaiting) and a
        sweep after each wave reconnects those that may go."""
        target = share * len(self.members)
        waves: dict[int, list[str]] = {}
        for name, m in self.members.items():
            waves.setdefault(int(m.wave or 0), []).append(name)
        with self.store.write() as session:
            audit.record(session, OPERATOR, "run start", details={"plan": self.plan_id, "simulated": True})
        contained = sorted(n for n, p in self.paths.items() if p is states.REBUILD)
        for stage in states.CONTAIN:
            for start in range(0, len(contained), CONTAIN_BATCH):
                self.stage(CONTAINMENT_WAVE, stage, contained[start : start + CONTAIN_BATCH], set(), True)
        for wave in sorted(waves):
            midway = len(self.recovered) + len(self.failed) >= target  # the waves before it: done
            self.wave(wave, waves[wave], fail_rate, midway)
            if midway:
                break
            self.sweep()
        return {"recovered": len(self.recovered), "failed": len(self.failed), "awaiting": len(self.awaiting)}

    def wave(self, wave: int, hosts: list[str], fail_rate: float, midway: bool) -> None:
        """Every stage of the wave in order; `midway`: stop inside the middle stage, as a crash would."""
        stages = {h: [s for s in self.paths[h] if s not in states.CONTAIN] for h in hosts}
        fail_at = {
            h: self.rng.choice(stages[h][:-1])
            for h in hosts
            if h in self.leaves and self.rng.random() < fail_rate
        }
        order = [s for s in states.STAGE_ORDER if any(s in stages[h] for h in hosts)]
        stop = len(order) // 2 if midway else len(order)
        for i, stage in enumerate(order[: stop + 1] if midway else order):
            running = [h for h in hosts if stage in stages[h] and h not in self.failed]
            if stage == lifecycle.RECONNECT:
                waiting = [h for h in running if not self.may_reconnect(h)]
                self.park(waiting)
                running = [h for h in running if h not in self.awaiting]
            if running:
                self.stage(wave, stage, running, {h for h in running if fail_at.get(h) == stage}, i < stop)
            if stage == lifecycle.RECONNECT:
                self.recovered.update(h for h in running if h not in self.failed)

    def may_reconnect(self, host: str) -> bool:
        return all(d in self.recovered for d in self.depends[host])

    def park(self, hosts: list[str]) -> None:
        """The engine's `_await`: validated hosts wait, isolated, for what they depend on."""
        if not hosts:
            return
        with self.store.write() as session:
            rows = {h.name: h for h in session.exec(select(Host).where(col(Host.name).in_(hosts)))}
            for name in hosts:
                states.await_dependencies(rows[name], self.paths[name][-2], "waiting for its dependencies")
                session.add(rows[name])
        self.awaiting.update(hosts)

    def sweep(self) -> None:
        """The engine's `_sweep`: reconnect, wave by wave, the awaiting hosts that may go now."""
        while ready := sorted(h for h in self.awaiting if self.may_reconnect(h)):
            self.awaiting.difference_update(ready)
            for wave in sorted({int(self.members[h].wave or 0) for h in ready}):
                group = [h for h in ready if self.members[h].wave == wave]
                self.stage(wave, lifecycle.RECONNECT, group, set(), True)
                self.recovered.update(group)

    def stage(self, wave: int, stage: str, hosts: list[str], fails: set[str], end: bool) -> None:
        private = f"/nonexistent/bench-scale/w{wave}-{stage}"
        run_ids = self._begin(wave, stage, hosts, private)
        spec = StageSpec(stage, Path("/nonexistent"), [], hosts, {}, Path(private), stage_run_ids=run_ids)
        writer = EventWriter(self.store, spec, None)
        writer.start()
        for i, event in enumerate(_events(stage, hosts, fails)):
            if not end and i >= 3 * len(hosts):  # midway: half the hosts' events have arrived
                break
            writer.handler(event)
        writer.stop()
        if end:
            self._end(wave, stage, writer.tracker.results(0), run_ids, private)
            self.failed |= fails

    def _begin(self, wave: int, stage: str, hosts: list[str], private: str) -> dict[str, int]:
        run_ids: dict[str, int] = {}
        with self.store.write() as session:
            rows = {h.name: h for h in session.exec(select(Host).where(col(Host.name).in_(hosts)))}
            counts = dict(
                session.exec(
                    select(StageRun.host_name, func.count())
                    .where(col(StageRun.host_name).in_(hosts), StageRun.stage == stage)
                    .group_by(StageRun.host_name)
                ).all()
            )
            for name in hosts:
                run = StageRun(plan_id=self.plan_id, wave=wave, host_name=name, stage=stage,
                               attempt=counts.get(name, 0) + 1, status="running", runner_dir=private)  # fmt: skip
                states.begin(rows[name], stage, self.paths[name])
                session.add(rows[name])
                session.add(run)
                session.flush()
                run_ids[name] = int(run.id or 0)
        return run_ids

    def _end(
        self, wave: int, stage: str, results: dict[str, HostResult], run_ids: dict[str, int], private: str
    ) -> None:
        now = utcnow()
        with self.store.write() as session:
            rows = {h.name: h for h in session.exec(select(Host).where(col(Host.name).in_(list(run_ids))))}
            runs = {
                r.id: r
                for r in session.exec(select(StageRun).where(col(StageRun.id).in_(list(run_ids.values()))))
            }
            for name, run_id in run_ids.items():
                run, result, row = runs[run_id], results[name], rows[name]
                run.status, run.finished_at = ("ok" if result.ok else "failed"), now
                run.task, run.message = result.task, result.message
                session.add(run)
                if result.ok:
                    states.finish(row, stage)
                    if stage == "collect":
                        session.add(
                            EvidenceItem(host_name=name, path=f"/srv/evidence/{name}/triage.tar",
                                         sha256=uuid.uuid5(uuid.NAMESPACE_DNS, name).hex * 2, size=1 << 20,
                                         collected_by=OPERATOR, collected_at=now, stage_run_id=run_id)
                        )  # fmt: skip
                else:
                    states.fail(row, stage, f"{result.task}: {result.message}")
                session.add(row)
            audit.record(
                session,
                OPERATOR,
                "run stage",
                details={"plan": self.plan_id, "wave": wave, "stage": stage, "attempt": 1, "check": False,
                         "runner_dir": private, "ok": sorted(h for h, r in results.items() if r.ok),
                         "failed": {h: r.message for h, r in sorted(results.items()) if not r.ok}},
            )  # fmt: skip


# --- PostgreSQL --------------------------------------------------------------------------------------


@contextlib.contextmanager
def private_postgres(base: Path) -> Iterator[str]:
    """A throwaway PostgreSQL cluster on loopback (the test suite's way: Debian's binaries, run as the
    postgres user), with its durability settings left at their defaults, stopped by its pid."""
    from tests.postgres import _as_postgres, _free_port, _pg_bin

    bindir = _pg_bin()
    if bindir is None:
        raise SystemExit("PostgreSQL is not installed (Debian package postgresql): use --pg URL or --no-pg")
    base.mkdir(mode=0o755)
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base}"
    start = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"]
    subprocess.run(_as_postgres(start), check=True, capture_output=True)
    pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as con:
            con.execute('CREATE DATABASE "scale"')
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/scale"
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]
        subprocess.run(_as_postgres(stop), capture_output=True)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            os.kill(pid, 9)


# --- the fleet part ----------------------------------------------------------------------------------


@dataclass
class Row:
    step: str
    backend: str
    figure: Figure
    baseline: str | None = None


class FleetBench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.rows: list[Row] = []
        self.baselines: dict[str, Figure] = {}
        self.profile_dir = work / "profiles" if args.profile else None
        if self.profile_dir:
            self.profile_dir.mkdir(exist_ok=True)

    def note(self, row: Row) -> None:
        self.rows.append(row)
        f = row.figure
        cpu = f" cpu {f.cpu:.2f} s" if f.cpu is not None else ""
        rss = f" rss {f.rss_mib:.0f} MiB" if f.rss_mib is not None else ""
        print(f"  [{row.backend}] {row.step}: {f.wall:.2f} s{cpu}{rss}", flush=True)

    def baseline(self, name: str, figure: Figure) -> None:
        self.baselines[name] = figure
        self.note(Row(f"baseline: {name}", "-", figure))

    def prepare(self) -> None:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "orchestrator"],
                               capture_output=True, text=True).stdout.splitlines()  # fmt: skip
        print(f"orchestrator at {head.stdout.strip() or '?'}"
              + (f" with {len(dirty)} uncommitted file(s) under orchestrator/" if dirty else ""))  # fmt: skip
        hospitals = max(1, round(self.args.hosts / HOSTS_PER_HOSPITAL))
        self.fleet = self.work / "fleet"
        start = time.perf_counter()
        count = write_fleet(self.fleet, hospitals)
        print(
            f"wrote {self.fleet}: {count} hosts ({hospitals} hospitals) in {time.perf_counter() - start:.1f} s"
        )
        loaded: list[inventory.Inventory] = []
        self.note(Row("library: inventory.load (Ansible's loader, in this process)", "-",
                      in_process(lambda: loaded.append(inventory.load([str(self.fleet)])))))  # fmt: skip
        inv = loaded[0]
        inv.require_valid()
        self.hosts = list(inv.hosts.values())
        graph = {h.name: h.depends_on_hosts for h in self.hosts}
        synthetic = plan_bench.synthetic(hospitals, SERVER_GROUPS, WORKSTATION_GROUPS)
        expected = {h.name: h.depends_on_hosts for h in synthetic}
        assert {k: sorted(v) for k, v in graph.items()} == {k: sorted(v) for k, v in expected.items()}, (
            "the inventory on disk does not give bench/plan.py's dependency graph"
        )
        self.edges = sum(len(d) for d in graph.values())
        print(f"inventory: {len(self.hosts)} hosts, {self.edges} dependency links (bench/plan.py's graph)")
        (self.work / "graph.json").write_text(json.dumps(graph))
        self.results = simulated_triage(self.hosts, self.args.seed)
        inv_list = [str(BIN / "ansible-inventory"), "-i", str(self.fleet), "--list"]
        self.baseline("ansible-inventory --list", spawn(inv_list))
        graph_run = [sys.executable, "-c", GRAPHLIB, str(self.work / "graph.json")]
        self.baseline("graphlib order, new process", median([spawn(graph_run) for _ in range(3)]))
        for args in (["--version"], ["plan", "approve", "--help"], ["status", "--help"]):
            argv = [str(BIN / "orchestrator"), *args]
            self.baseline(
                f"orchestrator {' '.join(args)}", median([spawn(argv) for _ in range(self.args.repeat)])
            )

    def backend(self, label: str, db: str) -> None:
        print(f"\n== {label}: {db}", flush=True)
        cli = Cli(db, self.profile_dir, label)
        fleet = str(self.fleet)
        shutil.rmtree(self.work / "inventory-cache", ignore_errors=True)  # sync loads with Ansible
        self.note(Row("inventory sync -i FLEET", label, cli("inventory", "sync", "-i", fleet),
                      "ansible-inventory --list"))  # fmt: skip
        self.note(Row("inventory check (unchanged files)", label, cli("inventory", "check", "-i", fleet)))
        if not self.args.no_first_connection:
            reached, stopped = self.first_connection(cli, fleet)
            self.note(Row("triage: first connection", label, reached))
            self.note(Row("triage: SIGINT to exit (what was done stored)", label, stopped))
        store = Store.open(db)
        try:
            bulk = in_process(lambda: bulk_insert_baseline(store, self.results))
            self.baseline(f"bulk INSERT of the triage rows ({label})", bulk)
            self.note(Row("triage recorded (library, no SSH)", label,
                          in_process(lambda: record_triage(store, self.hosts, self.results)),
                          f"bulk INSERT of the triage rows ({label})"))  # fmt: skip
            self.note(Row("plan -i FLEET", label, cli("plan", "-i", fleet, *PLAN_OPTIONS),
                          "graphlib order, new process"))  # fmt: skip
            self.note(Row("plan approve", label, cli("plan", "approve", "--by", OPERATOR),
                          "orchestrator plan approve --help"))  # fmt: skip
            with store.read() as session:
                view = load_approved_plan(session)
            rebuilt = [m for m in view.members if m.wave is not None and m.action == "rebuild"]
            host = min(rebuilt, key=lambda m: (m.wave, m.id)).host_name  # the first wave's: a full story
            self.status(cli, label, host, "before the run")
            recovery = Recovery(store, self.args.seed)
            done: list[dict[str, int]] = []
            figure = in_process(lambda: done.append(recovery.run(0.5, 0.02)))
            self.note(Row(f"recovery written: {done[0]['recovered']} recovered, "
                          f"{done[0]['awaiting']} awaiting, {done[0]['failed']} failed",
                          label, figure))  # fmt: skip
            self.status(cli, label, host, "recovery half done", expect_recovered=done[0]["recovered"])
        finally:
            store.close()

    def first_connection(self, cli: Cli, fleet: str) -> tuple[Figure, Figure]:
        """Seconds from the start of `orchestrator triage` (the whole fleet) to its first connection,
        caught by a listener at the first host's address and port; then the triage is interrupted,
        and the seconds from SIGINT to its exit (the hosts in flight end within --timeout)."""
        shown = self.work / "shown.json"
        cli("inventory", "show", "--json", "-i", fleet, stdout=shown)
        first = json.loads(shown.read_text())["hosts"][0]
        port = first["port"] or (5986 if first["os"] == "windows" else 22)
        with socket.create_server((first["address"], port)) as listener:
            listener.settimeout(0.05)
            argv = [str(BIN / "orchestrator"), "--db", cli.db, "triage", "-i", fleet, "--timeout", "5"]
            env = {**os.environ, "ORCHESTRATOR_OPERATOR": OPERATOR, "BENCH_SCALE_PASSWORD": "bench-only"}
            started = time.perf_counter()
            errors = (self.work / "triage.stderr").open("wb")
            # As an operator's terminal starts it: a bench started in the background (`cmd &`, nohup)
            # passes SIGINT on as ignored, and the triage then rightly ignores Ctrl-C and checks every
            # host (the "15 minutes to exit" of the second pass).
            proc = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=errors, env=env, preexec_fn=_sigint_as_at_a_terminal
            )
            try:
                while True:
                    try:
                        conn, _ = listener.accept()
                        break
                    except TimeoutError:
                        if proc.poll() is not None:
                            tail = (self.work / "triage.stderr").read_text()[-2000:]
                            raise SystemExit(f"triage ended before connecting: {tail}") from None
                wall = time.perf_counter() - started
                cpu = _cpu_seconds(proc.pid)  # up to the connection, not the interrupted run after it
                conn.close()
            finally:
                interrupted = time.perf_counter()
                proc.send_signal(signal.SIGINT)
                try:
                    _, status, usage = os.wait4(proc.pid, 0)
                except BaseException:
                    proc.kill()
                    raise
                errors.close()
        stop = time.perf_counter() - interrupted
        if os.waitstatus_to_exitcode(status) != 130:
            tail = (self.work / "triage.stderr").read_text()[-2000:]
            raise SystemExit(f"the interrupted triage did not exit 130: {tail}")
        return Figure(wall, cpu, usage.ru_maxrss / 1024), Figure(stop)

    def status(self, cli: Cli, label: str, host: str, when: str, expect_recovered: int = 0) -> None:
        out = self.work / "status.json"
        repeat = self.args.repeat
        self.note(Row(f"status ({when})", label, cli("status", repeat=repeat), "orchestrator status --help"))
        self.note(Row(f"status --json ({when})", label, cli("status", "--json", repeat=repeat, stdout=out),
                      "orchestrator status --help"))  # fmt: skip
        doc = json.loads(out.read_text())
        assert doc["total"] == len(self.hosts), (doc["total"], len(self.hosts))
        assert doc["by_category"]["recovered"] == expect_recovered, doc["by_category"]
        self.note(Row(f"status HOST ({when})", label, cli("status", host, repeat=repeat),
                      "orchestrator status --help"))  # fmt: skip

    def table(self) -> None:
        print(f"\n{len(self.hosts)} hosts, {self.edges} dependency links; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; ratio = wall / baseline wall")  # fmt: skip
        head = (
            f"{'step':58} {'backend':10} {'wall s':>7} {'CPU s':>6} {'base s':>7} {'ratio':>7} {'RSS MiB':>8}"
            f"  {'target':>14}"
        )
        print(head)
        print("-" * len(head))
        for r in self.rows:
            f = r.figure
            base = self.baselines.get(r.baseline or "")
            cells = [
                f"{r.step:58.58} {r.backend:10}",
                f"{f.wall:7.2f}",
                f"{f.cpu:6.2f}" if f.cpu is not None else f"{'':6}",
                f"{base.wall:7.2f}" if base else f"{'':7}",
                f"{f.wall / base.wall:7.1f}" if base else f"{'':7}",
                f"{f.rss_mib:8.0f}" if f.rss_mib is not None else f"{'':8}",
            ]
            print(" ".join(cells) + _target(r.step, f, base))
        rss = [r.figure.rss_mib for r in self.rows if r.figure.rss_mib and r.backend != "-"]
        if rss:
            verdict = "met" if max(rss) <= TARGET_RSS_MIB else "MISSED"
            print(
                f"peak RSS of any orchestrator process: {max(rss):.0f} MiB (target <= {TARGET_RSS_MIB}: {verdict})"
            )


def _cpu_seconds(pid: int) -> float:
    """A running process's CPU time so far (user + system, from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _target(step: str, f: Figure, base: Figure | None) -> str:
    """Issue 18's target for a step, and whether this run met it."""

    def verdict(wall_ok: bool, cpu_ok: bool) -> str:
        # On a shared machine wall time includes waiting for a CPU: CPU time is then the fairer figure
        # (one thread of work; a PostgreSQL server's share is not in it).
        return "met" if wall_ok else "met on CPU" if cpu_ok else "MISSED"

    for prefix, limit in TARGET_S.items():
        if step.startswith(prefix):
            return f"  <= {limit:4.1f} s {verdict(f.wall <= limit, (f.cpu or 0) <= limit)}"
    for prefix, ratio in TARGET_RATIO.items():
        if step.startswith(prefix) and base:
            cpu_ok = (f.cpu or 0) <= ratio * (base.cpu or 0)
            return f"  <= {ratio:.1f}x   {verdict(f.wall <= ratio * base.wall, cpu_ok)}"
    return "  SLOW (over 10 s)" if f.wall > SLOW_S and not step.startswith("baseline") else ""


def _require_empty(db: str) -> None:
    store = Store.open(db)
    try:
        with store.read() as session:
            if session.exec(select(func.count()).select_from(Host)).one():
                raise SystemExit(f"{db}: not an empty database (the bench fills it with its own fleet)")
    finally:
        store.close()


def fleet_part(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        if args.workdir:
            work = args.workdir.absolute()
            work.mkdir(parents=True, exist_ok=False)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        os.environ["ORCHESTRATOR_INVENTORY_CACHE"] = str(work / "inventory-cache")
        bench = FleetBench(args, work)
        bench.prepare()
        if not args.no_sqlite:
            bench.backend("sqlite", str(work / "fleet.db"))
        if args.pg:
            _require_empty(args.pg)
            bench.backend("postgresql", args.pg)
        elif not args.no_pg:
            bench.backend("postgresql", stack.enter_context(private_postgres(work / "pg")))
        bench.table()
        if bench.profile_dir:
            print(f"profiles: {bench.profile_dir} (python -m pstats FILE)")


# --- execution nodes on the lab ----------------------------------------------------------------------


def _site_inventory(lab_inventory: Path, target: Path, nodes: list[str]) -> Path:
    """The lab's inventory with its Linux hosts shared out over `nodes` (none: the controller alone)."""
    import yaml

    shutil.copytree(lab_inventory, target)
    for f in (target / "group_vars").glob("site_*.yml"):
        f.unlink()
    hosts_file = target / "hosts.yml"
    data = yaml.safe_load(hosts_file.read_text())
    children = data["all"]["children"]
    old_sites = [k for k in children if k.startswith("site_")]
    members = [h for k in old_sites for h in children.pop(k)["hosts"]]
    for i, node in enumerate(nodes):
        children[f"site_{i + 1}"] = {"hosts": {h: None for h in members[i :: len(nodes)]}}
        (target / "group_vars" / f"site_{i + 1}.yml").write_text(
            yaml.safe_dump({"recovery_site": f"site_{i + 1}", "recovery_execution_node": node})
        )
    hosts_file.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def nodes_part(args: argparse.Namespace) -> None:
    from orchestrator_lab import LabConfig, down, free_net, up

    counts = sorted(set(args.nodes))
    work = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    lab = work / "lab"
    db = work / "nodes.db"
    env = {**os.environ, "ORCHESTRATOR_DB": str(db), "ORCHESTRATOR_OPERATOR": OPERATOR}
    net = args.net or free_net()
    print(f"lab: {args.hosts} hosts and {max(counts)} execution nodes in {lab} ({net})", flush=True)
    up(LabConfig(dir=lab, hosts=args.hosts, nodes=max(counts), seed=args.seed, net=net, infected=0.0))
    try:
        node_names = sorted(h["name"] for h in json.loads((lab / "manifest.json").read_text())["hosts"]
                            if h["group"] == "execution_node")  # fmt: skip
        inventories = {
            n: _site_inventory(lab / "inventory", work / f"inventory-{n}", node_names[:n])
            for n in [0, *counts]
        }
        base = str(inventories[0])
        for step in (("triage", "-i", base, "--timeout", "15"), ("plan", "-i", base), ("plan", "approve")):
            subprocess.run([str(BIN / "orchestrator"), *step], env=env, capture_output=True, check=False)
        store = Store.open(str(db))
        with store.read() as session:
            view = load_approved_plan(session)
            scheduled = [m for m in view.members if m.wave is not None]
        verify = sorted(m.host_name for m in scheduled if m.action in ("verify", "protected"))
        parked = sorted(m.host_name for m in scheduled if m.host_name not in verify)
        if not verify:
            raise SystemExit("no host on the verify path: the lab's triage found nothing clean")

        def position() -> None:
            with store.write() as session:
                for row in session.exec(select(Host).where(col(Host.name).in_(verify + parked))):
                    done = row.name not in verify
                    row.state, row.stage = ("recovered", "reconnect") if done else ("validated", "validate")
                    row.version += 1
                    session.add(row)

        def once(n: int) -> tuple[float, float]:
            position()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            result = subprocess.run(
                [str(BIN / "orchestrator"), "run", "-i", str(inventories[n]), "--all", "--yes",
                 "--forks", str(args.forks), "--runs-dir", str(work / "runs"), "--json"],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if result.returncode != 0:
                raise SystemExit(f"orchestrator run ({n} nodes) failed: {result.stderr[-2000:]}")
            return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

        print(f"{len(verify)} hosts on the verify path (harden, reconnect); forks {args.forks}; "
              f"{args.rounds} rounds", flush=True)  # fmt: skip
        once(0)  # warm-up
        figures: dict[int, list[tuple[float, float]]] = {n: [] for n in inventories}
        for r in range(args.rounds):
            for n in inventories:
                figures[n].append(once(n))
                wall, cpu = figures[n][-1]
                print(
                    f"round {r + 1}: {n} node(s): {wall:.2f} s wall, controller CPU {cpu:.2f} s", flush=True
                )
        stages = 2 * len(verify)
        alone = statistics.median(w for w, _ in figures[0])
        print(
            f"\n{'nodes':>5}  {'wall s':>7}  {'vs alone':>8}  {'controller CPU s':>16}  {'CPU ms per host-stage':>21}"
        )
        for n, values in figures.items():
            wall = statistics.median(w for w, _ in values)
            cpu = statistics.median(c for _, c in values)
            print(f"{n:>5}  {wall:>7.2f}  {wall / alone:>8.2f}  {cpu:>16.2f}  {1000 * cpu / stages:>21.0f}")
        load = os.getloadavg()[0]
        print(f"\nload average {load:.1f} on {os.cpu_count()} CPUs. Here the nodes share this machine's CPUs with "
              "the controller, so wall time shows the protocol's cost, not a speed-up; the controller CPU is "
              "what a node takes off the controller (a node's own work runs under its sshd, not counted).")  # fmt: skip
    finally:
        down(lab)
        shutil.rmtree(work, ignore_errors=True)


def _sigint_as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = parser.add_subparsers(dest="part", required=True)
    fleet = parts.add_parser(
        "fleet",
        help="a simulated regional group through inventory sync, triage, plan and status",
        description="A simulated regional group through inventory sync, a recorded triage, plan and "
        "status, each CLI step a new process, on SQLite and PostgreSQL.",
    )
    fleet.add_argument("--hosts", type=int, default=4_000, help="fleet size, in sites of 2,000 hosts")
    fleet.add_argument("--seed", type=int, default=1)
    fleet.add_argument("--repeat", type=int, default=3, help="runs of each status step (median)")
    pg = fleet.add_mutually_exclusive_group()
    pg.add_argument("--pg", metavar="URL", help="an empty PostgreSQL database (default: a private server)")
    pg.add_argument("--no-pg", action="store_true", help="SQLite only")
    fleet.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    fleet.add_argument(
        "--no-first-connection",
        action="store_true",
        help="skip `triage: first connection` and the interrupted triage's SIGINT to exit",
    )
    fleet.add_argument("--workdir", type=Path, help="a new directory to keep the fleet and databases in")
    fleet.add_argument("--profile", action="store_true", help="cProfile each CLI step (in WORKDIR/profiles)")
    fleet.set_defaults(run=fleet_part)
    nodes = parts.add_parser(
        "nodes",
        help="one stage's wall time and controller CPU with N execution nodes vs the controller alone",
        description="A lab of M hosts and up to N execution nodes (lab hosts): the verify path's harden "
        "and reconnect stages through `orchestrator run`, with the hosts shared out over 0 (the controller "
        "alone), 1, 2, ... nodes, alternately, in one run.",
    )
    nodes.add_argument("--hosts", type=int, default=40, help="Linux lab hosts (M)")
    nodes.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4], help="node counts to compare (N)")
    nodes.add_argument("--rounds", type=int, default=3)
    nodes.add_argument("--forks", type=int, default=50)
    nodes.add_argument("--seed", type=int, default=31)
    nodes.add_argument("--net", help="loopback network for the lab (default: a free 127.N.0.0/16)")
    nodes.set_defaults(run=nodes_part)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
