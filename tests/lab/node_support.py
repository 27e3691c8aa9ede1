"""The two-site lab of the execution-node and triage-node tests: its size, the orchestrator as a new
process on it, and which node serves each host. The lab itself is the `site_lab` fixture
(tests/lab/conftest.py), one per test module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

# 14 hosts and 2 nodes, seed 3: the identity and EHR hosts answer, so waves 1 and 2 have work.
HOSTS, NODES, SEED = 14, 2, 3


def orchestrator(db: Path, *args: str, operator: str = "node-test", **kwargs: Any) -> subprocess.Popen:
    """`orchestrator ARGS` as a new process on database `db`, its output captured as text."""
    env = {**os.environ, "ORCHESTRATOR_DB": str(db), "ORCHESTRATOR_OPERATOR": operator}
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def site_of(lab: Path) -> dict[str, str]:
    """host -> its execution node, from the lab's inventory."""
    inv = lab / "inventory"
    groups = yaml.safe_load((inv / "hosts.yml").read_text())["all"]["children"]
    out = {}
    for site, group in groups.items():
        if site.startswith("site_"):
            node = yaml.safe_load((inv / "group_vars" / f"{site}.yml").read_text())["recovery_execution_node"]
            out.update({name: node for name in group["hosts"]})
    return out
