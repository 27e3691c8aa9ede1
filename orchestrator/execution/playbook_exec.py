"""What ansible-runner starts instead of `ansible-playbook`: a small supervisor with two jobs.

- Secrets from the environment (a WinRM password an inventory reads with `lookup('env', ...)`) reach
  ansible-playbook without ansible-runner seeing them: ansible-runner writes its whole environment
  into the artifacts' `command` file, so the orchestrator passes them in a private file this
  process reads and deletes at once.
- If the orchestrator dies (kill -9, a crashed machine), the playbook dies with it instead of going on
  unseen while a resumed run starts the same stage again: the kernel signals this process when its
  parent dies (PR_SET_PDEATHSIG), and it kills its whole process group, ansible's workers included.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys

SECRET_FILE_ENV = "ORCHESTRATOR_SECRET_ENV_FILE"
PARENT_ENV = "ORCHESTRATOR_PARENT_PID"
PLAYBOOK_ENV = "ORCHESTRATOR_ANSIBLE_PLAYBOOK"
_PR_SET_PDEATHSIG = 1


def _kill_group(signum: int, _frame: object) -> None:
    os.killpg(0, signal.SIGKILL)


def _read_secrets(env: dict[str, str]) -> dict[str, str]:
    path = env.pop(SECRET_FILE_ENV, None)
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            secrets = json.load(f)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return {str(k): str(v) for k, v in secrets.items()}


def main(argv: list[str]) -> int:
    env = dict(os.environ)
    env.update(_read_secrets(env))
    parent = env.pop(PARENT_ENV, None)
    signal.signal(signal.SIGTERM, _kill_group)
    signal.signal(signal.SIGHUP, _kill_group)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if parent and os.getppid() != int(parent):
        # The orchestrator died before the signal was armed: do not start a playbook nobody watches.
        return 1
    playbook = env.pop(PLAYBOOK_ENV, "ansible-playbook")
    return subprocess.Popen([playbook, *argv], env=env).wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
