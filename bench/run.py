"""The orchestrator's overhead on a stage: the same stage playbooks on the same lab hosts, through
`orchestrator run` and through plain `ansible-playbook`, alternately, in one run.

A lab of N hosts is brought up (its own directory and loopback network), triaged, planned and
approved; the verify-path hosts are then put at "validated" in the database before each
`orchestrator run --all`, so each run is exactly the harden and reconnect stages on those hosts (both
idempotent: every round does the same work). The baseline runs `ansible-playbook harden.yml` then
`reconnect.yml` with the same ansible.cfg, as the orchestrator runs them: harden on every wave at once
(waves overlap), one playbook run per wave, then reconnect level by level of the dependencies among
those hosts (a host reconnects only after what it depends on).
(The orchestrator also splits a wave's hosts by kind, path and methods: at most that many more runs.)
It also prints plain Ansible's least, each stage once over every host, for what the per-wave runs
cost. Everything the orchestrator adds is in its figure: start-up, the approved plan's check,
inventory loading, the state and StageRun commits before each playbook, ansible-runner and its
events, the batched event writer, the audit rows.

    .venv/bin/python bench/run.py                   # 20 hosts, 3 rounds
    .venv/bin/python bench/run.py --hosts 40 --rounds 5

Goal: overhead under 10% (ratio orchestrator / ansible-playbook under 1.10).
"""

from __future__ import annotations

import argparse
import graphlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import col, select  # noqa: E402

from orchestrator import inventory  # noqa: E402
from orchestrator.planning.store import load_approved_plan  # noqa: E402
from orchestrator.store import Store  # noqa: E402
from orchestrator.store.models import Host  # noqa: E402
from orchestrator_lab import LabConfig, down, up  # noqa: E402

BIN = Path(sys.executable).parent
PLAYBOOKS = ROOT / "playbooks"
STAGES = ("harden", "reconnect")


def sh(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=False, capture_output=True, text=True, **kwargs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--net", default="127.96.0.0/16")
    parser.add_argument("--dir", type=Path, default=None, help="lab directory (default: a temporary one)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-run-"))
    lab = (args.dir or work / "lab").absolute()
    db = work / "bench.db"
    env = {**os.environ, "ORCHESTRATOR_DB": str(db), "ORCHESTRATOR_OPERATOR": "bench"}
    orchestrator = str(BIN / "orchestrator")
    print(f"lab: {args.hosts} hosts in {lab} ({args.net})", flush=True)
    up(LabConfig(dir=lab, hosts=args.hosts, seed=31, net=args.net, infected=0.0))
    try:
        inv = str(lab / "inventory")
        sh(orchestrator, "triage", "-i", inv, "--timeout", "15", env=env)
        for step in (("plan", "-i", inv), ("plan", "approve")):
            result = sh(orchestrator, *step, env=env)
            if result.returncode != 0:
                print(result.stdout + result.stderr, file=sys.stderr)
                return 2
        store = Store.open(str(db))
        with store.read() as session:
            view = load_approved_plan(session)
            scheduled = [m for m in view.members if m.wave is not None]
            hosts = sorted(m.host_name for m in scheduled if m.action in ("verify", "protected"))
            others = sorted(m.host_name for m in scheduled if m.host_name not in hosts)
            waves = sorted({m.wave for m in scheduled if m.host_name in hosts})
            by_wave = {
                w: sorted(m.host_name for m in scheduled if m.wave == w and m.host_name in hosts)
                for w in waves
            }
        print(
            f"{len(hosts)} hosts on the verify path in {len(waves)} wave(s); stages: {', '.join(STAGES)}; "
            f"forks {args.forks}",
            flush=True,
        )

        def position() -> None:
            """The verify hosts before harden; any rebuild host (a look-alike the triage doubted)
            parked as recovered, so the run is exactly the two stages on the same hosts."""
            with store.write() as session:
                for row in session.exec(select(Host).where(col(Host.name).in_(hosts + others))):
                    done = row.name not in hosts
                    row.state, row.stage = ("recovered", "reconnect") if done else ("validated", "validate")
                    session.add(row)

        def through_orchestrator() -> float:
            position()
            started = time.perf_counter()
            result = sh(orchestrator, "run", "-i", inv, "--all", "--yes", "--forks", str(args.forks),
                        "--runs-dir", str(work / "runs"), "--json", env=env)  # fmt: skip
            elapsed = time.perf_counter() - started
            if result.returncode != 0:
                raise SystemExit(f"orchestrator run failed: {result.stderr[-2000:]}")
            return elapsed

        playbook_env = {
            **env,
            "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
        }

        # A host reconnects only after the hosts it depends on (the orchestrator waits for them), so
        # by hand too: reconnect level by level of the dependencies among these hosts.
        deps = {
            h.name: [d for d in h.depends_on_hosts if d in hosts]
            for h in inventory.load([inv]).hosts.values()
        }
        level: dict[str, int] = {}
        for name in graphlib.TopologicalSorter({h: deps.get(h, []) for h in hosts}).static_order():
            level[name] = 1 + max((level[d] for d in deps.get(name, [])), default=-1)
        levels = [
            sorted(h for h in hosts if level[h] == n) for n in range(max(level.values(), default=-1) + 1)
        ]

        def stages_on(name: str, members: list[str], stages: tuple[str, ...] = STAGES) -> None:
            limit = work / f"limit-{name}"
            limit.write_text("".join(f"{h}\n" for h in members))
            for stage in stages:
                result = sh(str(BIN / "ansible-playbook"), "-i", inv, "--limit", f"@{limit}", "--forks",
                            str(min(args.forks, len(members))), str(PLAYBOOKS / f"{stage}.yml"), cwd=PLAYBOOKS,
                            env=playbook_env)  # fmt: skip
                if result.returncode != 0:
                    raise SystemExit(f"ansible-playbook {stage} failed: {result.stdout[-2000:]}")

        def through_ansible() -> float:
            """What the orchestrator runs, by hand: every wave at once (waves overlap), each running its
            stages one after another on its own hosts."""
            started = time.perf_counter()
            with ThreadPoolExecutor(len(by_wave)) as pool:
                list(pool.map(lambda item: stages_on(f"w{item[0]}", item[1], STAGES[:-1]), by_wave.items()))
            for n, members in enumerate(levels):
                stages_on(f"level{n}", members, STAGES[-1:])
            return time.perf_counter() - started

        def all_at_once() -> float:
            """Plain Ansible's least: each stage once over every host, dependencies ignored."""
            started = time.perf_counter()
            stages_on("all", hosts)
            return time.perf_counter() - started

        through_ansible()  # warm-up: caches, first SSH connections
        ours, theirs, plain = [], [], []
        for n in range(args.rounds):
            theirs.append(through_ansible())
            ours.append(through_orchestrator())
            plain.append(all_at_once())
            print(
                f"round {n + 1}: ansible-playbook in dependency order {theirs[-1]:.2f} s, orchestrator run {ours[-1]:.2f} s, "
                f"ansible-playbook over every host {plain[-1]:.2f} s",
                flush=True,
            )
        a, o, p = statistics.median(theirs), statistics.median(ours), statistics.median(plain)
        print(
            f"\nmedian: ansible-playbook in dependency order {a:.2f} s, orchestrator run {o:.2f} s, over every host {p:.2f} s"
        )
        print(
            f"ratio orchestrator / ansible-playbook in dependency order: {o / a:.3f} (overhead {100 * (o / a - 1):+.1f}%; "
            f"goal < 10%); / ansible-playbook over every host: {o / p:.3f}"
        )
        print(f"per host and stage: ansible {1000 * a / len(hosts) / len(STAGES):.0f} ms, "
              f"orchestrator {1000 * o / len(hosts) / len(STAGES):.0f} ms")  # fmt: skip
        return 0
    finally:
        down(lab)


if __name__ == "__main__":
    sys.exit(main())
