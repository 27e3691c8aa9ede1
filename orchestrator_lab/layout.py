"""Where a lab host keeps its state: the paths mounted from its own tree in its own mount namespace.

One list shared by the launcher (what is mounted), the reimage (what is wiped), the backups (what is
saved) and the tests (what must be isolated).
"""

from __future__ import annotations

import os
from pathlib import Path

# Directories a real host keeps its state in, relative to "/" (and to the host's tree in the lab).
DIRS = (
    "root",
    "home",
    "srv",
    "opt",
    "etc/cron.d",
    "etc/systemd/system",
    "etc/ssh",
    "var/log",
    "var/tmp",
    "run",
    "dev/shm",
    "tmp",
)
FILES = ("etc/hostname",)
MODES = {"root": 0o700, "tmp": 0o1777, "var/tmp": 0o1777, "dev/shm": 0o1777}
# What the nightly backup saves (not /tmp, /run, logs or host keys: a restore never brings those back).
BACKED_UP = ("etc/cron.d", "etc/systemd/system", "home", "opt", "root", "srv")
# sshd's privilege-separation directory, inside the host's own /run.
EXTRA_DIRS = {"run/sshd": 0o755, "root/.ssh": 0o700}


def skeleton(root: Path) -> None:
    """The host's mount points, with a real host's modes (sticky /tmp, private /root)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in DIRS:
        path = root / rel
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, MODES.get(rel, 0o755))
    for rel, mode in EXTRA_DIRS.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(root / rel, mode)
    for rel in FILES:
        (root / rel).touch(exist_ok=True)
