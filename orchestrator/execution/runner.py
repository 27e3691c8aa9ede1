"""One stage over a set of hosts: one ansible-runner run, its events queued and written in batches.

ansible-runner calls the event handler on the thread that reads the playbook's output, so the handler
only appends to a queue: a writer thread turns events into StageEvent rows (one transaction per batch),
follows each host to its end (the playbook's last task, "Stage done", or a failure) and tells the
observer, which drives the progress bars. What a host's stage *ended as* is decided from those events
after the run; the engine commits it.

Nothing secret is handed to ansible-runner: extra vars hold paths and ids only (the restic password is
a file path), and environment variables whose names say they are secrets travel to ansible-playbook
through `playbook_exec` in a private file, because ansible-runner writes its environment into the
artifacts.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import insert

from orchestrator import private as private_lib
from orchestrator.execution import nodes, playbook_exec, prompt_pty
from orchestrator.store import Store
from orchestrator.store.audit import SECRET_NAME
from orchestrator.store.models import StageEvent

DONE_TASK = "Stage done"
# Events kept as StageEvent rows: enough for a timeline and per-task durations.
KEPT_EVENTS = frozenset(
    {"runner_on_start", "runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped"}
)
BATCH_SECONDS = 0.25
BATCH_EVENTS = 500
MESSAGE_LIMIT = 500
# ansible-playbook's own error lines ("[ERROR]: the playbook: x.yml could not be found", "ERROR! ...")
# reach ansible-runner as `verbose` events: the first one says why hosts never finished the stage.
ERROR_LINE = re.compile(r"^\s*(?:\[ERROR\]:|ERROR!)\s*(?P<text>.+)$")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# A node's staging folder inside its private data directory (the worker's recovery_staging_dir).
NODE_STAGING = Path("artifacts") / "run" / "staging"


class Observer(Protocol):
    """Receives progress from the writer thread (never from ansible-runner's thread)."""

    def task(self, host: str, task: str) -> None: ...

    def host_done(self, host: str, ok: bool) -> None: ...


@dataclass
class HostResult:
    ok: bool
    task: str | None = None
    message: str | None = None
    # The stage was cut off (its execution node was lost), not failed: the host stays where it was
    # and the next run repeats the stage.
    interrupted: bool = False


@dataclass
class StageSpec:
    """Everything one ansible-runner run needs. `private_dir` becomes StageRun.runner_dir."""

    stage: str
    playbook: Path
    inventory: list[str]
    hosts: list[str]
    extravars: dict[str, Any]
    private_dir: Path
    forks: int = 50
    check: bool = False
    stage_run_ids: dict[str, int] = field(default_factory=dict)
    # Hosts whose stage runs on an execution node (see nodes.py); the others run here.
    placement: dict[str, nodes.Node] = field(default_factory=dict)


@dataclass
class StageOutcome:
    rc: int
    status: str
    hosts: dict[str, HostResult]
    seconds: float


def _message(res: Any) -> str | None:
    if not isinstance(res, dict):
        return None
    if res.get("censored"):
        return "output hidden (no_log)"
    msg = res.get("msg")
    if not msg and res.get("stderr"):
        msg = str(res["stderr"]).strip().splitlines()[-1:]
        msg = msg[0] if msg else None
    if not msg and "rc" in res:
        msg = f"exit code {res['rc']}"
    if msg is None:
        return None
    text = msg if isinstance(msg, str) else json.dumps(msg, default=str)
    return text.strip()[:MESSAGE_LIMIT]


@dataclass
class _Tracker:
    """Per-host end of the stage, followed from the events in the writer thread."""

    hosts: set[str]
    done: set[str] = field(default_factory=set)
    failed: dict[str, HostResult] = field(default_factory=dict)

    def feed(self, event: str, host: str, task: str | None, message: str | None) -> bool | None:
        """Returns True/False when `host` just ended ok/failed, None otherwise."""
        if host not in self.hosts or host in self.done or host in self.failed:
            return None
        if event == "runner_on_failed":
            self.failed[host] = HostResult(False, task, message)
            return False
        if event == "runner_on_unreachable":
            self.failed[host] = HostResult(False, task, f"unreachable: {message or ''}".strip())
            return False
        if event in ("runner_on_ok", "runner_on_skipped") and task == DONE_TASK:
            self.done.add(host)
            return True
        return None

    def results(self, rc: int, error: str | None = None) -> dict[str, HostResult]:
        """How each host ended; one that never reached its end takes ansible-playbook's own error
        line when there was one (a missing playbook, a syntax error), else its exit code."""
        unfinished = f"did not finish the stage: {error}" if error else None
        out: dict[str, HostResult] = {}
        for host in sorted(self.hosts):
            if host in self.failed:
                out[host] = self.failed[host]
            elif host in self.done:
                out[host] = HostResult(True)
            else:
                out[host] = HostResult(
                    False, None, unfinished or f"did not finish the stage (ansible-playbook exit code {rc})"
                )
        return out


class EventWriter(threading.Thread):
    """Drains the queue: StageEvent rows in batches, host ends to the tracker and the observer."""

    def __init__(self, store: Store | None, spec: StageSpec, observer: Observer | None) -> None:
        super().__init__(name=f"events-{spec.stage}", daemon=True)
        self.queue: queue.SimpleQueue[tuple | None] = queue.SimpleQueue()
        self.store = store
        self.spec = spec
        self.observer = observer
        self.tracker = _Tracker(set(spec.hosts))
        self.error: BaseException | None = None
        self.error_line: str | None = None  # ansible-playbook's first error, see `error_line`

    def handler(self, event: dict[str, Any]) -> bool:
        """ansible-runner's event_handler: cheap, never blocks, keeps the event file on disk."""
        name = event.get("event")
        if name in KEPT_EVENTS:
            data = event.get("event_data") or {}
            res = data.get("res") if name in ("runner_on_failed", "runner_on_unreachable") else None
            if name == "runner_on_failed" and data.get("ignore_errors"):
                name = "runner_on_failed_ignored"
            self.queue.put((name, data.get("host"), data.get("task"), res, event.get("created")))
        elif name in ("verbose", "error") and self.error_line is None:
            self.error_line = error_line(str(event.get("stdout") or ""))
        return True

    def stop(self) -> None:
        self.queue.put(None)
        self.join()
        if self.error is not None:
            raise self.error

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # surfaced by stop(): the run's result must not be lost silently
            self.error = exc

    def _loop(self) -> None:
        pending: list[dict[str, Any]] = []
        last = time.monotonic()
        finished = False
        while not finished:
            try:
                item = self.queue.get(timeout=BATCH_SECONDS)
            except queue.Empty:
                item = ()
            if item is None:
                finished = True
            elif item:
                pending.append(self._consume(*item))
            if pending and (
                finished or len(pending) >= BATCH_EVENTS or time.monotonic() - last >= BATCH_SECONDS
            ):
                self._write(pending)
                pending = []
                last = time.monotonic()

    def _consume(
        self, name: str, host: str | None, task: str | None, res: Any, created: Any
    ) -> dict[str, Any]:
        message = _message(res)
        if host and self.observer is not None and name == "runner_on_start" and task:
            self.observer.task(host, task)
        if host:
            ended = self.tracker.feed(name, host, task, message)
            if ended is not None and self.observer is not None:
                self.observer.host_done(host, ended)
        return {
            "stage_run_id": self.spec.stage_run_ids.get(host or ""),
            "host_name": host or "",
            "event": name,
            "task": task,
            "created_at": _parse_created(created),
        }

    def _write(self, rows: list[dict[str, Any]]) -> None:
        if self.store is None:
            return
        rows = [r for r in rows if r["host_name"]]
        if rows:
            with self.store.write() as session:
                session.execute(insert(StageEvent), rows)


def error_line(output: str) -> str | None:
    """The first error line in ansible-playbook's output, as plain bounded text (it may quote what a
    host or an inventory said: no escape sequences, no control characters, one line)."""
    for raw in output[: 64 * 1024].splitlines():
        match = ERROR_LINE.match(CONTROL.sub(" ", ANSI_ESCAPE.sub("", raw)))
        if match:
            return match["text"].strip()[:MESSAGE_LIMIT]
    return None


def _parse_created(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


def split_secret_env(environ: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(safe, secret): variables whose names say they hold a secret go the private way."""
    safe, secret = {}, {}
    for key, value in environ.items():
        (secret if SECRET_NAME.search(key) else safe)[key] = value
    return safe, secret


def _playbook_shim(private_dir: Path) -> Path:
    """The executable ansible-runner starts in place of ansible-playbook (see playbook_exec)."""
    shim = private_dir / "ansible-playbook"
    # Isolated and without site: it needs the standard library only, and starts in half the time.
    script = Path(__file__).with_name("playbook_exec.py")
    shim.write_text(
        f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S {shlex.quote(str(script))} "$@"\n',
        encoding="utf-8",
    )
    shim.chmod(0o700)
    return shim


def ansible_playbook_path() -> str:
    """The ansible-playbook next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / "ansible-playbook"
    return str(local) if local.exists() else "ansible-playbook"


def run_stage(
    spec: StageSpec,
    store: Store | None = None,
    observer: Observer | None = None,
    cancel: Callable[[], bool] | None = None,
) -> StageOutcome:
    """Run the stage's playbook on `spec.hosts` and return how each host ended: the hosts placed on
    execution nodes through each node's worker, the others here, all at once, into one event writer.

    Call it from a thread that lives until it returns (the engine's own, or one of its stage-run
    threads): the playbook's and the ssh links' parent-death signals are tied to the thread that
    starts them. `cancel` stops the run (ansible-runner installs its own Ctrl-C handler only when
    called from the main thread without one).
    """
    writer = EventWriter(store, spec, observer)
    writer.start()
    started = time.monotonic()
    remote: list[nodes.NodeRun] = []
    node_results: list[nodes.NodeResult] = []
    rc, status = 0, "successful"
    try:
        by_node: dict[nodes.Node, list[str]] = {}
        for host in spec.hosts:
            if host in spec.placement:
                by_node.setdefault(spec.placement[host], []).append(host)
        for node, hosts in by_node.items():
            private_dir = spec.private_dir / f"node-{node.name}"
            _give_staging(spec.private_dir / "staging", private_dir / NODE_STAGING, hosts)
            run = nodes.NodeRun(
                node=node,
                spec=spec,
                hosts=hosts,
                private_dir=private_dir,
                envvars={"ANSIBLE_HOST_KEY_CHECKING": "True"},
                handler=writer.handler,
            )
            run.start()
            remote.append(run)
        local = [h for h in spec.hosts if h not in spec.placement]
        if local:
            rc, status = _run_local(spec, local, writer, cancel)
        node_results = [run.wait() for run in remote]
    finally:
        if len(node_results) < len(remote):  # the local run raised: do not leave links behind
            for run in remote:
                run.stop()
        writer.stop()
    results = writer.tracker.results(rc, writer.error_line)
    for run, outcome in zip(remote, node_results, strict=True):
        for host in run.hosts:
            if outcome.refused:
                results[host] = HostResult(False, None, outcome.message)
                continue
            _take_staging(outcome.staging / host, spec.private_dir / "staging" / host)
            if results[host].ok or host in writer.tracker.failed:
                continue
            if outcome.lost:
                results[host] = HostResult(False, None, outcome.message, interrupted=True)
            else:
                results[host] = HostResult(
                    False,
                    None,
                    f"did not finish the stage on execution node {run.node.name} ({outcome.status})",
                )
        if outcome.lost or outcome.status != "successful":
            status = "failed"
    return StageOutcome(rc=rc, status=status, hosts=results, seconds=time.monotonic() - started)


def _give_staging(source: Path, target: Path, hosts: list[str]) -> None:
    """The files the orchestrator staged for these hosts (their triage results), where the node's
    playbook finds its staging folder: the node receives its whole private data directory."""
    for host in hosts:
        if (source / host).is_dir():
            shutil.copytree(source / host, target / host, dirs_exist_ok=True)


def _take_staging(source: Path, target: Path) -> None:
    """What a node's playbook left for the orchestrator (an evidence manifest), where a local run
    leaves it."""
    if not source.is_dir():
        return
    private_lib.mkdir(target, exist_ok=True)
    for item in source.iterdir():
        item.replace(target / item.name)


def _run_local(
    spec: StageSpec, hosts: list[str], writer: EventWriter, cancel: Callable[[], bool] | None
) -> tuple[int, str]:
    import ansible_runner

    prompt_pty.install()

    private = spec.private_dir
    private_lib.mkdir(private / "env", exist_ok=True)
    private_lib.write_text(private / "env" / "extravars", json.dumps(spec.extravars, indent=1, default=str))
    limit_file = private / "limit"
    private_lib.write_text(limit_file, "".join(f"{h}\n" for h in hosts))
    _, secret_env = split_secret_env(dict(os.environ))
    envvars = {
        "ANSIBLE_CONFIG": str(spec.playbook.parent / "ansible.cfg"),
        # ansible-runner turns host key checking off unless told otherwise: never.
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_LOCAL_TEMP": str(private / "tmp"),
        playbook_exec.PARENT_ENV: str(os.getpid()),
        playbook_exec.PLAYBOOK_ENV: ansible_playbook_path(),
    }
    secret_dir = Path(tempfile.mkdtemp(prefix="orchestrator-secrets-")) if secret_env else None
    if secret_dir is not None:
        secret_file = secret_dir / "env.json"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(secret_env, f)
        envvars[playbook_exec.SECRET_FILE_ENV] = str(secret_file)
    try:
        runner = ansible_runner.interface.init_runner(
            private_data_dir=str(private),
            project_dir=str(spec.playbook.parent),
            playbook=str(spec.playbook),
            inventory=[str(Path(i).absolute()) for i in spec.inventory],
            limit=f"@{limit_file}",
            forks=spec.forks,
            # With `binary` set, ansible-runner leaves the playbook to the command line.
            cmdline=shlex.join([*(["--check"] if spec.check else []), str(spec.playbook)]),
            ident="run",
            quiet=True,
            envvars=envvars,
            binary=str(_playbook_shim(private)),
            event_handler=writer.handler,
            cancel_callback=cancel,
        )
        # The environment ansible-runner records in its artifacts: without the secrets it was built
        # from (they reach ansible-playbook through the private file).
        runner.config.env = {k: v for k, v in runner.config.env.items() if k not in secret_env}
        runner.run()
        return (runner.rc if runner.rc is not None else 255), runner.status
    finally:
        if secret_dir is not None:
            shutil.rmtree(secret_dir, ignore_errors=True)
