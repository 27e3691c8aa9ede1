"""Golden images: one tarball per host group of the files a fresh install of that role has (the
application, its unit and cron jobs, sshd's configuration, the provisioning key), and how a host's tree
is laid down from one, at creation and at every reimage.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator_lab import catalog
from orchestrator_lab.layout import DIRS, EXTRA_DIRS, FILES, MODES, skeleton


def image_files(group: str, provisioning_key: str, installed: datetime) -> dict[str, tuple[str, str]]:
    """path -> ("file" | "link", content or link target), rendered from the catalog."""
    cat = catalog.catalog()
    spec = catalog.group(group)
    role = spec["recovery"]["role"]
    context: dict[str, Any] = {
        "app": spec["app"],
        "provisioning_key": provisioning_key,
        "image": group,
        "installed": installed.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out: dict[str, tuple[str, str]] = {}
    for section in ("common", role):
        for raw_path, raw in cat["images"][section].items():
            path = catalog.render_string(raw_path, **context)
            if raw.startswith("@link "):
                out[path] = ("link", catalog.render_string(raw[len("@link ") :], **context))
            elif raw.startswith("@template "):
                out[path] = ("file", catalog.render_template(raw[len("@template ") :].strip(), **context))
            else:
                out[path] = ("file", catalog.render_string(raw, **context))
    return out


def _mode(path: str) -> int:
    if path.startswith("root/.ssh/") or path.startswith("etc/ssh/ssh_host_"):
        return 0o600
    if "/bin/" in path:
        return 0o755
    return 0o644


def build(path: Path, group: str, provisioning_key: str, installed: datetime) -> None:
    """Write `images/<group>.tar.gz`: the host skeleton (modes included) and the role's files, all
    dated at install time."""
    files = image_files(group, provisioning_key, installed)
    mtime = installed.timestamp()
    dirs = dict.fromkeys(DIRS, 0) | dict(EXTRA_DIRS)
    for rel in files:
        parent = os.path.dirname(rel)
        while parent and parent not in dirs:
            dirs[parent] = 0
            parent = os.path.dirname(parent)
    tmp = path.with_suffix(".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:
        for rel in sorted(dirs, key=lambda d: d.count("/")):
            info = tarfile.TarInfo(rel)
            info.type, info.mtime = tarfile.DIRTYPE, mtime
            info.mode = dirs[rel] or MODES.get(rel, 0o755)
            tar.addfile(info)
        for rel in FILES:
            _add_file(tar, rel, b"", 0o644, mtime)
        for rel, (kind, value) in sorted(files.items()):
            if kind == "link":
                info = tarfile.TarInfo(rel)
                info.type, info.linkname, info.mtime, info.mode = tarfile.SYMTYPE, value, mtime, 0o777
                tar.addfile(info)
            else:
                _add_file(tar, rel, value.encode(), _mode(rel), mtime)
    os.replace(tmp, path)


def _add_file(tar: tarfile.TarFile, rel: str, data: bytes, mode: int, mtime: float) -> None:
    info = tarfile.TarInfo(rel)
    info.size, info.mode, info.mtime = len(data), mode, mtime
    tar.addfile(info, io.BytesIO(data))


def lay_down(image: Path, root: Path) -> None:
    """Extract a golden image into a host's (empty) tree. The tarball is the lab's own, built by
    `build` above, so it is trusted as is: its absolute symlinks (systemd's wants) must stay absolute."""
    skeleton(root)
    with tarfile.open(image, "r:gz") as tar:
        tar.extractall(root, filter="fully_trusted")


def wipe(root: Path) -> None:
    """Empty every directory the host keeps state in (the mount points themselves stay: they are what
    the host's namespace binds). Symlinks are removed, never followed."""
    for rel in DIRS:
        base = root / rel
        if base.is_symlink() or not base.is_dir():
            raise RuntimeError(f"{base} is not a host directory: refusing to wipe it")
        for child in base.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for rel in FILES:
        (root / rel).write_bytes(b"")
