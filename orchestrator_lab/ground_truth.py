"""The lab manifest (the ground truth tests compare against) and the lock that serialises changes to a
lab: playbooks reimage several hosts at once, each through its own `orchestrator lab reimage`."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator_lab.settings import LabPaths

VERSION = 1
Manifest = dict[str, Any]


def load_manifest(directory: Path | str) -> Manifest:
    path = LabPaths(Path(directory).absolute()).manifest
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OrchestratorError(
            f"no lab in {path.parent}: run 'orchestrator lab up --dir {path.parent}'"
        ) from None
    except ValueError as exc:
        raise OrchestratorError(f"{path}: not a lab manifest ({exc})") from exc


def save_manifest(paths: LabPaths, manifest: Manifest) -> None:
    fd, tmp = tempfile.mkstemp(dir=paths.root, prefix=".manifest.")
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, paths.manifest)


def host_entry(manifest: Manifest, name: str) -> dict[str, Any]:
    for host in manifest["hosts"]:
        if host["name"] == name:
            return host
    raise OrchestratorError(
        f"no host {name!r} in the lab (hosts: {', '.join(h['name'] for h in manifest['hosts'][:8])}, ...)"
    )


@contextmanager
def locked(paths: LabPaths) -> Iterator[None]:
    paths.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
