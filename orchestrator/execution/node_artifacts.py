"""What an execution node streams back, taken in by our code: its events written only under their own
names, its artifacts zip unpacked only into the node's artifacts folder.

A node runs next to hosts that are the attacker's, and may be the attacker's itself. ansible-runner's
own `process` side trusts it: `unstream_dir` recreates the symlinks of the node's zip and extracts later
entries through them (a link `x -> /` and then `x/root/.ssh/authorized_keys` writes any controller file),
follows absolute and `..` names, and event files are named after the node's `counter` and `uuid`. Here
the archive is checked whole before a byte is written (names relative and plain; regular files and
directories only), every size is capped, and each file is created through directory descriptors opened
without following links, so not even a link planted by someone else in the folder is followed.
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
import json
import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MAX_ZIP = 2 * 1024**3  # the archive as streamed (compressed)
MAX_TOTAL = 4 * 1024**3  # everything it unpacks to: evidence manifests, job events, stdout
MAX_ENTRIES = 100_000
MAX_LINE = 16 * 1024 * 1024  # one event or status line
CHUNK = 1024 * 1024
_EVENT_UUID = re.compile(r"[0-9a-fA-F-]{1,64}")
_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeArtifacts(Exception):
    """The node's artifacts were refused; nothing of them outside its folder, the reason says why."""


def processor(**kwargs: Any) -> Any:
    """ansible-runner's `process` side with our unpacking and event file names (ansible_runner is
    imported here, on first use, as the rest of the CLI does)."""
    from ansible_runner.streaming import Processor

    class NodeProcessor(Processor):  # type: ignore[misc]
        def artifacts_callback(self, artifacts_data: dict[str, Any]) -> None:
            receive(self._input, artifacts_data.get("zipfile"), Path(self.artifact_dir))
            if self.artifacts_handler is not None:
                self.artifacts_handler(self.artifact_dir)

        def event_callback(self, event_data: dict[str, Any]) -> None:
            counter, uuid = event_data.get("counter"), event_data.get("uuid")
            if not counter or not uuid:
                return
            keep = self.event_handler(event_data) if self.event_handler is not None else True
            if keep and _event_named(counter, uuid):
                path = os.path.join(self.artifact_dir, "job_events", f"{counter}-{uuid}.json")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
                with codecs.getwriter("utf-8")(os.fdopen(fd, "wb")) as handle:
                    json.dump(event_data, handle)

    return NodeProcessor(**{**kwargs, "_input": _BoundedLines(kwargs["_input"])})


class _BoundedLines:
    """The node's stream with each line capped: ansible-runner reads a line whole, however long."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def readline(self, limit: int = -1) -> bytes:
        line = self._stream.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise UnsafeArtifacts(f"a line of over {MAX_LINE} bytes from the node refused")
        return line

    def __getattr__(self, name: str) -> Any:  # read, close, closed... as the stream has them
        return getattr(self._stream, name)


def _event_named(counter: Any, uuid: Any) -> bool:
    """An event file name made of the node's counter and uuid only when both are what they claim."""
    return (
        isinstance(counter, int)
        and not isinstance(counter, bool)
        and counter > 0
        and isinstance(uuid, str)
        and _EVENT_UUID.fullmatch(uuid) is not None
    )


def receive(stream: IO[bytes], length: Any, target: Path) -> None:
    """Read the announced zip (`length` bytes, base64 in the stream) and unpack it into `target`."""
    if not isinstance(length, int) or isinstance(length, bool) or not 0 <= length <= MAX_ZIP:
        raise UnsafeArtifacts(f"artifacts of announced size {str(length)[:40]!r} refused (limit {MAX_ZIP})")
    from ansible_runner.utils.base64io import Base64IO

    with tempfile.TemporaryFile() as archive:
        with Base64IO(stream) as source:
            remaining = length
            while remaining:
                try:
                    data = source.read(min(CHUNK, remaining))
                except (binascii.Error, ValueError):
                    data = b""
                if not data:
                    raise UnsafeArtifacts("the stream ended inside the artifacts (or they are not base64)")
                archive.write(data[:remaining])
                remaining -= len(data[:remaining])
        archive.seek(0)
        try:
            with zipfile.ZipFile(archive) as zf:
                unpack(zf, target)
        except zipfile.BadZipFile as exc:
            raise UnsafeArtifacts(f"artifacts are not a valid zip: {exc}") from None


def unpack(zf: zipfile.ZipFile, target: Path) -> None:
    """Check every entry, then write them; raises UnsafeArtifacts naming the first bad entry."""
    entries = zf.infolist()
    if len(entries) > MAX_ENTRIES:
        raise UnsafeArtifacts(f"artifacts of {len(entries)} entries refused (limit {MAX_ENTRIES})")
    plan = [(info, _parts(info)) for info in entries]
    target.mkdir(parents=True, exist_ok=True)
    budget = MAX_TOTAL
    root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for info, parts in plan:
            if not parts:
                continue
            if info.is_dir():
                with _directory(root, parts):
                    pass
                continue
            with _directory(root, parts[:-1]) as parent:
                budget -= _write(zf, info, parent, parts[-1], budget)
    finally:
        os.close(root)


def _parts(info: zipfile.ZipInfo) -> list[str]:
    name = info.filename
    shown = name[:200]
    if "\0" in name or "\\" in name or name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArtifacts(f"artifact entry {shown!r} refused: not a plain relative path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArtifacts(f"artifact entry {shown!r} refused: '..' leaves the artifacts folder")
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.create_system == 3 and kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        what = "symbolic link" if stat.S_ISLNK(mode) else "special file"
        raise UnsafeArtifacts(f"artifact entry {shown!r} refused: a {what}")
    return parts


@contextlib.contextmanager
def _directory(root: int, parts: list[str]) -> Iterator[int]:
    """A descriptor for root/parts..., each component created if missing and never a link."""
    fd = os.dup(root)
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=fd)
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise UnsafeArtifacts(
                    f"artifact folder {'/'.join(parts)[:200]!r} refused: {exc.strerror}"
                ) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _write(zf: zipfile.ZipFile, info: zipfile.ZipInfo, parent: int, name: str, budget: int) -> int:
    """Write one file (0600, never through a link); returns the bytes written."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK  # a planted FIFO must not block
    try:
        fd = os.open(name, flags, 0o600, dir_fd=parent)
    except OSError as exc:
        raise UnsafeArtifacts(f"artifact entry {info.filename[:200]!r} refused: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeArtifacts(f"artifact entry {info.filename[:200]!r} refused: not a regular file here")
    os.ftruncate(fd, 0)
    written = 0
    with os.fdopen(fd, "wb") as out, zf.open(info) as data:
        while chunk := data.read(CHUNK):
            written += len(chunk)
            if written > budget:
                raise UnsafeArtifacts(f"artifacts larger than {MAX_TOTAL} bytes unpacked refused")
            out.write(chunk)
    return written
