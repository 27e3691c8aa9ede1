"""A compromised execution node's stream: its artifacts zip may hold symlinks, absolute paths, `..`
names, device files or a bomb, and its events may carry path-like ids. Nothing it sends may land
outside the node's artifacts folder; the stage refuses the node's hosts with a clear reason and goes on
for the others.

These tests feed streams shaped exactly as `ansible-runner worker` writes them (status and event
lines, `{"zipfile": N}` and the base64 archive, `{"eof": true}`) through our `process` side with
ansible-runner's real Processor underneath; tests/lab/test_node_artifacts_lab.py sends one over real
SSH from a lab host whose worker was replaced by an attacker's.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from orchestrator.execution import node_artifacts


def _entry(name: str, data: bytes = b"x", mode: int = stat.S_IFREG | 0o644) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = mode << 16
    return info, data


def _zip(entries: list[tuple[zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buffer.getvalue()


def worker_stream(archive: bytes, events: list[dict[str, Any]] | None = None) -> bytes:
    """What a worker prints: events, its final status, the artifacts, the end marker."""
    lines = [json.dumps({"status": "starting"}).encode()]
    lines += [json.dumps(e).encode() for e in events or []]
    lines.append(json.dumps({"status": "successful", "rc": 0}).encode())
    lines.append(json.dumps({"zipfile": len(archive)}).encode())
    body = b"\n".join(lines) + b"\n" + base64.b64encode(archive)
    return body + json.dumps({"eof": True}).encode() + b"\n"


def _process(private: Path, stream: bytes) -> tuple[list[dict], Exception | None]:
    statuses: list[dict] = []
    processor = node_artifacts.processor(
        _input=io.BytesIO(stream),
        private_data_dir=str(private),
        ident="run",
        quiet=True,
        event_handler=lambda event: True,
        status_handler=lambda data, runner_config: statuses.append(dict(data)),
    )
    try:
        processor.run()
    except node_artifacts.UnsafeArtifacts as exc:
        return statuses, exc
    return statuses, None


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A controller folder the node must not reach."""
    target = tmp_path / "controller"
    target.mkdir()
    (target / "authorized_keys").write_text("operator key\n")
    return target


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        (
            lambda o: [
                _entry("link", str(o).encode(), stat.S_IFLNK | 0o777),
                _entry("link/authorized_keys", b"evil"),
            ],
            "'link' refused: a symbolic link",
        ),
        (lambda o: [_entry("ok.txt"), _entry(f"{o}/authorized_keys", b"evil")], "not a plain relative path"),
        (
            lambda o: [_entry("staging/../../../controller/authorized_keys", b"evil")],
            "'..' leaves the artifacts",
        ),
        (lambda o: [_entry("fifo", b"", stat.S_IFIFO | 0o644)], "'fifo' refused: a special file"),
        (lambda o: [_entry("dev", b"", stat.S_IFCHR | 0o644)], "'dev' refused: a special file"),
        (lambda o: [_entry("C:/Windows/x", b"evil")], "not a plain relative path"),
        (lambda o: [_entry("a\\..\\..\\x", b"evil")], "not a plain relative path"),
    ],
    ids=["symlink-then-file", "absolute", "dotdot", "fifo", "device", "drive", "backslash"],
)
def test_unsafe_entries_are_refused_before_anything_is_written(
    tmp_path: Path, outside: Path, entries: Any, reason: str
) -> None:
    private = tmp_path / "node-evil"
    before = _tree(tmp_path)
    statuses, refused = _process(private, worker_stream(_zip(entries(outside)), []))
    assert refused is not None and reason in str(refused), refused
    assert (outside / "authorized_keys").read_text() == "operator key\n"
    written = _tree(tmp_path) - before
    assert written <= {
        "node-evil",
        "node-evil/artifacts",
        "node-evil/artifacts/run",
        "node-evil/artifacts/run/job_events",
    }
    assert statuses and statuses[-1]["status"] == "successful"  # what the node claimed; not believed


def test_a_link_planted_in_the_folder_is_not_followed(tmp_path: Path, outside: Path) -> None:
    """Even a link that is already there (not from this archive) is never written through."""
    artifacts = tmp_path / "node" / "artifacts" / "run"
    artifacts.mkdir(parents=True)
    (artifacts / "staging").symlink_to(outside)
    (artifacts / "stdout").symlink_to(outside / "authorized_keys")
    for name in ("staging/authorized_keys", "stdout"):
        _statuses, refused = _process(tmp_path / "node", worker_stream(_zip([_entry(name, b"evil")])))
        assert refused is not None and "refused" in str(refused)
    assert (outside / "authorized_keys").read_text() == "operator key\n"


def test_sizes_and_counts_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(node_artifacts, "MAX_TOTAL", 1 << 20)
    bomb = _zip([_entry("a", b"\0" * (1 << 20)), _entry("b", b"\0" * 10)])  # compresses to ~1 KB
    assert len(bomb) < 10_000
    _statuses, refused = _process(tmp_path / "n1", worker_stream(bomb))
    assert refused is not None and "larger than 1048576 bytes" in str(refused)
    monkeypatch.setattr(node_artifacts, "MAX_ENTRIES", 3)
    _statuses, refused = _process(tmp_path / "n2", worker_stream(_zip([_entry(f"f{i}") for i in range(4)])))
    assert refused is not None and "4 entries refused" in str(refused)
    huge = b'{"zipfile": 99999999999999}\n'
    _statuses, refused = _process(tmp_path / "n3", huge)
    assert refused is not None and "announced size" in str(refused)
    monkeypatch.setattr(node_artifacts, "MAX_LINE", 1000)
    _statuses, refused = _process(tmp_path / "n5", b'{"event": "' + b"x" * 5000)
    assert refused is not None and "line of over 1000 bytes" in str(refused)
    cut = worker_stream(_zip([_entry("a", os.urandom(5000))]))[:300]
    _statuses, refused = _process(tmp_path / "n4", cut)
    assert refused is not None and "ended inside the artifacts" in str(refused)


def test_event_files_are_named_only_by_a_real_counter_and_uuid(tmp_path: Path, outside: Path) -> None:
    good = str(uuid.uuid4())
    events = [
        {"counter": 1, "uuid": good, "event": "playbook_on_start"},
        {"counter": 2, "uuid": f"../../../../{outside.relative_to('/')}/x", "event": "runner_on_ok"},
        {"counter": "../../x", "uuid": good, "event": "runner_on_ok"},
    ]
    _statuses, refused = _process(tmp_path / "node", worker_stream(_zip([_entry("stdout", b"ok\n")]), events))
    assert refused is None
    events_dir = tmp_path / "node" / "artifacts" / "run" / "job_events"
    assert sorted(p.name for p in events_dir.iterdir()) == [f"1-{good}.json"]
    assert sorted(p.name for p in outside.iterdir()) == ["authorized_keys"]


def test_a_real_worker_archive_unpacks_as_before(tmp_path: Path) -> None:
    """ansible-runner's own stream_dir output (what an honest node sends) is unpacked whole, private."""
    from ansible_runner.utils.streaming import stream_dir

    source = tmp_path / "worker-artifacts"
    (source / "staging" / "web-01").mkdir(parents=True)
    (source / "staging" / "web-01" / "manifest.json").write_text('{"items": []}')
    (source / "stdout").write_text("PLAY RECAP\n")
    (source / "job_events").mkdir()
    out = io.BytesIO()
    out.name = "stream"  # stream_dir looks at it
    stream_dir(str(source), out)
    archive_part = out.getvalue()
    stream = (
        json.dumps({"status": "successful", "rc": 0}).encode() + b"\n" + archive_part + b'{"eof": true}\n'
    )
    _statuses, refused = _process(tmp_path / "node", stream)
    assert refused is None
    target = tmp_path / "node" / "artifacts" / "run"
    assert (target / "staging" / "web-01" / "manifest.json").read_text() == '{"items": []}'
    assert (target / "stdout").read_text() == "PLAY RECAP\n"
    assert stat.S_IMODE((target / "stdout").stat().st_mode) == 0o600
