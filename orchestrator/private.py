"""Files and folders on the controller that only its user may read.

What the orchestrator keeps holds what an attacker wants next: fetched auth logs, shell histories and
authorized_keys in the staging area, host lists and evidence in extra vars, the audit key. So every
file it creates is 0600 and every folder 0700, by explicit mode where we create them and by a umask of
077 while a command runs (ansible-runner, ansible-playbook and SQLite create files of their own).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import OrchestratorError

FILE_MODE = 0o600
DIR_MODE = 0o700
UMASK = 0o077


@contextlib.contextmanager
def umask() -> Iterator[None]:
    """The private umask for the duration (process-wide: the commands run one at a time)."""
    previous = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def mkdir(path: Path, exist_ok: bool = False) -> Path:
    """`path` and any missing parents, 0700 (an existing folder is left as it is)."""
    for parent in reversed(path.parents):
        if not parent.exists():
            with contextlib.suppress(FileExistsError):
                parent.mkdir(mode=DIR_MODE)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not exist_ok:
            raise
        return path
    path.chmod(DIR_MODE)  # mkdir's mode is masked by the umask; ours is never wider, but be exact
    return path


def write_text(path: Path, text: str) -> None:
    """`path` created or replaced with `text`, 0600 from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
        os.fchmod(handle.fileno(), FILE_MODE)
        handle.write(text)


def unique_dir(parent: Path, name: str) -> Path:
    """A new private folder of one's own under `parent`: `name`, else `name-2`, `name-3`... (a run
    resumed within the second its killed predecessor started gets its own, never the other's)."""
    mkdir(parent, exist_ok=True)
    for n in range(1, 1000):
        path = parent / (name if n == 1 else f"{name}-{n}")
        try:
            return mkdir(path)
        except FileExistsError:
            continue
    raise OrchestratorError(f"{parent}: no free run directory named {name}[-N]")
