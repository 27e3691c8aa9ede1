"""The lab's processes: who they are (pid and start time, so a recycled pid is never mistaken for
ours), whether they are alive, answering, stopped, and how they are ended.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator_lab.launcher import read_stat


@dataclass(frozen=True)
class ProcRef:
    pid: int
    starttime: int
    kind: str = "sshd"  # sshd | winrm

    def stat(self) -> str | None:
        """The state letter (R, S, T, Z...) if this very process still exists."""
        found = read_stat(self.pid)
        if found is None or found[1] != self.starttime:
            return None
        return found[0]

    def alive(self) -> bool:
        state = self.stat()
        return state is not None and state not in ("Z", "X")

    def stopped(self) -> bool:
        return self.stat() in ("T", "t")


def save(path: Path, ref: ProcRef) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(ref)))
    os.replace(tmp, path)


def load(path: Path) -> ProcRef | None:
    try:
        return ProcRef(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def kill(refs: Iterable[ProcRef], timeout: float = 10.0) -> list[ProcRef]:
    """SIGKILL each of our processes still alive (a SIGSTOPped sshd ignores anything gentler; killing
    a host's PID 1 ends every process of its PID namespace). Returns those still alive at the deadline."""
    pending = [ref for ref in refs if ref.alive()]
    for ref in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        _reap(pending)
        pending = [ref for ref in pending if ref.alive()]
        if pending:
            time.sleep(0.02)
    return pending


def _reap(refs: list[ProcRef]) -> None:
    """Collect the exit status of those that are our own children (the WinRM servers a test process
    started), so they do not linger as zombies."""
    for ref in refs:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(ref.pid, os.WNOHANG)


def port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def ports_open(targets: list[tuple[str, int]], timeout: float = 0.5) -> list[bool]:
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(64, len(targets))) as pool:
        return list(pool.map(lambda t: port_open(t[0], t[1], timeout), targets))


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _fs_location(path: Path) -> tuple[str, str]:
    """(device, path inside that filesystem) of `path`: how mountinfo names the source of a bind."""
    target = str(path.resolve())
    best = ("", "/", "/")  # device, mount point, root of the mount
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            device, root, point = fields[2], _unescape(fields[3]), _unescape(fields[4])
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[1]):
                best = (device, point, root)
    device, point, root = best
    rest = target[len(point.rstrip("/")) :]
    return device, (root.rstrip("/") + rest) or "/"


def namespace_processes(hosts_dir: Path) -> list[int]:
    """Processes whose mount namespace has a mount taken from under `hosts_dir` (a lab's hosts): every
    process of every lab host, found without trusting any pid file."""
    device, inside = _fs_location(hosts_dir)
    prefix = inside.rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/mountinfo") as f:
                for line in f:
                    fields = line.split(" ", 5)
                    if fields[2] == device and _unescape(fields[3]).startswith(prefix):
                        found.append(int(entry))
                        break
        except (OSError, IndexError):
            continue
    return found


def processes_with_argument(argument: str) -> list[int]:
    """Processes one of whose command-line arguments starts with `argument` (a lab-private path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.decode(errors="replace").startswith(argument) for a in args):
            found.append(int(entry))
    return found


def refs_of(pids: Iterable[int], kind: str) -> list[ProcRef]:
    refs = []
    for pid in pids:
        stat = read_stat(pid)
        if stat is not None:
            refs.append(ProcRef(pid, stat[1], kind))
    return refs
