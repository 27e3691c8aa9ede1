"""What ansible-runner starts instead of `ansible-playbook`: a small supervisor with two jobs.

- Secrets from the environment (a WinRM password an inventory reads with `lookup('env', ...)`) reach
  ansible-playbook without ansible-runner seeing them: ansible-runner writes its whole environment
  into the artifacts' `command` file, so the orchestrator passes them in a private file this
  process reads and deletes at once.
- If the orchestrator dies (kill -9, a crashed machine), the playbook dies with it instead of going on
  unseen while a resumed run starts the same stage again: the kernel signals this process when its
  parent dies (PR_SET_PDEATHSIG), and it kills every process below it. Ansible's workers leave the
  process group (each calls setsid), so this process is their subreaper (PR_SET_CHILD_SUBREAPER): an
  orphaned worker is re-parented here instead of to init, and the sweep through /proc finds it.

It starts once per stage, so it starts lean (about 15 ms instead of 28): `-I -S`, the interpreter's own
modules only, no `subprocess` (posix_spawn does the same here), no `contextlib`, `json` only when
there are secrets, and the signal functions without the `signal` module's enum wrappers.
"""

from __future__ import annotations

import ctypes
import os
import sys

try:
    import _signal as signal  # CPython's core of `signal`: the same functions and numbers, no enum
except ImportError:  # pragma: no cover - other interpreters
    import signal  # type: ignore[no-redef]

SECRET_FILE_ENV = "ORCHESTRATOR_SECRET_ENV_FILE"
PARENT_ENV = "ORCHESTRATOR_PARENT_PID"
PLAYBOOK_ENV = "ORCHESTRATOR_ANSIBLE_PLAYBOOK"
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _kill_all(signum: int, _frame: object) -> None:
    """Every process below this one, until none is left (a worker may fork while being swept)."""
    me = os.getpid()
    for _ in range(50):
        below = _descendants(me)
        if not below:
            break
        for pid in below:
            try:  # noqa: SIM105 - contextlib costs this short-lived process 4 ms to import
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass
    os._exit(128 + signum)


def _read_secrets(env: dict[str, str]) -> dict[str, str]:
    path = env.pop(SECRET_FILE_ENV, None)
    if not path:
        return {}
    import json

    try:
        with open(path, encoding="utf-8") as f:
            secrets = json.load(f)
    finally:
        try:  # noqa: SIM105 - as above
            os.unlink(path)
        except FileNotFoundError:
            pass
    return {str(k): str(v) for k, v in secrets.items()}


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    env.update(_read_secrets(env))
    parent = env.pop(PARENT_ENV, None)
    signal.signal(signal.SIGTERM, _kill_all)
    signal.signal(signal.SIGHUP, _kill_all)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent and os.getppid() != int(parent):
        # The orchestrator died before the signal was armed: do not start a playbook nobody watches.
        return 1
    playbook = env.pop(PLAYBOOK_ENV, "ansible-playbook")
    # Signals Python ignores for itself go back to their defaults for ansible-playbook, as
    # subprocess does (restore_signals).
    defaults = [s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s is not None]
    pid = os.posix_spawnp(playbook, [playbook, *argv], env, setsigdef=defaults)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
