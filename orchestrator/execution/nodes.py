"""A stage's playbook run on an execution node, through ansible-runner's streaming protocol.

The controller packs the run (`transmit`: the playbooks, the inventory, extra vars, settings) into a
stream that `ssh node ansible-runner worker` unpacks and runs next to the site's hosts; the worker
streams the events and, at the end, the artifacts back, and `process` here hands each event to the
same handler as a local run, so the database and progress bars cannot tell the difference. This is
the protocol AWX drives over Receptor; plain OpenSSH is the built-in transport.

What a node gets: no secret. Environment variables whose names say they are secrets stay on the
controller (a node reads its own, e.g. from its vault or agent), and the node's SSH access to its
site's hosts is its own (the key and known_hosts the inventory names, at those paths on the node).

If the node or the link dies mid-run, the stream ends without its end marker: the hosts that had not
finished the stage are reported as interrupted, not failed, and stay in their "-ing" state, so the
next `orchestrator run` repeats the stage for them exactly as after a crash of the controller.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import signal
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.execution import node_artifacts
from orchestrator.node_access import STDERR_LIMIT, Node, die_with_parent

if TYPE_CHECKING:  # runner imports this module: the stage's type only, no import cycle
    from orchestrator.execution.runner import StageSpec


@dataclass
class NodeResult:
    node: str
    status: str
    lost: bool
    message: str | None
    staging: Path
    refused: bool = False  # its artifacts were refused: none of its hosts' results is believed


@dataclass
class NodeRun:
    """One node's share of a stage: started from the main thread (the ssh process dies with the
    orchestrator: its parent-death signal is tied to the thread that forks it), streamed by threads."""

    node: Node
    spec: StageSpec  # the stage: playbook, inventory, extra vars, forks, check mode
    hosts: list[str]  # this node's share of spec.hosts
    private_dir: Path
    envvars: dict[str, str]
    handler: Any
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stderr: bytearray = field(default_factory=bytearray)
    _statuses: list[dict[str, Any]] = field(default_factory=list)
    _errors: list[str] = field(default_factory=list)
    _refused: str | None = None  # why the node's artifacts were refused

    def start(self) -> None:
        import ansible_runner

        worker_dir = self.node.worker_dir(self.run_id)
        sources = self._pack()
        extravars = {**self.spec.extravars, "recovery_staging_dir": f"{worker_dir}/artifacts/run/staging"}
        cmdline = [*(["--check"] if self.spec.check else []), *(a for s in sources for a in ("-i", s))]
        self.proc = subprocess.Popen(
            self.node.command(worker_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        transmitter = ansible_runner.interface.init_runner(
            streamer="transmit",
            _output=self.proc.stdin,
            private_data_dir=str(self.private_dir),
            playbook=self.spec.playbook.name,
            cmdline=shlex.join(cmdline),
            limit=",".join(self.hosts),
            forks=self.spec.forks,
            ident="run",
            quiet=True,
            extravars=extravars,
            envvars=self.envvars,
        )
        # Our `process` side: the node's artifacts are unpacked by node_artifacts, never by unstream.
        processor = node_artifacts.processor(
            _input=self.proc.stdout,
            private_data_dir=str(self.private_dir),
            ident="run",
            quiet=True,
            event_handler=self.handler,
            status_handler=lambda data, runner_config: self._statuses.append(dict(data)),
        )
        self._threads = [
            threading.Thread(target=self._guard, args=(self._transmit, transmitter), daemon=True),
            threading.Thread(target=self._guard, args=(processor.run,), daemon=True),
            threading.Thread(target=self._drain_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pack(self) -> list[str]:
        """The private data directory the worker receives: the playbooks as its project, a copy of
        each inventory source; returns the sources' paths as the worker's playbook sees them."""
        shutil.copytree(self.spec.playbook.parent, self.private_dir / "project", dirs_exist_ok=True)
        out = []
        for i, source in enumerate(self.spec.inventory):
            path = Path(source).absolute()
            target = self.private_dir / "inventories" / f"{i}-{path.name}"
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            out.append(f"../inventories/{target.name}")
        return out

    def _transmit(self, transmitter: Any) -> None:
        assert self.proc.stdin
        try:
            transmitter.run()
        finally:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            # Sent: the copies of the inventory (whatever it holds) and playbooks are not artifacts.
            for sent in ("inventories", "project"):
                shutil.rmtree(self.private_dir / sent, ignore_errors=True)

    def _guard(self, target: Any, *args: Any) -> None:
        try:
            target(*args)
        except node_artifacts.UnsafeArtifacts as exc:
            self._refused = str(exc)
            self.stop()  # nothing more is read from this node
        except Exception as exc:  # a broken link is reported as a lost node, never a traceback
            self._errors.append(f"{type(exc).__name__}: {exc}")

    def _drain_stderr(self) -> None:
        assert self.proc.stderr
        for line in self.proc.stderr:
            if len(self._stderr) < STDERR_LIMIT:
                self._stderr += line

    def wait(self) -> NodeResult:
        for thread in self._threads:
            thread.join()
        rc = self.proc.wait()
        staging = self.private_dir / "artifacts" / "run" / "staging"
        if self._refused is not None:
            # Whatever its events said, a node that sends unsafe artifacts is not believed.
            reason = f"execution node {self.node.name} sent unsafe artifacts: {self._refused}"[:500]
            return NodeResult(self.node.name, "refused", False, reason, staging, refused=True)
        final = self._statuses[-1] if self._statuses else {}
        status = str(final.get("status") or "lost")
        # Only a worker that streamed its end ("successful"/"failed") ran the whole playbook.
        lost = status not in ("successful", "failed")
        message = None
        if lost:
            detail = (
                self._stderr.decode("utf-8", "replace").strip().splitlines()[-1:]
                or [str(final.get("job_explanation") or "")]
            )[0] or (self._errors[0] if self._errors else f"ssh exit code {rc}")
            message = f"execution node {self.node.name} lost: {detail}"[:500]
        return NodeResult(self.node.name, status, lost, message, staging)

    def stop(self) -> None:
        """Ends the link (the worker dies at its next write): used when the controller gives up."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
