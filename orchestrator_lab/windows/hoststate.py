"""One Windows stand-in host's state: the JSON file the scenario generator wrote, kept in memory.

The file is the single source of truth shared with the lab: commands that change the host (Set-Content,
Remove-Item, Stop-Service...) are written back atomically so they survive a restart and the lab can see
them, and a file replaced from outside (the lab reimaging the host) is picked up on the next command.
Windows paths are case-insensitive but case-preserving, so lookups go through a casefolded index.

A file entry holds its bytes one of three ways: `content` (text, stored as UTF-8), `data` (base64, for
bytes written by a client that are not UTF-8), or `fill` (a seed: the scenario's large binary files,
synthesized on demand so a lab stays small on disk). Hashes are always computed from those bytes, so
what a probe, `win_stat` or `Get-FileHash` reports is what `fetch` copies.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import functools
import hashlib
import json
import ntpath
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HIVES = {
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKEY_CURRENT_USER": "HKCU",
    "HKEY_CLASSES_ROOT": "HKCR",
    "HKEY_USERS": "HKU",
    "HKEY_CURRENT_CONFIG": "HKCC",
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_path(path: str, cwd: str = "C:\\") -> str:
    """An absolute, normalized Windows path (drive letter upper-cased, no trailing separator)."""
    path = path.strip().replace("/", "\\")
    if path.lower().startswith("filesystem::"):
        path = path[len("filesystem::") :]
    if not ntpath.isabs(path) or not ntpath.splitdrive(path)[0]:
        path = ntpath.join(cwd, path)
    path = ntpath.normpath(path)
    drive, rest = ntpath.splitdrive(path)
    rest = rest.rstrip("\\") or "\\"
    return drive.upper() + rest


def normalize_key(path: str) -> str:
    """A registry key in the short-hive form `HKLM\\SOFTWARE\\...` whatever spelling PowerShell allows."""
    path = path.strip().replace("/", "\\")
    if path.lower().startswith("registry::"):
        path = path[len("registry::") :]
    hive, _, rest = path.partition("\\")
    hive = hive.rstrip(":").upper()
    hive = HIVES.get(hive, hive)
    rest = rest.strip("\\")
    return f"{hive}\\{rest}" if rest else hive


FILL_BLOCK = 65536


@functools.lru_cache(maxsize=16)
def _fill_block(seed: str) -> bytes:
    return hashlib.shake_256(bytes.fromhex(seed)).digest(FILL_BLOCK)


def _fill(seed: str, size: int, offset: int, length: int) -> bytes:
    """Bytes [offset, offset+length) of a synthesized file: one random block, repeated to `size`."""
    block = _fill_block(seed)
    end = min(size, offset + length)
    if end <= offset:
        return b""
    start = offset % FILL_BLOCK
    count = (start + end - offset) // FILL_BLOCK + 1
    return (block * count)[start : start + end - offset]


def entry_bytes(entry: dict[str, Any], offset: int = 0, length: int | None = None) -> bytes | None:
    """The file's bytes (or a range of them), or None for an entry that records only a size."""
    size = int(entry.get("size", 0))
    if "fill" in entry and "content" not in entry and "data" not in entry:
        return _fill(str(entry["fill"]), size, offset, size if length is None else length)
    if "content" in entry:
        data = str(entry["content"]).encode("utf-8")
    elif "data" in entry:
        data = base64.b64decode(str(entry["data"]))
    else:
        return None
    return data[offset:] if length is None else data[offset : offset + length]


@functools.lru_cache(maxsize=1024)
def _fill_digest(seed: str, size: int, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    block = _fill_block(seed)
    for _ in range(size // FILL_BLOCK):
        hasher.update(block)
    hasher.update(block[: size % FILL_BLOCK])
    return hasher.hexdigest()


def entry_digest(entry: dict[str, Any], algorithm: str = "sha256") -> str | None:
    """Hex digest of the file's bytes (a hashlib name); the recorded sha256 when no bytes are kept."""
    if "fill" in entry and "content" not in entry and "data" not in entry:
        return _fill_digest(str(entry["fill"]), int(entry.get("size", 0)), algorithm)
    data = entry_bytes(entry)
    if data is None:
        return str(entry["sha256"]) if algorithm == "sha256" and entry.get("sha256") else None
    return hashlib.new(algorithm, data).hexdigest()


def expand_env(text: str, env: dict[str, str]) -> str:
    """%NAME% expanded as Windows does (case-insensitive names; unknown ones left as they are)."""
    folded = {k.casefold(): v for k, v in env.items()}
    return re.sub(r"%([^%]+)%", lambda m: folded.get(m.group(1).casefold(), m.group(0)), text)


def matches(name: str, pattern: str) -> bool:
    """Windows wildcard match: case-insensitive, `*` and `?`."""
    return fnmatch.fnmatchcase(name.casefold(), pattern.casefold())


class HostState:
    """The state file of one host, with the operations the command interpreter needs."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock = threading.RLock()
        self._stamp: tuple[int, int, int] | None = None
        self._batch = 0  # > 0 inside batch(): changes are written once, at its end
        self._dirty = False
        self.data: dict[str, Any] = {}
        self._load()

    # -- persistence ---------------------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self.path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        stamp = self._file_stamp()
        self.data = json.loads(self.path.read_text(encoding="utf-8"))
        for key in ("files", "registry", "services"):
            self.data.setdefault(key, {})
        for key in ("dirs", "eventlog", "shadow_copies", "scheduled_tasks"):
            self.data.setdefault(key, [])
        self._stamp = stamp
        self._reindex()

    def refresh(self) -> None:
        """Reload when someone else replaced the file (a reimage), so the host answers from the new state."""
        with self.lock:
            try:
                stamp = self._file_stamp()
            except FileNotFoundError:
                return
            if stamp != self._stamp:
                self._load()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make several changes (an archive's files) with one write of the state file."""
        with self.lock:
            self._batch += 1
            try:
                yield
            finally:
                self._batch -= 1
                if not self._batch and self._dirty:
                    self.save()

    def save(self) -> None:
        with self.lock:
            if self._batch:
                self._dirty = True
                return
            self._dirty = False
            fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self.data, handle, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
            self._stamp = self._file_stamp()

    def _reindex(self) -> None:
        self._file_index = {p.casefold(): p for p in self.data["files"]}
        self._key_index = {k.casefold(): k for k in self.data["registry"]}
        dirs: dict[str, str] = {}
        for path in [*self.data["files"], *self.data["dirs"]]:
            parent = path if path in self.data["dirs"] else ntpath.dirname(path)
            while parent and parent.casefold() not in dirs:
                dirs[parent.casefold()] = parent
                up = ntpath.dirname(parent)
                parent = "" if up == parent else up
        self._dir_index = dirs

    # -- identity ------------------------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        return str(self.data.get("hostname", "WINHOST"))

    # -- files ---------------------------------------------------------------------------------------
    def file(self, path: str) -> tuple[str, dict[str, Any]] | None:
        real = self._file_index.get(path.casefold())
        return (real, self.data["files"][real]) if real else None

    def is_dir(self, path: str) -> bool:
        return path.casefold() in self._dir_index or ntpath.splitdrive(path)[1] == "\\"

    def dir_name(self, path: str) -> str:
        return self._dir_index.get(path.casefold(), path)

    def files_under(self, root: str, max_depth: int | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Files below `root`; depth 0 means root's own children (as Get-ChildItem -Depth counts)."""
        prefix = root.casefold().rstrip("\\") + "\\"
        for path in sorted(self.data["files"], key=str.casefold):
            folded = path.casefold()
            if not folded.startswith(prefix):
                continue
            depth = folded[len(prefix) :].count("\\")
            if max_depth is None or depth <= max_depth:
                yield path, self.data["files"][path]

    def children(self, root: str) -> list[tuple[str, bool]]:
        """Immediate children of a directory: (path, is_directory)."""
        prefix = root.casefold().rstrip("\\") + "\\"
        found: dict[str, tuple[str, bool]] = {}
        for folded, real in self._dir_index.items():
            if folded.startswith(prefix) and "\\" not in folded[len(prefix) :]:
                found[folded] = (real, True)
        for folded, real in self._file_index.items():
            if folded.startswith(prefix) and "\\" not in folded[len(prefix) :]:
                found[folded] = (real, False)
        return [found[k] for k in sorted(found)]

    def write_bytes(self, path: str, data: bytes, mtime: str | None = None) -> None:
        """Replace a file with raw bytes (an upload, a copy): text when they are UTF-8, base64 otherwise."""
        try:
            self.write_file(path, data.decode("utf-8"), mtime=mtime)
            return
        except UnicodeDecodeError:
            pass
        with self.lock:
            existing = self.file(path)
            self.data["files"][existing[0] if existing else path] = {
                "data": base64.b64encode(data).decode(),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "mtime": mtime or now_iso(),
            }
            self._reindex()
            self.save()

    def write_file(self, path: str, content: str, append: bool = False, mtime: str | None = None) -> None:
        with self.lock:
            existing = self.file(path)
            real = existing[0] if existing else path
            if append and existing:
                content = str(existing[1].get("content", "")) + content
            data = content.encode("utf-8")
            self.data["files"][real] = {
                "content": content,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "mtime": mtime or now_iso(),
            }
            self._reindex()
            self.save()

    def make_dir(self, path: str) -> None:
        with self.lock:
            if not self.is_dir(path):
                self.data["dirs"].append(path)
                self._reindex()
                self.save()

    def remove(self, path: str, recurse: bool) -> bool:
        """Remove a file or a directory tree; False when the directory is not empty and not recursive."""
        with self.lock:
            parent = self.dir_name(ntpath.dirname(path))
            existing = self.file(path)
            if existing:
                del self.data["files"][existing[0]]
            else:
                prefix = path.casefold().rstrip("\\") + "\\"
                inside = [p for p in self.data["files"] if p.casefold().startswith(prefix)]
                inside_dirs = [d for d in self.data["dirs"] if d.casefold().startswith(prefix)]
                if (inside or inside_dirs) and not recurse:
                    return False
                for p in inside:
                    del self.data["files"][p]
                self.data["dirs"] = [
                    d
                    for d in self.data["dirs"]
                    if d.casefold() != path.casefold() and not d.casefold().startswith(prefix)
                ]
            self._reindex()
            if not self.is_dir(parent):  # emptied, but a directory does not vanish with its last child
                self.data["dirs"].append(parent)
                self._reindex()
            self.save()
            return True

    # -- registry ------------------------------------------------------------------------------------
    def keys(self, pattern: str) -> list[str]:
        """Registry keys matching a key path whose segments may hold wildcards."""
        wanted = normalize_key(pattern)
        if "*" not in wanted and "?" not in wanted:
            real = self._key_index.get(wanted.casefold())
            return [real] if real else []
        depth = wanted.count("\\")
        return sorted(
            (k for k in self.data["registry"] if k.count("\\") == depth and matches(k, wanted)),
            key=str.casefold,
        )

    def values(self, key: str) -> dict[str, Any]:
        return self.data["registry"][key]

    def create_key(self, key: str) -> str:
        with self.lock:
            key = normalize_key(key)
            real = self._key_index.get(key.casefold(), key)
            self.data["registry"].setdefault(real, {})
            self._reindex()
            self.save()
            return real

    def remove_key(self, key: str) -> None:
        """Remove a key and its subkeys (Remove-Item -Recurse on a registry path)."""
        with self.lock:
            prefix = key.casefold() + "\\"
            for k in [
                k
                for k in self.data["registry"]
                if k.casefold() == key.casefold() or k.casefold().startswith(prefix)
            ]:
                del self.data["registry"][k]
            self._reindex()
            self.save()

    def remove_value(self, key: str, name: str) -> None:
        with self.lock:
            values = self.data["registry"][key]
            for n in [n for n in values if n.casefold() == name.casefold()]:
                del values[n]
            self.save()

    def set_value(self, key: str, name: str, value: Any) -> None:
        with self.lock:
            key = normalize_key(key)
            real = self._key_index.get(key.casefold(), key)
            self.data["registry"].setdefault(real, {})[name] = value
            self._reindex()
            self.save()

    # -- services ------------------------------------------------------------------------------------
    def service(self, name: str) -> tuple[str, dict[str, Any]] | None:
        for real, svc in self.data["services"].items():
            if (
                real.casefold() == name.casefold()
                or str(svc.get("display_name", "")).casefold() == name.casefold()
            ):
                return real, svc
        return None

    def update_service(self, name: str, **changes: Any) -> None:
        with self.lock:
            self.data["services"][name].update(changes)
            self.save()
