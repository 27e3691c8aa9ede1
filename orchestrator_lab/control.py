"""Bringing a lab up, reporting on it, reimaging one of its hosts, and taking it down without a trace.

`up` is idempotent (a second call with the same settings only restarts what died), `down` works from
the pid files and, should they be lost, from the lab's own mounts as every process of a host sees them,
and checks that nothing is left before removing the directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError, RefusedError
from orchestrator_lab import backups, images, inventory_files, keys, processes, scenarios, trees
from orchestrator_lab.blueprint import NODE_GROUP, HostPlan, LabPlan, draw, iso
from orchestrator_lab.ground_truth import VERSION, Manifest, host_entry, load_manifest, locked, save_manifest
from orchestrator_lab.hostdata import data_ops
from orchestrator_lab.launcher import SSHD
from orchestrator_lab.processes import ProcRef
from orchestrator_lab.settings import LabConfig, LabPaths
from orchestrator_lab.windows import hosts as windows

Progress = Callable[[str, int, int], None]
BUILD_WORKERS = 16  # restic spends most of each run waiting (~0.2 s), so more runs than cores overlap
START_TIMEOUT = 60.0

NOT_ROOT = (
    "the local lab needs root: each host is an sshd listening on its own 127.x.y.z address, port 22, "
    "inside its own mount, UTS and PID namespaces, with its directories bind-mounted (CAP_SYS_ADMIN and "
    "CAP_NET_BIND_SERVICE). Run it as root (sudo orchestrator lab up ...) or in a container or VM where "
    "you are root; a rootless lab would need unprivileged user namespaces and one port per host on "
    "127.0.0.1, which this lab does not implement."
)


def _quiet(stage: str, done: int, total: int) -> None:
    """No progress display (library use)."""


def require_environment() -> None:
    if os.geteuid() != 0:
        raise OrchestratorError(NOT_ROOT)
    if not os.access(SSHD, os.X_OK):
        raise OrchestratorError(f"the lab needs OpenSSH's server ({SSHD}): apt-get install openssh-server")
    backups.require_tools()


def free_net(first: int = 40, last: int = 250, rng: random.Random | None = None) -> str:
    """A 127.N.0.0/16 no lab seems to use (nothing answers on its first host addresses), for tests and
    benchmarks that run beside other labs. Starts at a random N so two callers rarely pick the same."""
    candidates = list(range(first, last + 1))
    start = (rng or random.Random()).randrange(len(candidates))
    for octet in candidates[start:] + candidates[:start]:
        probes = [(f"127.{octet}.0.{last_octet}", port) for last_octet in (11, 12) for port in (22, 5985)]
        if not any(processes.ports_open(probes, timeout=0.2)):
            return f"127.{octet}.0.0/16"
    raise OrchestratorError(f"no free 127.N.0.0/16 network for N in {first}..{last}")


# -- up -----------------------------------------------------------------------------------------------
def up(config: LabConfig, progress: Progress | None = None) -> Manifest:
    require_environment()
    report = progress or _quiet
    paths = LabPaths(config.dir)
    if not paths.marker.exists() and not paths.manifest.exists():
        clashes = [p.name for p in paths.owned() if p.exists() or p.is_symlink()]
        if clashes:  # `down` would remove them: never adopt a directory that is not a lab's
            raise OrchestratorError(
                f"{paths.root} is not a lab directory but already has {', '.join(clashes)}: "
                "choose a new or empty directory"
            )
    with locked(paths):
        if paths.manifest.exists():
            manifest = load_manifest(paths.root)
            if manifest.get("settings") != config.settings():
                raise OrchestratorError(
                    f"{paths.root} holds a lab with other settings ({manifest.get('settings')}): "
                    f"run 'orchestrator lab down --dir {paths.root}' first"
                )
            _ensure_running(paths, manifest, report)
            return manifest
        if paths.marker.exists():  # an `up` that never finished: start again from nothing
            _teardown(paths)
        try:
            return _create(config, paths, report)
        except BaseException:
            _stop_everything(paths)
            raise


def _create(config: LabConfig, paths: LabPaths, report: Progress) -> Manifest:
    plan = draw(config, datetime.now(UTC).replace(microsecond=0))
    linux = [h for h in plan.hosts if h.os == "linux"]
    busy = [
        h
        for h, answers in zip(
            plan.hosts, processes.ports_open([(h.address, h.port) for h in plan.hosts]), strict=True
        )
        if answers
    ]
    if busy:
        raise OrchestratorError(
            f"{busy[0].address}:{busy[0].port} already answers ({len(busy)} address(es) in use): another "
            f"lab, or a server listening on 0.0.0.0, uses --net {config.net}; choose another --net"
        )
    paths.marker.write_text(json.dumps(config.settings()) + "\n")  # first: `down` can clean from here on
    for directory in (paths.hosts, paths.images, paths.pids, paths.logs, paths.ns):
        directory.mkdir(parents=True, exist_ok=True)
    provisioning_key = keys.write_keypair(paths.key, "orchestrator-lab")
    _log(paths, "up", settings=config.settings())

    groups = sorted({h.group for h in linux})
    for i, group in enumerate(groups):
        report("images", i, len(groups))
        images.build(paths.image(group), group, provisioning_key, plan.timeline.installed)
    report("images", len(groups), len(groups))

    repository = backups.Repository(paths, plan.backup_host)
    backup = next(h for h in linux if h.name == plan.backup_host)
    images.lay_down(paths.image(backup.group), paths.host(backup.name))
    repository.init()
    campaign = scenarios.campaign(plan.seed)
    built: dict[str, dict[str, Any]] = {}
    report("hosts", 0, len(linux))
    with ThreadPoolExecutor(max_workers=min(BUILD_WORKERS, len(linux))) as pool:
        futures = {pool.submit(_build_host, paths, plan, h, campaign, repository): h.name for h in linux}
        for future in as_completed(futures):
            built[futures[future]] = future.result()
            report("hosts", len(built), len(linux))
    keys.publish(paths.known_hosts, {h.address: built[h.name].pop("published_key") for h in linux})
    snapshots = _snapshots_by_host(repository, plan)

    entries = []
    for h in linux:
        entry = _entry(h, built[h.name]["scenario"])
        entry["snapshots"] = _snapshot_records(
            snapshots.get(h.name, []), entry["scenario"]["compromise_time"]
        )
        entries.append(entry)
    windows_hosts = [h for h in plan.hosts if h.os == "windows"]
    if windows_hosts:
        records = windows.create(paths, windows_hosts, plan.seed, iso(plan.timeline.infection))
        entries += [_entry(h, records[h.name]) for h in windows_hosts]
    manifest: Manifest = {
        "version": VERSION,
        "seed": plan.seed,
        "created_at": iso(plan.created_at),
        "net": plan.net,
        "infection_time": iso(plan.timeline.infection),
        "backup_host": plan.backup_host,
        "evidence_host": plan.evidence_host,
        "settings": config.settings(),
        "dir": str(paths.root),
        "campaign": campaign.to_dict(),
        "backups": plan.timeline.to_dict()["backups"],
        "hosts": entries,
    }
    _ensure_running(paths, manifest, report)
    inventory_files.write(paths, manifest, windows.USER if windows_hosts else None, _node_shares(paths))
    save_manifest(paths, manifest)
    return manifest


def _entry(host: HostPlan, scenario: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": host.address,
        "port": host.port,
        "os": host.os,
        "role": host.role,
        "tier": host.tier,
        "group": host.group,
        "image": host.image,
        "protected": host.protected,
        "pid": None,
        "scenario": scenario,
        "reimages": [],
    }


def _build_host(
    paths: LabPaths,
    plan: LabPlan,
    host: HostPlan,
    campaign: scenarios.Campaign,
    repository: backups.Repository,
) -> dict[str, Any]:
    """Lay down the role's image, then replay the host's history, taking each backup when its time
    comes: the snapshots before the infection hold what the host had then, the last one the damage."""
    root = paths.host(host.name)
    if host.name != plan.backup_host:  # laid down before the repository was created in it
        images.lay_down(paths.image(host.group), root)
    data = data_ops(host, plan.seed, plan.timeline)
    planted = scenarios.plant(host, plan.seed, plan.timeline, data, campaign)
    ops = sorted(data + planted.ops, key=lambda op: op.when)
    done = 0
    for tag, when in _backups_needed(plan, planted.compromise):
        upto = next((i for i in range(done, len(ops)) if ops[i].when >= when), len(ops))
        trees.apply(root, ops[done:upto])
        done = upto
        repository.backup(host.name, when, ["lab", tag])
    trees.apply(root, ops[done:])
    trees.settle_directories(root)
    published, details = _install_host_key(root, host.name, changed=host.kind == "hostkey_changed")
    planted.details.update(details)
    return {"scenario": scenarios.scenario_record(host, planted), "published_key": published}


def _backups_needed(plan: LabPlan, compromise: datetime | None) -> list[tuple[str, datetime]]:
    """Every host gets the last nightly backup before the infection and the one after it; the older
    nightly only where it is the clean restore point (a foothold older than the last nightly). At 200
    hosts that saves 150 restic runs, a quarter of `up`'s CPU, and changes no restore decision."""
    older, *rest = plan.timeline.backups
    if compromise is not None and compromise < rest[0][1]:
        return [older, *rest]
    return rest


def _install_host_key(root: Path, name: str, changed: bool = False) -> tuple[str, dict[str, Any]]:
    """A new host key for the host; returns the known_hosts entry to publish. For the `hostkey_changed`
    scenario that entry is a key the host no longer has, as after an interception or a rogue rebuild."""
    private, public = keys.new_keypair(f"root@{name}")
    key_path = root / "etc" / "ssh" / "ssh_host_ed25519_key"
    keys.write_private(key_path, private)
    key_path.with_name("ssh_host_ed25519_key.pub").write_text(public + "\n")
    if not changed:
        return keys.host_key_entry(public), {}
    _, previous = keys.new_keypair(f"root@{name}")
    details = {
        "published_fingerprint": keys.fingerprint(previous),
        "actual_fingerprint": keys.fingerprint(public),
    }
    return keys.host_key_entry(previous), details


def _snapshots_by_host(repository: backups.Repository, plan: LabPlan) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for snap in repository.snapshots():
        out.setdefault(snap["hostname"], []).append(snap)
    for snaps in out.values():
        snaps.sort(key=lambda s: s["time"])
    return out


def _snapshot_records(snaps: list[dict[str, Any]], compromise: str | None) -> list[dict[str, Any]]:
    records = []
    for snap in snaps:
        when = datetime.fromisoformat(snap["time"].replace("Z", "+00:00"))
        records.append(
            {
                "id": snap["id"],
                "time": iso(when),
                "tags": snap.get("tags", []),
                "before_compromise": compromise is None or iso(when) < compromise,
            }
        )
    return records


# -- processes ----------------------------------------------------------------------------------------
def _should_run(host: dict[str, Any]) -> bool:
    return host["scenario"]["kind"] != "sshd_down" or bool(host.get("reimages"))


def _ensure_running(paths: LabPaths, manifest: Manifest, report: Progress) -> None:
    """Start every host that should run and does not (all of them on a new lab), then stop the one
    meant to hang. Saves the pids in the manifest when anything changed."""
    linux = [h for h in manifest["hosts"] if h["os"] == "linux" and _should_run(h)]
    missing = [h for h in linux if not _alive(paths, h["name"])]
    report("sshd", len(linux) - len(missing), len(linux))
    if missing:
        refs = _launch(paths, missing)
        _wait_listening(paths, missing, refs, report, len(linux) - len(missing), len(linux))
        for host in missing:
            host["pid"] = refs[host["name"]].pid
            if host["scenario"]["kind"] == "sshd_stopped" and not host.get("reimages"):
                os.kill(refs[host["name"]].pid, signal.SIGSTOP)
    win = [h for h in manifest["hosts"] if h["os"] == "windows"]
    changed = bool(missing)
    if win:
        ref = processes.load(paths.pidfile(windows.PROCESS))
        if ref is None or not ref.alive():
            report("windows", 0, len(win))
            ref = windows.start(paths, win)
            for host in win:
                host["pid"] = ref.pid
            changed = True
        report("windows", len(win), len(win))
    if changed and paths.manifest.exists():
        save_manifest(paths, manifest)


def _alive(paths: LabPaths, name: str) -> bool:
    ref = processes.load(paths.pidfile(name))
    return ref is not None and ref.alive()


def _node_shares(paths: LabPaths) -> list[str]:
    """What an execution node sees of the controller: the lab, this Python environment (its
    ansible-runner and Ansible), the interpreter it was made from (e.g. pyenv's, under /root) and the
    product itself when it lives outside that environment (an editable install: a checkout under
    /tmp would otherwise be hidden by the node's own /tmp, and its agent could not import it)."""
    shares = [str(paths.root)]
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        if prefix != "/usr" and not prefix.startswith("/usr/"):
            shares.append(prefix)
    spec = importlib.util.find_spec("orchestrator")
    product = (
        str(Path(next(iter(spec.submodule_search_locations or []))).resolve()) if spec else str(paths.root)
    )
    if not any(product == s or product.startswith(s.rstrip("/") + "/") for s in shares):
        shares.append(product)
    return shares


def _launch(paths: LabPaths, hosts: list[dict[str, Any]]) -> dict[str, ProcRef]:
    specs = [
        {
            "name": h["name"],
            "address": h["address"],
            "root": str(paths.host(h["name"])),
            "hide": None if h["group"] == NODE_GROUP else str(paths.root),
            "share": _node_shares(paths) if h["group"] == NODE_GROUP else [],
            "log": str(paths.logs / f"{h['name']}.log"),
        }
        for h in hosts
    ]
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator_lab.launcher"],
        input=json.dumps(specs),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    refs: dict[str, ProcRef] = {}
    errors = []
    for line in result.stdout.splitlines():
        answer = json.loads(line)
        if "pid" in answer and "starttime" in answer:
            refs[answer["name"]] = ProcRef(answer["pid"], answer["starttime"], "sshd")
            processes.save(paths.pidfile(answer["name"]), refs[answer["name"]])
        else:
            errors.append(f"{answer['name']}: {answer.get('error')}")
    if result.returncode != 0 or errors or len(refs) != len(hosts):
        detail = errors[0] if errors else (result.stderr.strip().splitlines() or ["launcher failed"])[-1]
        raise OrchestratorError(f"lab hosts did not start ({detail})")
    return refs


def _wait_listening(
    paths: LabPaths,
    hosts: list[dict[str, Any]],
    refs: dict[str, ProcRef],
    report: Progress,
    base: int,
    total: int,
) -> None:
    pending = list(hosts)
    deadline = time.monotonic() + START_TIMEOUT
    while pending:
        for host in pending:
            if not refs[host["name"]].alive():
                raise OrchestratorError(f"host {host['name']}: sshd exited: {_log_tail(paths, host['name'])}")
        answers = processes.ports_open([(h["address"], h["port"]) for h in pending], timeout=0.2)
        pending = [h for h, ok in zip(pending, answers, strict=True) if not ok]
        report("sshd", base + len(hosts) - len(pending), total)
        if pending:
            if time.monotonic() > deadline:
                raise OrchestratorError(
                    f"{len(pending)} host(s) not answering on port 22, e.g. {pending[0]['name']}"
                )
            time.sleep(0.05)


def _log_tail(paths: LabPaths, name: str) -> str:
    try:
        lines = (paths.logs / f"{name}.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def _log(paths: LabPaths, action: str, **details: Any) -> None:
    """The lab's own record of what was done to it (the recovery's audit log is in the database)."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    entry = {"time": iso(datetime.now(UTC)), "action": action, **details}
    with open(paths.logs / "lab.log", "a") as f:
        f.write(json.dumps(entry) + "\n")


# -- status -------------------------------------------------------------------------------------------
def status(directory: Path | str) -> dict[str, Any]:
    paths = LabPaths(Path(directory).absolute())
    manifest = load_manifest(paths.root)
    answers = processes.ports_open([(h["address"], h["port"]) for h in manifest["hosts"]], timeout=0.5)
    rows = []
    for host, answering in zip(manifest["hosts"], answers, strict=True):
        ref = processes.load(paths.pidfile(host["name"] if host["os"] == "linux" else windows.PROCESS))
        alive = ref is not None and ref.alive()
        if alive and ref is not None and ref.stopped():
            state = "stopped"
        elif alive and answering:
            state = "up"
        elif alive:
            state = "not answering"
        else:
            state = "down"
        rows.append(
            {
                "name": host["name"],
                "address": host["address"],
                "port": host["port"],
                "os": host["os"],
                "group": host["group"],
                "tier": host["tier"],
                "protected": host["protected"],
                "scenario": host["scenario"]["kind"],
                "expected_verdict": host["scenario"]["expected_verdict"],
                "state": state,
                "pid": ref.pid if alive and ref is not None else None,
                "reimaged": len(host.get("reimages", [])),
            }
        )
    summary: dict[str, int] = {}
    for row in rows:
        summary[row["state"]] = summary.get(row["state"], 0) + 1
    return {
        "dir": str(paths.root),
        "seed": manifest["seed"],
        "net": manifest["net"],
        "infection_time": manifest["infection_time"],
        "summary": summary,
        "hosts": rows,
    }


# -- reimage ------------------------------------------------------------------------------------------
def reimage(directory: Path | str, name: str) -> dict[str, Any]:
    """Reinstall one host from its role's golden image: stop it, wipe its directories, lay the image
    down, give it a new host key published in known_hosts (the trusted channel), start it again."""
    require_environment()
    paths = LabPaths(Path(directory).absolute())
    with locked(paths):
        manifest = load_manifest(paths.root)
        host = host_entry(manifest, name)
        if host["protected"]:
            raise RefusedError(f"host {name} is protected ({host['group']}): the lab never reimages it")
        now = datetime.now(UTC).replace(microsecond=0)
        record: dict[str, Any] = {"time": iso(now), "image": host["image"]}
        if host["os"] == "windows":
            windows.reimage(paths, host, manifest["seed"], now)
        else:
            _stop_host(paths, name)
            root = paths.host(name)
            images.wipe(root)
            images.lay_down(paths.image(host["group"]), root)
            (root / "etc" / "hostname").write_text(f"{name}\n")
            published, _ = _install_host_key(root, name)
            keys.publish(paths.known_hosts, {host["address"]: published})
            record["host_key_fingerprint"] = keys.fingerprint(published)
            refs = _launch(paths, [host])
            _wait_listening(paths, [host], refs, _quiet, 0, 1)
            host["pid"] = refs[name].pid
        host.setdefault("reimages", []).append(record)
        save_manifest(paths, manifest)
        _log(paths, "reimage", host=name, **record)
        return host


def _stop_host(paths: LabPaths, name: str) -> None:
    refs = [r for r in [processes.load(paths.pidfile(name))] if r is not None]
    refs += processes.refs_of(processes.namespace_processes(paths.host(name)), "sshd")
    left = processes.kill(refs)
    if left:
        raise OrchestratorError(f"host {name}: process {left[0].pid} would not stop")


# -- down ---------------------------------------------------------------------------------------------
def down(directory: Path | str) -> dict[str, Any]:
    """Stop every process the lab started and remove everything it created. Works on a lab whose `up`
    crashed or whose processes were killed; does nothing (and says so) where there is no lab."""
    paths = LabPaths(Path(directory).absolute())
    if not paths.marker.exists() and not paths.manifest.exists():
        return {"dir": str(paths.root), "stopped": 0, "removed": False}
    with locked(paths):
        stopped = _stop_everything(paths)
        left = leftovers(paths.root)
        if left["processes"]:
            raise OrchestratorError(f"lab processes still running after SIGKILL: {left['processes'][:10]}")
        _teardown(paths)
    with contextlib.suppress(OSError):  # only if nothing else lives there (the demo keeps its database)
        paths.root.rmdir()
    return {"dir": str(paths.root), "stopped": stopped, "removed": True}


def _stop_everything(paths: LabPaths) -> int:
    refs = []
    if paths.pids.is_dir():
        refs = [r for r in (processes.load(p) for p in sorted(paths.pids.glob("*.json"))) if r is not None]
    # Whatever the pid files missed: processes inside the hosts' namespaces, the stand-in by its state path.
    refs += processes.refs_of(processes.namespace_processes(paths.hosts), "sshd")
    refs += processes.refs_of(processes.processes_with_argument(str(paths.windows) + "/"), windows.PROCESS)
    unique = list({(r.pid, r.starttime): r for r in refs}.values())
    alive = [r for r in unique if r.alive()]
    processes.kill(alive)
    return len(alive)


def leftovers(directory: Path | str) -> dict[str, Any]:
    """What of a lab is still there: processes in its namespaces or serving its Windows hosts, mounts
    of its files in any namespace, and its directory. All empty after `down`."""
    paths = LabPaths(Path(directory).absolute())
    procs = processes.namespace_processes(paths.hosts) + processes.processes_with_argument(
        str(paths.windows) + "/"
    )
    live = [pid for pid in procs if (ref := processes.refs_of([pid], "any")) and ref[0].alive()]
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split(" ")[4] for line in f if line.split(" ")[4].startswith(str(paths.root))]
    return {"processes": sorted(set(live)), "mounts": mounts, "dir_exists": paths.root.exists()}


def _teardown(paths: LabPaths) -> None:
    if paths.hosts.is_dir():  # thousands of small files: unlinks overlap well on a busy disk
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(shutil.rmtree, [p for p in paths.hosts.iterdir() if not p.is_symlink()]))
    for path in paths.owned():
        if path == paths.lock or path == paths.marker:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for stray in paths.root.glob(".manifest.*"):
        stray.unlink()
    paths.marker.unlink(missing_ok=True)
    paths.lock.unlink(missing_ok=True)
