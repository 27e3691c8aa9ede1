"""How the controller reaches an execution node: its SSH command lines, from the node's inventory
entry, for a stage's playbook (`ansible-runner worker`, execution/nodes.py) and for a triage
(`orchestrator triage agent`, triage/node_link.py). Both kinds of work share it, so a node is reached
the same way, with the same host key checking and keepalives, whatever it is asked to do; it sits
outside the layers because the services and triage (below them) both use it.

The ssh process gets a parent-death signal: a node's work dies with the orchestrator that started
it instead of running on unobserved.
"""

from __future__ import annotations

import ctypes
import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

from orchestrator import inventory as inventory_lib

DEFAULT_RUNNER = "ansible-runner"
DEFAULT_ORCHESTRATOR = "orchestrator"  # the product on the node, for `orchestrator triage agent`
DEFAULT_WORKDIR = "/var/tmp"
STDERR_LIMIT = 4000
_PR_SET_PDEATHSIG = 1
# What a node is asked to check on the link: a node that vanishes without closing it is noticed in
# about 15 s instead of the TCP timeout's minutes.
KEEPALIVE = ("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3")


@dataclass(frozen=True)
class Node:
    """How to reach an execution node and start its work, from the node's inventory entry."""

    name: str
    address: str
    port: int
    user: str | None
    ssh_options: tuple[str, ...]
    runner: str = DEFAULT_RUNNER
    workdir: str = DEFAULT_WORKDIR
    orchestrator: str = DEFAULT_ORCHESTRATOR

    @classmethod
    def from_host(cls, host: inventory_lib.Host) -> Node:
        hv = host.vars
        options: list[str] = []
        key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
        if key:
            options += ["-i", str(key)]
        for var in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
            if hv.get(var):
                options += shlex.split(str(hv[var]))
        return cls(
            name=host.name,
            address=host.address,
            port=host.port or 22,
            user=host.user,
            ssh_options=tuple(options),
            runner=str(hv.get("recovery_node_runner") or DEFAULT_RUNNER),
            workdir=str(hv.get("recovery_node_workdir") or DEFAULT_WORKDIR),
            orchestrator=str(hv.get("recovery_node_orchestrator") or DEFAULT_ORCHESTRATOR),
        )

    def worker_dir(self, run_id: str) -> str:
        return f"{self.workdir.rstrip('/')}/orchestrator-worker-{run_id}"

    def command(self, worker_dir: str) -> list[str]:
        """The ssh command line that starts the worker in its own directory and removes it after."""
        runner_dir = str(Path(self.runner).parent)
        path = f"PATH={shlex.quote(runner_dir)}:$PATH " if runner_dir not in ("", ".") else ""
        remote = (
            f"umask 077 && mkdir {shlex.quote(worker_dir)} && "
            f"{path}{shlex.quote(self.runner)} worker --private-data-dir {shlex.quote(worker_dir)}; "
            f"rc=$?; rm -rf {shlex.quote(worker_dir)}; exit $rc"
        )
        return self.ssh(remote)

    def triage_command(self) -> list[str]:
        """The ssh command line that starts the node's own triage agent (orchestrator/triage/agent.py):
        its request (hosts, packs, settings) goes on stdin, never on a command line."""
        return self.ssh(f"umask 077 && exec {shlex.quote(self.orchestrator)} triage agent")

    def ssh(self, remote: str) -> list[str]:
        """ssh to the node running `remote`. Inventory options first: for ssh the first value given
        wins, so ours are only defaults."""
        return [
            "ssh", "-T", *self.ssh_options, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            *KEEPALIVE, "-p", str(self.port), *(["-l", self.user] if self.user else []), self.address, remote,
        ]  # fmt: skip


def die_with_parent() -> None:
    """For `preexec_fn`: the child gets SIGTERM when the thread that forked it ends."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
