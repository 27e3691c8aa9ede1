"""How long `orchestrator lab up` takes and how much memory a running lab holds, at 50 and 200 hosts.

Goals (issue 3): 200 hosts up in under 60 s, under 2 GiB. For each size this measures:
- wall time of `up`, per stage (images, hosts and their restic backups, sshd answering) and in all;
- CPU time of `up`: its own and its children's (restic, unshare, the launcher);
- memory of the running lab: the sum of RSS of its processes (what the issue asks for; it counts each
  shared library once per process, so it overstates) and the sum of PSS (shared pages divided among
  the processes that share them: what the lab really costs), and the drop in the machine's MemAvailable;
- wall time of `down`.
The smallest size is the baseline: the ratio of time per host against it shows how `up` scales. The
load average is printed first: wall times on a busy machine are longer, CPU times are not.

    .venv/bin/python bench/lab.py                 # 50 and 200 hosts (as root)
    .venv/bin/python bench/lab.py --sizes 12 50 --net-base 60 --windows 2
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import orchestrator_lab as lab
from orchestrator_lab import processes
from orchestrator_lab.settings import LabPaths

GOAL_S = 60.0
GOAL_BYTES = 2 * 1024**3


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem_available() -> int:
    return _kib("/proc/meminfo", "MemAvailable") * 1024


def lab_memory(directory: Path) -> tuple[int, int, int]:
    """(processes, sum of RSS, sum of PSS) of every process of the lab's hosts and stand-ins."""
    paths = LabPaths(directory)
    pids = set(processes.namespace_processes(paths.hosts))
    pids |= set(processes.processes_with_argument(str(paths.windows) + "/"))
    rss = sum(_kib(f"/proc/{pid}/status", "VmRSS") for pid in pids) * 1024
    pss = sum(_kib(f"/proc/{pid}/smaps_rollup", "Pss") for pid in pids) * 1024
    return len(pids), rss, pss


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(size: int, windows: int, net: str, workdir: Path) -> dict[str, float]:
    directory = workdir / f"lab-{size}"
    stages: dict[str, float] = {}
    start = time.monotonic()

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            stages[stage] = time.monotonic() - start

    available = mem_available()
    cpu = cpu_seconds()
    lab.up(lab.LabConfig(dir=directory, hosts=size, windows=windows, seed=42, net=net), progress=progress)
    wall = time.monotonic() - start
    cpu = cpu_seconds() - cpu
    time.sleep(1.0)  # let the kernel settle the page counts
    count, rss, pss = lab_memory(directory)
    used = available - mem_available()
    down_start = time.monotonic()
    lab.down(directory)
    down = time.monotonic() - down_start
    left = lab.leftovers(directory)
    if left["processes"] or left["mounts"] or left["dir_exists"]:
        raise SystemExit(f"lab down left something behind: {left}")
    return {
        "hosts": size + windows,
        "wall": wall,
        "cpu": cpu,
        "processes": count,
        "rss": rss,
        "pss": pss,
        "memavailable_drop": used,
        "down": down,
        **{f"stage_{k}": v for k, v in stages.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--windows", type=int, default=0, help="Windows stand-ins added to each lab")
    parser.add_argument(
        "--net-base",
        type=int,
        default=0,
        help="second octet N of the first lab's 127.N.0.0/16 (default: a free one)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the lab needs root (see 'orchestrator lab up --help')", file=sys.stderr)
        return 2
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPU(s)"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        for i, size in enumerate(args.sizes):
            net = f"127.{args.net_base + i}.0.0/16" if args.net_base else lab.free_net()
            r = measure(size, args.windows, net, Path(tmp))
            results.append(r)
            stages = ", ".join(f"{k[6:]} at {v:.1f} s" for k, v in r.items() if k.startswith("stage_"))
            print(
                f"{r['hosts']:>4} hosts: up {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU ({stages}); "
                f"{r['processes']} processes: RSS sum {r['rss'] / 2**20:.0f} MiB, PSS sum {r['pss'] / 2**20:.0f} MiB, "
                f"MemAvailable {-r['memavailable_drop'] / 2**20:+.0f} MiB (shared machine: noisy); down {r['down']:.1f} s"
            )
    base = results[0]
    for r in results[1:]:
        ratio = (r["wall"] / r["hosts"]) / (base["wall"] / base["hosts"])
        cpu_ratio = (r["cpu"] / r["hosts"]) / (base["cpu"] / base["hosts"])
        print(
            f"per host, {r['hosts']} vs {base['hosts']} hosts: wall x{ratio:.2f}, CPU x{cpu_ratio:.2f} "
            f"(1.00 = linear scaling)"
        )
    biggest = results[-1]
    ok_time = biggest["wall"] < GOAL_S
    ok_mem = biggest["rss"] < GOAL_BYTES
    print(
        f"goal at {biggest['hosts']} hosts: up < {GOAL_S:.0f} s: {'yes' if ok_time else 'NO'} "
        f"({biggest['wall']:.1f} s); memory < 2 GiB: {'yes' if ok_mem else 'NO'} "
        f"(RSS sum {biggest['rss'] / 2**30:.2f} GiB, PSS sum {biggest['pss'] / 2**30:.2f} GiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
