"""Starts lab hosts' sshd, each in its own mount, UTS and PID namespaces.

Run as `python -m orchestrator_lab.launcher` with a JSON list of hosts on stdin; prints one JSON line
per host (`{"name", "pid", "starttime"}` or `{"name", "error"}`) and exits. Each host is started by a
double fork: the first child enters new namespaces and forks the host's first process (PID 1 of its
PID namespace), then exits, so the sshd is left alone (no waiting parent per host: 200 hosts cost 200
sshd processes, nothing more) and killing it ends every process of that host.

Before exec'ing sshd, the host's process, inside its private mount namespace:
- binds the host's own directories over /root, /home, /srv, /opt, /etc/cron.d, /etc/systemd/system,
  /etc/ssh, /var/log, /var/tmp, /run, /dev/shm, /tmp and its own /etc/hostname (sources are opened
  first, so binding /tmp cannot hide a lab that lives under /tmp);
- covers the lab directory with an empty read-only tmpfs (the lab's tree, keys and other hosts vanish),
  except on an execution node: a node is trusted like the controller, so it sees the lab directory
  (its keys and known_hosts, the restic repository) and the orchestrator's Python environment
  (ansible-runner), both read-only at their own paths (`share`);
- mounts a /proc of its own PID namespace (no way to reach another host through /proc/PID/root);
- sets its hostname, then checks every bind by inode and fails closed: if anything is not as intended,
  sshd is never started, so a session can never land on the real machine's /root or /etc.
Single-threaded on purpose: it forks.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
from typing import Any

from orchestrator_lab.layout import DIRS, FILES

SSHD = "/usr/sbin/sshd"
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
FAILED = 97

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def read_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def _become_host(spec: dict[str, Any], log_fd: int) -> None:
    """In the new namespaces: build the host's view of the filesystem, then exec sshd. Never returns."""
    os.setsid()
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = spec["root"]
    sources = []
    for rel in DIRS + FILES:
        flags = os.O_PATH | os.O_NOFOLLOW | (os.O_DIRECTORY if rel in DIRS else 0)
        fd = os.open(os.path.join(root, rel), flags)
        st = os.fstat(fd)
        sources.append((fd, "/" + rel, (st.st_dev, st.st_ino)))
    shared = []
    for path in spec.get("share", []):
        fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
        st = os.fstat(fd)
        shared.append((fd, path, (st.st_dev, st.st_ino)))
    for fd, target, _ in sources:
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
    for fd, target, _ in shared:  # the mount point may lie in the host's own /tmp or /opt: made there
        os.makedirs(target, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    hide = spec["hide"]
    if hide and os.path.isdir(hide):  # else already out of sight (a lab under /tmp or /srv)
        _mount("lab-hidden", hide, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0755")
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    socket.sethostname(spec["name"])
    for fd, target, identity in sources + shared:
        st = os.stat(target)
        if (st.st_dev, st.st_ino) != identity:
            raise RuntimeError(f"{target} is not the host's own after mounting")
        os.close(fd)
    if hide and os.path.isdir(hide) and os.listdir(hide):
        raise RuntimeError(f"the lab directory {hide} is still visible")
    if socket.gethostname() != spec["name"]:
        raise RuntimeError("hostname not set")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.execv(
        SSHD, [SSHD, "-D", "-e", "-f", "/etc/ssh/sshd_config", "-o", f"ListenAddress={spec['address']}:22"]
    )


def start(spec: dict[str, Any]) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # intermediate: enter new namespaces, fork the host's PID 1, leave
        message = b""
        try:
            os.close(read_end)
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWPID), "unshare")
            pid = os.fork()
            if pid == 0:
                os.close(write_end)
                log_fd = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    _become_host(spec, log_fd)
                except BaseException as exc:
                    os.write(log_fd, f"lab: host {spec['name']} not started: {exc}\n".encode())
                os._exit(FAILED)
            message = json.dumps({"pid": pid}).encode()
        except BaseException as exc:
            message = json.dumps({"error": str(exc)}).encode()
        finally:
            os.write(write_end, message)
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        answer = json.loads(f.read() or b'{"error": "launcher child died"}')
    os.waitpid(child, 0)
    if "pid" in answer:
        stat = read_stat(answer["pid"])
        if stat is None:
            return {"name": spec["name"], "error": f"exited at once (see {spec['log']})"}
        answer["starttime"] = stat[1]
    return {"name": spec["name"], **answer}


def main() -> int:
    specs = json.load(sys.stdin)
    for spec in specs:
        print(json.dumps(start(spec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
