"""How fast triage checks Linux hosts, against OpenSSH in parallel and `ansible -m shell` in the same run.

Brings up the local lab (real sshd hosts on loopback), renders the Linux check script once, then for
N = 50 and N = 200 reachable hosts runs, each as its own process so its peak memory is measured:

- ours: `orchestrator.triage.run` (paramiko thread pool, one connection and one exec per host, the
  results stored in SQLite), timed from the first connection to the last stored result;
- OpenSSH: `xargs -P FORKS` running `ssh -o KexAlgorithms=curve25519-sha256 HOST <script>`;
- Ansible: `ansible all -m shell -a <script> -f FORKS`;

checks that every host's output reached its last line, and prints hosts/s and the ratios. A last run
checks 2,000 hosts (the lab's hosts, each entered ten times under another name) for the peak memory
figure. Goals: >= 0.9 x parallel OpenSSH, >= 8 x ansible -m shell, < 300 MB for 2,000 hosts.

    .venv/bin/python bench/triage.py                   # 200-host lab in a temporary directory
    .venv/bin/python bench/triage.py --dir /tmp/benchlab --keep --skip-ansible
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import orchestrator_lab as lab_lib
from orchestrator import inventory as inventory_lib
from orchestrator import triage
from orchestrator.store import Store
from orchestrator.triage import packs, scripts

FAULTS = ("sshd_down", "sshd_stopped", "hostkey_changed")
GOALS = {"ssh": 0.9, "ansible": 8.0}
MEMORY_GOAL_MB = 300


def _reachable(manifest: dict, count: int) -> list[dict]:
    hosts = [h for h in manifest["hosts"] if h["os"] == "linux" and h["scenario"]["kind"] not in FAULTS]
    if len(hosts) < count:
        raise SystemExit(f"the lab has {len(hosts)} reachable Linux hosts, fewer than {count}")
    return hosts[:count]


def _child(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS of the process in MB, stdout) of one child process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode not in (0, 1, 2, 4):
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {err.read().strip()[:500]}")
        return wall, usage.ru_maxrss / 1024, out.read()


def worker(args: argparse.Namespace) -> None:
    """Child mode: one triage run of the selected hosts, timed inside the process."""
    inv = inventory_lib.load([args.inventory])
    names = args.names.split(",")
    hosts = [inv.hosts[n] for n in names]
    if args.repeat > 1:
        hosts = [replace(h, name=f"{h.name}-{i}") for i in range(args.repeat) for h in hosts]
    loaded = packs.load()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(str(Path(tmp) / "bench.db"))
        started = time.monotonic()
        outcome = triage.run(store, "bench", hosts, loaded, triage.Settings(forks=args.forks, timeout=60))
        elapsed = time.monotonic() - started
        store.close()
    print(json.dumps({"elapsed": elapsed, "counts": outcome.counts, "hosts": len(hosts)}))


def run_ours(inventory: Path, hosts: list[dict], forks: int, repeat: int = 1) -> dict:
    names = ",".join(h["name"] for h in hosts)
    argv = [sys.executable, __file__, "--worker", "--inventory", str(inventory), "--names", names]
    argv += ["--forks", str(forks), "--repeat", str(repeat)]
    wall, peak, out = _child(argv)
    data = json.loads(out)
    checked = len(hosts) * repeat
    failed = data["counts"]["unreachable"] + data["counts"]["error"]
    return {
        "seconds": data["elapsed"],
        "wall": wall,
        "peak_mb": peak,
        "ok": checked - failed,
        "n": checked,
    }


def run_ssh(lab_dir: Path, hosts: list[dict], script: str, forks: int, out_dir: Path) -> dict:
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    ssh = (
        f"exec ssh -o BatchMode=yes -o KexAlgorithms=curve25519-sha256 -o StrictHostKeyChecking=yes "
        f"-o UserKnownHostsFile={lab_dir / 'known_hosts'} -i {lab_dir / 'id_ed25519'} "
        f'root@"$1" "$2" > "$3/$1"'
    )
    argv = ["xargs", "-P", str(forks), "-I{}", "sh", "-c", ssh, "_", "{}", script, str(out_dir)]
    started = time.monotonic()
    proc = subprocess.run(
        argv, input="\n".join(h["address"] for h in hosts) + "\n", text=True, capture_output=True
    )
    seconds = time.monotonic() - started
    ok = sum(
        1
        for h in hosts
        if (out_dir / h["address"]).exists() and " DONE" in (out_dir / h["address"]).read_text()
    )
    if proc.returncode not in (0, 123):
        raise SystemExit(f"xargs/ssh failed: {proc.stderr[:500]}")
    return {"seconds": seconds, "wall": seconds, "peak_mb": None, "ok": ok, "n": len(hosts)}


def run_ansible(inventory: Path, hosts: list[dict], script: str, forks: int) -> dict:
    ansible = Path(sys.executable).with_name("ansible")
    argv = [str(ansible), "all", "-i", str(inventory), "-l", ",".join(h["name"] for h in hosts)]
    argv += ["-m", "shell", "-a", script, "-f", str(forks), "-o"]
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
    }
    wall, peak, out = _child(argv, env)
    ok = out.count(" DONE")
    return {"seconds": wall, "wall": wall, "peak_mb": peak, "ok": ok, "n": len(hosts)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, help="lab directory (default: a temporary one)")
    parser.add_argument("--hosts", type=int, default=200, help="reachable Linux hosts for the large run")
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--net", help="lab network (default: a free 127.N.0.0/16)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("--skip-ansible", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inventory", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    lab_dir = (args.dir or Path(tempfile.mkdtemp(prefix="triage-bench-"))).absolute()
    args.net = args.net or lab_lib.free_net()
    size = args.hosts + max(3, args.hosts // 10)  # room for the fault scenarios, which are left out
    print(f"lab: {size} hosts in {lab_dir} ({args.net})", flush=True)
    started = time.monotonic()
    manifest = lab_lib.up(lab_lib.LabConfig(dir=lab_dir, hosts=size, windows=0, seed=4, net=args.net))
    print(f"lab up in {time.monotonic() - started:.0f}s", flush=True)
    inventory = lab_dir / "inventory"
    script = scripts.render("linux", packs.checks_for(packs.load(), "linux")).text
    out_dir = Path(tempfile.mkdtemp(prefix="triage-bench-out-"))
    try:
        rows = []
        run_ours(inventory, _reachable(manifest, 10), args.forks)  # warm caches on both sides
        for n in (50, args.hosts):
            hosts = _reachable(manifest, n)
            ours = min((run_ours(inventory, hosts, args.forks) for _ in range(2)), key=lambda r: r["seconds"])
            ssh = min(
                (run_ssh(lab_dir, hosts, script, args.forks, out_dir) for _ in range(2)),
                key=lambda r: r["seconds"],
            )
            rows.append((n, "ours (paramiko)", ours))
            rows.append((n, "OpenSSH xargs -P", ssh))
            if not args.skip_ansible:
                rows.append((n, "ansible -m shell", run_ansible(inventory, hosts, script, args.forks)))
        print(f"\n{'N':>5}  {'method':<18} {'hosts/s':>8} {'seconds':>8} {'all ok':>7} {'peak MB':>8}")
        rates: dict[tuple[int, str], float] = {}
        for n, name, r in rows:
            rate = r["n"] / r["seconds"]
            rates[(n, name)] = rate
            peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] else "-"
            print(f"{n:>5}  {name:<18} {rate:>8.1f} {r['seconds']:>8.2f} {r['ok'] == r['n']!s:>7} {peak:>8}")
        print()
        for n in (50, args.hosts):
            ours = rates[(n, "ours (paramiko)")]
            vs_ssh = ours / rates[(n, "OpenSSH xargs -P")]
            verdict = "ok" if vs_ssh >= GOALS["ssh"] else "BELOW GOAL"
            print(f"N={n}: ours / parallel OpenSSH = {vs_ssh:.2f}x (goal >= {GOALS['ssh']}x: {verdict})")
            if (n, "ansible -m shell") in rates:
                vs_ansible = ours / rates[(n, "ansible -m shell")]
                verdict = "ok" if vs_ansible >= GOALS["ansible"] else "BELOW GOAL"
                print(
                    f"N={n}: ours / ansible -m shell = {vs_ansible:.1f}x (goal >= {GOALS['ansible']}x: {verdict})"
                )
        if not args.skip_memory:
            hosts = _reachable(manifest, args.hosts)
            repeat = -(-2000 // len(hosts))
            big = run_ours(inventory, hosts, args.forks, repeat=repeat)
            verdict = "ok" if big["peak_mb"] < MEMORY_GOAL_MB else "ABOVE GOAL"
            print(
                f"{big['n']} hosts ({len(hosts)} lab hosts x {repeat}): peak {big['peak_mb']:.0f} MB "
                f"(goal < {MEMORY_GOAL_MB} MB: {verdict}), {big['n'] / big['seconds']:.1f} hosts/s"
            )
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
        if not args.keep:
            lab_lib.down(lab_dir)


if __name__ == "__main__":
    main()
