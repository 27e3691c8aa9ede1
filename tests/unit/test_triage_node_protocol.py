"""Triage through execution nodes, the parts that need no lab: what the controller sends a node (no
password crosses, templates stay templates), the real `orchestrator triage agent` answering a request
on stdin, and every line a hostile node could send refused by the controller's reader."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator.inventory import cache
from orchestrator.triage import evidence, node_request, node_results
from orchestrator.triage import packs as packs_lib
from orchestrator.triage.engine import Hit, HostResult, Settings

STARTED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def packs() -> list[packs_lib.Pack]:
    return packs_lib.load()


@pytest.fixture
def hosts(tmp_path: Path) -> list:
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n  vars:\n    site_pw: hunter2-literal\n    db_password: db-literal\n"
        "    pw_from_env: \"{{ lookup('env', 'NODE_PW') }}\"\n  hosts:\n"
        "    gone:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n      ansible_user: root\n"
        '      ansible_password: "{{ pw_from_env }}"\n      ansible_become_password: literal-become\n'
        "      ansible_ssh_private_key_file: /nonexistent/key\n      recovery_triage_exclude: [/srv/evidence]\n"
        '      unrelated: "{{ site_pw }}"\n'
    )
    return list(cache.load([str(inv)]).hosts.values())


def test_a_node_gets_templates_and_paths_but_no_password(hosts: list, packs: list) -> None:
    data = node_request.encode(hosts, packs, Settings(timeout=5), STARTED, {"SHA256:ours"})
    text = data.decode()
    for secret in ("hunter2-literal", "db-literal", "literal-become"):
        assert secret not in text
    sent = json.loads(text)["hosts"][0]["vars"]
    # The password crosses as the template the node renders from its own environment, with what it names.
    assert sent["ansible_password"] == {"__orchestrator_trusted_template__": "{{ pw_from_env }}"}
    assert sent["pw_from_env"] == {"__orchestrator_trusted_template__": "{{ lookup('env', 'NODE_PW') }}"}
    assert sent["ansible_ssh_private_key_file"] == "/nonexistent/key"
    assert sent["recovery_triage_exclude"] == ["/srv/evidence"]
    assert "unrelated" not in sent and "groups" not in sent and "ansible_playbook_python" not in sent
    request = node_request.decode(data)
    assert [p.model_dump() for p in request.packs] == [p.model_dump() for p in packs]
    assert request.settings.timeout == 5 and request.started == STARTED
    assert request.trusted_keys == {"SHA256:ours"}
    assert request.hosts[0].vars["ansible_password"] == "{{ pw_from_env }}"  # a TrustedTemplate again


def test_the_agent_answers_one_line_per_host_then_its_end_marker(hosts: list, packs: list) -> None:
    request = node_request.encode(hosts, packs, Settings(timeout=5), STARTED, {"SHA256:ours"})
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "triage", "agent"],
        input=request,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    reader = node_results.Reader({"gone": "linux"}, packs, evidence.Scrubber([]), 5, False)
    lines = proc.stdout.splitlines(keepends=True)
    assert len(lines) == 2
    result = reader.read(lines[0])
    assert result is not None and result.verdict == "unreachable" and "refused" in (result.reason or "")
    assert reader.read(lines[1]) is None and reader.done == 1 and reader.expected == {}


def test_the_agent_refuses_a_request_it_cannot_read() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "triage", "agent"],
        input=b'{"version": 1, "hosts": "nope"}',
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.decode().count("\n") == 1 and "invalid triage request" in proc.stderr.decode()


def _line(**changes: object) -> bytes:
    result = {
        "host": "web-01",
        "os": "linux",
        "verdict": "infected",
        "reason": None,
        "duration_s": 0.5,
        "compromise_time": "2026-11-30T10:00:00+00:00",
        "matches": [
            {
                "check_id": "lockbit3-note-linux",
                "title": None,
                "severity": None,
                "first_seen": "2026-11-30T10:00:00+00:00",
                "evidence": "path=/srv/README.txt password=s3cret",
            }
        ],
        "new_key": None,
    }
    result.update(changes)
    return json.dumps(result).encode() + b"\n"


@pytest.fixture
def reader(packs: list) -> node_results.Reader:
    return node_results.Reader(
        {"web-01": "linux", "web-02": "linux"}, packs, evidence.Scrubber(["s3cret"]), 10, False
    )


def _ok_match(reader: node_results.Reader, **changes: object) -> dict:
    """A match of the shipped LockBit note check as the agent writes it (title and severity ours)."""
    check = reader.checks["lockbit3-note-linux"]
    match = {**json.loads(_line())["matches"][0], "title": check.title, "severity": check.severity}
    match.update(changes)
    return match


def test_a_believable_line_is_read_scrubbed_and_its_host_answered(reader: node_results.Reader) -> None:
    result = reader.read(_line(matches=[_ok_match(reader)]))
    assert result is not None and result.verdict == "infected" and result.hits[0].severity == "infected"
    assert "s3cret" not in result.hits[0].evidence and "***" in result.hits[0].evidence
    assert result.compromise_time == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert set(reader.expected) == {"web-02"}
    with pytest.raises(node_results.BadLine, match="already answered"):
        reader.read(_line(matches=[_ok_match(reader)]))
    with pytest.raises(node_results.BadLine, match="end marker counting"):
        reader.read(b'{"done": 2}\n')  # one host is still owed
    assert reader.read(b'{"done": 1}\n') is None
    with pytest.raises(node_results.BadLine, match="after the end marker"):
        reader.read(_line(host="web-02", verdict="clean", compromise_time=None, matches=[]))


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"host": "db-99"}, "not asked"),
        ({"os": "windows"}, "os 'windows'"),
        ({"verdict": "pwned"}, "verdict 'pwned'"),
        ({"verdict": "clean"}, "its matches say infected"),
        ({"matches": [], "compromise_time": None}, "without a match"),
        ({"compromise_time": "2020-01-01T00:00:00+00:00"}, "compromise time"),
        ({"compromise_time": "2026-11-30T10:00:00"}, "without its zone"),
        ({"duration_s": float("nan")}, "out of bounds"),
        ({"duration_s": True}, "not a number"),
        ({"reason": "x" * 5000}, "reason is not text"),
        ({"new_key": "ssh-ed25519 AAAA"}, "without --trust-new-keys"),
        ({"extra": 1}, "not a host result"),
        ({"matches": [{"check_id": "not-ours"}]}, "a match that is not one"),
    ],
)
def test_a_line_we_cannot_believe_is_refused(reader: node_results.Reader, changes: dict, why: str) -> None:
    line = _line(matches=[_ok_match(reader)])
    data = json.loads(line)
    data.update(changes)
    with pytest.raises(node_results.BadLine, match=why):
        reader.read(json.dumps(data).encode())


@pytest.mark.parametrize(
    ("match", "why"),
    [
        ({"check_id": "no-such-check"}, "it was not sent"),
        ({"severity": "info"}, "another title or severity"),
        ({"title": "[red]forged[/]"}, "another title or severity"),
        ({"evidence": "x" * 6000}, "evidence is not text"),
        ({"first_seen": 12}, "not ISO 8601"),
    ],
)
def test_a_match_we_did_not_send_or_that_says_more_is_refused(
    reader: node_results.Reader, match: dict, why: str
) -> None:
    with pytest.raises(node_results.BadLine, match=why):
        reader.read(_line(matches=[_ok_match(reader, **match)]))


def test_an_oversized_or_garbled_line_is_refused(reader: node_results.Reader) -> None:
    with pytest.raises(node_results.BadLine, match="over"):
        reader.read(b"x" * (node_results.MAX_LINE + 1))
    with pytest.raises(node_results.BadLine, match="not JSON"):
        reader.read(b"\xff\xfe{\n")
    with pytest.raises(node_results.BadLine, match="not JSON"):
        reader.read(b"[" * 200_000)
    with pytest.raises(node_results.BadLine, match="not a host result"):
        reader.read(b"[1, 2]\n")


def test_what_the_agent_encodes_the_reader_reads_back(reader: node_results.Reader) -> None:
    """The two ends share one format: a result as `encode` writes it (the agent) passes the reader
    unchanged, matches included (a key renamed on one side only turned every node verdict into an error)."""
    check = reader.checks["lockbit3-note-linux"]
    seen = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    sent = HostResult(
        "web-01",
        "linux",
        "infected",
        None,
        0.5,
        seen,
        [Hit(check.id, check.title, check.severity, "path=/srv/x", seen)],
    )
    got = reader.read(node_results.encode(sent))
    assert got is not None and (got.verdict, got.compromise_time) == ("infected", seen)
    assert [(h.check_id, h.evidence, h.first_seen) for h in got.hits] == [(check.id, "path=/srv/x", seen)]
