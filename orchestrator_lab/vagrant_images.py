"""The Vagrant box's golden images: the same per-role files as the local lab's images (the role's
application, its unit and cron jobs, sshd's configuration, the provisioning key in root's
authorized_keys), packed once per role into the box at build time, so that every `vagrant up` (the
first one and each reimage) lays down the role's image exactly as the local lab's reimage does.

Only the role's files: the box is a real Debian system, so the lab's mount-point skeleton and its
imitation of dpkg's log are left out (the box has the real ones).
"""

from __future__ import annotations

import io
import sys
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from orchestrator_lab.images import image_files

# The catalog's image groups the Vagrant hospital uses (see the Vagrantfile's MACHINES).
GROUPS = ("dns_dhcp", "ehr_db", "backup", "ws_wards")
# Where the images live inside the box.
IMAGE_DIR = "usr/local/share/golden-images"
# What a real system already has and the lab only imitates.
SKIPPED_PREFIXES = ("var/log/",)


def pack(group: str, provisioning_key: str, installed: datetime) -> bytes:
    """A gzip'd tarball of the role's files, relative to "/", dated at install time."""
    files = image_files(group, provisioning_key, installed)
    buffer = io.BytesIO()
    mtime = installed.timestamp()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for rel, (kind, value) in sorted(files.items()):
            if rel.startswith(SKIPPED_PREFIXES):
                continue
            info = tarfile.TarInfo(rel)
            info.mtime = mtime
            if kind == "link":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, value, 0o777
                tar.addfile(info)
                continue
            data = value.encode()
            info.size = len(data)
            info.mode = 0o600 if rel.startswith("root/.ssh/") else 0o755 if "/bin/" in rel else 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def write(rootfs: Path, provisioning_key: str) -> list[Path]:
    """Write every group's image into the box's root file system; returns the files written."""
    target = rootfs / IMAGE_DIR
    target.mkdir(parents=True, exist_ok=True)
    installed = datetime.now(UTC).replace(microsecond=0)
    written = []
    for group in GROUPS:
        path = target / f"{group}.tar.gz"
        path.write_bytes(pack(group, provisioning_key, installed))
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    """`python -m orchestrator_lab.vagrant_images ROOTFS PUBLIC_KEY_FILE` (the box build script)."""
    if len(argv) != 2:
        print("usage: python -m orchestrator_lab.vagrant_images ROOTFS PUBLIC_KEY_FILE", file=sys.stderr)
        return 2
    rootfs, key_file = Path(argv[0]), Path(argv[1])
    if not rootfs.is_dir() or not key_file.is_file():
        print(f"error: {rootfs} must be a directory and {key_file} a file", file=sys.stderr)
        return 2
    write(rootfs, key_file.read_text().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
