"""SSH keys of the lab (its login key, each host's host key) and the known_hosts file it publishes.

Keys are made with `cryptography` in process: 200 hosts would otherwise mean 200 `ssh-keygen` runs.
The known_hosts file is the lab's trusted channel: written when a host is created or reimaged, and
never learned from the network (no trust on first use).
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def new_keypair(comment: str, seed: bytes | None = None) -> tuple[bytes, str]:
    """(private key in OpenSSH PEM, public key line). `seed` makes it reproducible (planted attacker
    keys must have the same fingerprint in every lab with one seed)."""
    key = Ed25519PrivateKey.from_private_bytes(seed) if seed is not None else Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, f"{public.decode()} {comment}".strip()


def write_keypair(path: Path, comment: str) -> str:
    """Write `path` (0600) and `path.pub`; returns the public line."""
    private, public = new_keypair(comment)
    write_private(path, private)
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return public


def write_private(path: Path, private: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)


def fingerprint(public_line: str) -> str:
    """`SHA256:...` as `ssh-keygen -l` prints it."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def host_key_entry(public_line: str) -> str:
    """`ssh-ed25519 AAAA...` without the comment, as known_hosts wants it."""
    return " ".join(public_line.split()[:2])


def publish(known_hosts: Path, entries: dict[str, str]) -> None:
    """Set the known_hosts lines of the given addresses (address -> `type key`), keep every other line,
    and replace the file atomically so a reader never sees half of it."""
    lines = known_hosts.read_text().splitlines() if known_hosts.exists() else []
    kept = [line for line in lines if line.split(" ", 1)[0] not in entries]
    kept += [f"{address} {key}" for address, key in entries.items()]
    fd, tmp = tempfile.mkstemp(dir=known_hosts.parent, prefix=".known_hosts.")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(kept) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, known_hosts)
