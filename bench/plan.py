"""How fast the planner plans, and how close its plans come to the best possible.

Two fleets:
- the hospital (`inventory/hospital`, 1,850 hosts) with a seeded random triage: 30% infected, 10%
  suspicious, 2% of workstations unreachable (switched off), the rest clean;
- a synthetic regional group of 20,000 hosts (ten hospitals of 2,000 under one forest root, the
  hospital's shape: each hospital's services depend on its own domain controllers, its workstations on
  its own EHR and print servers), Host objects built directly, same triage mix.

For each fleet and set of limits it prints the planning time (`planning.build`: the median of several
runs; the inventory is loaded once beforehand), against a baseline measured in the same run (graphlib
ordering the same dependency graph, the least any planner must do) and against the goal (hospital
under 1 s, 20,000 hosts under 10 s); and the plan's estimated makespan (when the last host
reconnects, as the engine runs it: containment first, then the engine's own pipeline,
`lifecycle.pipeline`, driven on simulated time: waves overlapping up to the limits, each host holding
its units from its first stage to reconnect, on the default --forks workers, reconnection after the
dependencies) against the capacity-only lower bound (each resource's work over its limit, the whole
work over the forks, and the longest chain of own work then reconnection after the dependencies;
goal: within 10% on the hospital), beside the bound under the engine's rules (containment first,
then the work after it over the forks, each resource's work over its limit, the reconnection chains)
and what binds it: the gap between the two bounds is what containment first costs, the rest is the
planner's.

    .venv/bin/python bench/plan.py
    .venv/bin/python bench/plan.py --seeds 1 2 3 4 5 --repeat 5
"""

from __future__ import annotations

import argparse
import graphlib
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator import inventory  # noqa: E402
from orchestrator.inventory import Host  # noqa: E402
from orchestrator.planning import Limits, Verdict, build, durations  # noqa: E402

HOSPITAL_LIMITS = {
    "unlimited": Limits(),
    "--max-wave-size 100 --capacity image-server=40": Limits(100, {"image-server": 40}),
    "--max-wave-size 150 --capacity image-server=60 --capacity site:north=25 --capacity restores=30": Limits(
        150, {"image-server": 60, "site:north": 25, "restores": 30}
    ),
}
SYNTHETIC_LIMITS = {
    "unlimited": Limits(),
    "--max-wave-size 1000 --capacity image-server=300 --capacity restores=100": Limits(
        1000, {"image-server": 300, "restores": 100}
    ),
}


def triage(hosts: list[Host], seed: int) -> dict[str, Verdict]:
    rng = random.Random(seed)
    verdicts = {}
    for h in sorted(hosts, key=lambda h: h.name):
        r = rng.random()
        verdict = "infected" if r < 0.3 else "suspicious" if r < 0.4 else "clean"
        if h.role == "workstation" and rng.random() < 0.02:
            verdict = "unreachable"
        verdicts[h.name] = Verdict(verdict, "seeded" if verdict != "clean" else None)
    return verdicts


def _host(
    name: str,
    tier: int,
    priority: int,
    deps: list[str],
    site: str,
    *,
    role: str = "server",
    os: str = "linux",
    protected: bool = False,
) -> Host:
    return Host(
        name=name,
        address=name,
        port=None,
        user=None,
        connection="winrm" if os == "windows" else "ssh",
        os=os,
        tier=tier,
        role=role,
        depends_on=[],
        depends_on_hosts=deps,
        protected=protected,
        site=site,
        reimage_method="vsphere" if os == "windows" and role == "server" else "pxe",
        restore_method="none" if role == "workstation" else "restic",
        priority=priority,
        groups=[],
        data_categories=[],
        execution_node=None,
    )


# group: (hosts per hospital, tier, priority, os, depends on groups of the same hospital, protected)
SERVER_GROUPS = {
    "dc": (4, 0, 10, "windows", ["root"], False),
    "dns": (4, 0, 20, "linux", ["dc"], False),
    "pki": (2, 0, 30, "windows", ["dc"], False),
    "bkp": (5, 0, 5, "linux", [], True),
    "ehrdb": (4, 1, 10, "linux", ["dc", "dns"], False),
    "ehrapp": (12, 1, 20, "linux", ["ehrdb"], False),
    "pacs": (10, 1, 30, "linux", ["dc", "dns"], False),
    "lis": (6, 1, 40, "linux", ["ehrdb"], False),
    "pharm": (5, 1, 50, "windows", ["ehrapp"], False),
    "ris": (6, 1, 60, "windows", ["pacs"], False),
    "fs": (16, 2, 10, "windows", ["dc"], False),
    "mail": (4, 2, 20, "windows", ["dc", "dns"], False),
    "bill": (10, 2, 30, "windows", ["dc", "ehrdb"], False),
    "prn": (10, 2, 60, "windows", ["dc"], False),
    "app": (202, 2, 80, "linux", ["dc", "dns"], False),
}
WORKSTATION_GROUPS = {
    "wsemerg": (200, 10, ["ehrapp", "prn"]),
    "wssurg": (250, 20, ["ehrapp", "pacs", "prn"]),
    "wsrad": (150, 30, ["pacs", "ris"]),
    "wsward": (600, 40, ["ehrapp", "prn"]),
    "wsadmin": (500, 50, ["fs", "bill", "mail"]),
}


def synthetic(
    hospitals: int = 10,
    servers: dict[str, tuple[int, int, int, str, list[str], bool]] = SERVER_GROUPS,
    workstations: dict[str, tuple[int, int, list[str]]] = WORKSTATION_GROUPS,
) -> list[Host]:
    """A regional group: `hospitals` hospitals of 2,000 hosts each (plus a 3-host forest root); other
    group sizes give other shapes (bench/scale.py's 90% workstations)."""
    hosts = [_host(f"root-dc{i}", 0, 1, [], "core", os="windows") for i in range(3)]
    root = [h.name for h in hosts]
    for k in range(hospitals):
        site = f"h{k:02d}"
        members: dict[str, list[str]] = {"root": root}
        for group, (count, tier, priority, os, deps, protected) in servers.items():
            names = [f"{group}-{site}-{i:03d}" for i in range(count)]
            dep_hosts = [d for g in deps for d in members[g]]
            hosts += [_host(n, tier, priority, dep_hosts, site, os=os, protected=protected) for n in names]
            members[group] = names
        for group, (count, priority, deps) in workstations.items():
            dep_hosts = [d for g in deps for d in members[g]]
            hosts += [
                _host(
                    f"{group}-{site}-{i:04d}", 3, priority, dep_hosts, site, role="workstation", os="windows"
                )
                for i in range(count)
            ]
    return hosts


def _median_time(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall-clock and CPU seconds: on a shared machine the CPU time is the steadier figure."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _h(seconds: float) -> str:
    return f"{seconds / 3600:6.2f} h"


def run(
    label: str, hosts: list[Host], limits: dict[str, Limits], seeds: list[int], repeat: int, goal_s: float
) -> list[float]:
    stage_durations = durations.load()
    graph = {h.name: h.depends_on_hosts for h in hosts}
    baseline, baseline_cpu = _median_time(
        lambda: list(graphlib.TopologicalSorter(graph).static_order()), repeat
    )
    edges = sum(len(d) for d in graph.values())
    print(f"\n== {label}: {len(hosts)} hosts, {edges} dependency links")
    print(
        f"   baseline (graphlib static_order of the same graph): {baseline * 1000:.0f} ms "
        f"(cpu {baseline_cpu * 1000:.0f} ms)"
    )
    ratios = []  # estimate / capacity-only bound
    for name, lim in limits.items():
        for seed in seeds:
            verdicts = triage(hosts, seed)
            draft = build(hosts, verdicts, lim, stage_durations)
            elapsed, cpu = _median_time(lambda: build(hosts, verdicts, lim, stage_durations), repeat)  # noqa: B023
            b = draft.bounds
            ratio = draft.estimated_s / b.unordered_s
            ratios.append(ratio)
            counts = draft.counts()
            tier = b.tiers[0]
            print(
                f"   [{name}] seed {seed}: plan {elapsed * 1000:6.0f} ms (cpu {cpu * 1000:.0f} ms; "
                f"x{cpu / baseline_cpu:.1f} baseline cpu, {elapsed / goal_s * 100:.0f}% of the {goal_s:.0f} s goal); "
                f"{len(draft.waves)} waves; makespan {_h(draft.estimated_s)} vs capacity-only bound {_h(b.unordered_s)} "
                f"= x{ratio:.3f} ({b.unordered_binding}); under the engine's rules >= {_h(b.lower_bound_s)} "
                f"(x{draft.estimated_s / b.lower_bound_s:.3f}: containment {_h(b.containment_s)} first, then "
                f"{_h(tier.bound_s)} bound by {tier.binding}); "
                f"{counts['rebuild']} rebuild, {counts['verify']} verify, {counts['protected']} protected, {counts['hold']} hold"
            )
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per case (median)")
    args = parser.parse_args()

    start = time.perf_counter()
    hospital = list(inventory.load([str(ROOT / "inventory" / "hospital")]).hosts.values())
    print(
        f"hospital inventory loaded by Ansible in {time.perf_counter() - start:.2f} s (not part of planning)"
    )
    ratios = run("hospital", hospital, HOSPITAL_LIMITS, args.seeds, args.repeat, goal_s=1.0)
    start = time.perf_counter()
    fleet = synthetic()
    print(f"\nsynthetic fleet built in {time.perf_counter() - start:.2f} s")
    run("synthetic regional group", fleet, SYNTHETIC_LIMITS, args.seeds[:1], args.repeat, goal_s=10.0)
    worst = max(ratios)
    print(
        f"\nhospital: worst makespan / capacity-only bound = x{worst:.3f} (goal <= x1.10): "
        f"{'ok' if worst <= 1.10 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
