"""Replaying a host's history (its `FileOp`s) onto its tree, with the file times of when each happened."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from orchestrator_lab.hostdata import FileOp


def apply(root: Path, ops: Iterable[FileOp]) -> None:
    for op in ops:
        path = root / op.path
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = op.when.timestamp()
        if op.action == "write":
            _write(path, op.data, op.mode, "wb")
        elif op.action == "append":
            _write(path, op.data, op.mode, "ab")
        elif op.action == "encrypt":
            target = root / op.target
            os.replace(path, target)
            _write(target, op.data, op.mode, "wb")
            path = target
        elif op.action == "link":
            if path.is_symlink() or path.exists():
                path.unlink()
            os.symlink(op.target, path)
            os.utime(path, (stamp, stamp), follow_symlinks=False)
            continue
        else:
            raise ValueError(f"unknown file operation {op.action!r}")
        os.utime(path, (stamp, stamp))


def _write(path: Path, data: bytes, mode: int, how: str) -> None:
    with open(path, how) as f:
        f.write(data)
    os.chmod(path, mode)


def settle_directories(root: Path) -> None:
    """Give each directory the time of its newest entry, as it would have on a host that lived through
    that history (instead of the minute the lab was built)."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        newest = 0.0
        for name in dirnames + filenames:
            try:
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
            except FileNotFoundError:
                continue
        if newest:
            os.utime(dirpath, (newest, newest))
