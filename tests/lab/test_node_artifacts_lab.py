"""A compromised execution node over real SSH: a lab host whose `ansible-runner` was replaced by the
attacker's answers a stage with a crafted stream (a symlink entry, then a file through it, an absolute
path, a `..` path). Nothing lands outside the node's folder, its host fails with the reason, and the
controller's own host finishes the stage.
"""

from __future__ import annotations

import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import needs_lab
from tests.unit.test_node_artifacts import _entry, _zip, worker_stream

pytestmark = [pytest.mark.lab, needs_lab]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A controller folder the node must not reach."""
    target = tmp_path / "controller"
    target.mkdir()
    (target / "authorized_keys").write_text("operator key\n")
    return target


def test_a_compromised_node_fails_its_hosts_and_the_stage_goes_on(
    lab: Any, tmp_path: Path, outside: Path
) -> None:
    from orchestrator import inventory as inventory_lib
    from orchestrator.execution import nodes, runner

    clean = [
        h
        for h in lab.hosts
        if h["os"] == "linux" and h["scenario"]["kind"] == "clean" and not h.get("reimages")
    ]
    assert len(clean) >= 3, "the session lab needs three clean Linux hosts"
    honest, victim, node_host = clean[0]["name"], clean[1]["name"], clean[2]["name"]
    token = uuid.uuid4().hex
    archive = _zip(
        [
            _entry("staging", str(outside).encode(), stat.S_IFLNK | 0o777),
            _entry("staging/authorized_keys", b"attacker key\n"),
            _entry(f"{outside}/abs-{token}", b"evil"),
            _entry(f"../../../escape-{token}", b"evil"),
        ]
    )
    ok_event = {
        "counter": 1, "uuid": str(uuid.uuid4()), "event": "runner_on_ok",
        "event_data": {"host": victim, "task": runner.DONE_TASK, "res": {}},
    }  # fmt: skip
    stream = worker_stream(archive, [ok_event])  # the node claims the host finished the stage
    # The node's worker is the attacker's: it swallows what it is sent and answers with the crafted stream.
    remote_stream, worker = f"/var/tmp/evil-stream-{token}", f"/var/tmp/evil-worker-{token}"
    script = f"#!/bin/sh\ncat >/dev/null\ncat {remote_stream}\n"
    for path, data, mode in ((remote_stream, stream, "600"), (worker, script.encode(), "700")):
        subprocess.run(
            lab.ssh_command(node_host, f"cat > {path} && chmod {mode} {path}"), input=data, check=True
        )

    playbook = tmp_path / "playbooks" / "ping.yml"
    playbook.parent.mkdir()
    playbook.write_text(
        f"- hosts: all\n  gather_facts: false\n  tasks:\n    - name: {runner.DONE_TASK}\n      ping:\n"
    )
    inv = inventory_lib.load([str(lab.inventory)])
    node = nodes.Node.from_host(inv.hosts[node_host])
    node = nodes.Node(node.name, node.address, node.port, node.user, node.ssh_options, runner=worker)
    spec = runner.StageSpec(
        stage="validate",
        playbook=playbook,
        inventory=[str(lab.inventory)],
        hosts=[honest, victim],
        extravars={},
        private_dir=tmp_path / "stage",
        forks=2,
        placement={victim: node},
    )
    outcome = runner.run_stage(spec)
    assert outcome.hosts[honest].ok, outcome.hosts[honest]
    refused = outcome.hosts[victim]
    assert not refused.ok and not refused.interrupted
    assert refused.message.startswith(
        f"execution node {node_host} sent unsafe artifacts: artifact entry 'staging'"
    )
    assert "a symbolic link" in refused.message
    assert sorted(p.name for p in outside.iterdir()) == ["authorized_keys"]
    assert (outside / "authorized_keys").read_text() == "operator key\n"
    assert not list(tmp_path.rglob(f"*{token}*"))
    assert not (tmp_path / "stage" / "staging" / victim).exists()
