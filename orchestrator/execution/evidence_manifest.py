"""The evidence manifest a host's collect stage leaves for the orchestrator, read as untrusted data.

The collect playbook writes `staging/<host>/manifest.json` from what the host's modules reported: the
path of each item on the host, its SHA-256 and size as hashed there, and where the evidence store
keeps it (under a name the controller made: `files/<index>`). A host that controls its interpreter
controls those values, so each one is checked for its type and shape before it reaches the database;
a manifest that does not pass fails the host's collect with the reason, it is never half recorded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_BYTES = 16 * 1024 * 1024
MAX_ITEMS = 100_000
MAX_PATH = 4096


class ManifestError(Exception):
    """The manifest is missing or not what our playbook writes."""


def read(path: Path) -> list[dict[str, Any]]:
    """The manifest's items as {path, sha256, size, stored_at}; raises ManifestError."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ManifestError(f"no evidence manifest: {exc.strerror}") from exc
    if len(raw) > MAX_BYTES:
        raise ManifestError(f"evidence manifest larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"evidence manifest is not JSON: {exc}") from exc
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        raise ManifestError("evidence manifest has no list of items")
    return [_item(i, item) for i, item in enumerate(items)]


def _item(index: int, item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ManifestError(f"evidence manifest item {index} is not an object")
    path, sha256, size, stored_at = (item.get(k) for k in ("path", "sha256", "size", "stored_at"))
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise ManifestError(f"evidence manifest item {index}: bad path")
    if not isinstance(sha256, str) or not SHA256.fullmatch(sha256):
        raise ManifestError(f"evidence manifest item {index}: bad sha256")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"evidence manifest item {index}: bad size")
    if stored_at is not None and (not isinstance(stored_at, str) or len(stored_at) > MAX_PATH):
        raise ManifestError(f"evidence manifest item {index}: bad stored_at")
    return {"path": _text(path), "sha256": sha256, "size": size, "stored_at": stored_at}


def _text(path: str) -> str:
    """A host path that was not UTF-8 (its bytes arrive as lone surrogates) as text the database can
    hold: the undecodable bytes written as \\xNN."""
    try:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in path)
