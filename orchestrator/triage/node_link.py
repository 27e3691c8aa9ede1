"""The controller's side of one execution node's triage: ssh to the node, its agent started there,
the request written on its stdin, its result lines read (node_results) and handed on as they come.

If the link or the node dies before the agent's end marker, every host it had not answered gets
`error` with a reason starting "node lost", so the run reads as incomplete for them and the next
`orchestrator triage` checks them again; the hosts it answered keep their verdicts. A node that
vanishes without closing the link is noticed by ssh's keepalives (about 15 s); one that stays up but
does not finish within the time its hosts can take (each host is bounded by the timeout, `forks` at
a time) is given up as lost too. A line we cannot believe stops the node: its unanswered hosts get
`error` saying the node was refused (what it sent before that was already checked line by line).
"""

from __future__ import annotations

import contextlib
import math
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from orchestrator.inventory import Host
from orchestrator.node_access import STDERR_LIMIT, Node, die_with_parent
from orchestrator.safe_text import plain
from orchestrator.triage import evidence, node_request, node_results
from orchestrator.triage.engine import HostResult, Settings
from orchestrator.triage.packs import Pack

LOST = "node lost"
START_ALLOWANCE = 120.0  # the agent's start-up on a slow node (imports, login keys), beyond its hosts


class NodeTriage:
    """One node's share of a triage run. `start` from the main thread (the ssh process dies with the
    orchestrator: its parent-death signal is tied to the thread that forks it); results are passed
    to `deliver` from this object's reader thread."""

    def __init__(
        self,
        node: Node,
        hosts: Sequence[Host],
        packs: Sequence[Pack],
        settings: Settings,
        started: datetime,
        trusted_keys: set[str],
        scrub: evidence.Scrubber,
        deliver: Callable[[HostResult], None],
    ) -> None:
        self.node = node
        self.hosts = list(hosts)
        self.request = node_request.encode(self.hosts, packs, settings, started, trusted_keys)
        self.reader = node_results.Reader(
            {h.name: h.os for h in self.hosts}, packs, scrub, settings.timeout, settings.trust_new_keys
        )
        self.deliver = deliver
        self._stderr = bytearray()
        self._refused: str | None = None
        rounds = math.ceil(len(self.hosts) / max(1, settings.forks)) or 1
        self.budget = rounds * (settings.timeout + 5) + START_ALLOWANCE
        self._timer = threading.Timer(self.budget, self._expire)
        self._timer.daemon = True
        self._expired = False
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self.proc = subprocess.Popen(
            self.node.triage_command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,
        )
        self._threads = [
            threading.Thread(target=self._send, daemon=True, name=f"node-{self.node.name}-in"),
            threading.Thread(target=self._read, daemon=True, name=f"node-{self.node.name}-out"),
            threading.Thread(target=self._drain_stderr, daemon=True, name=f"node-{self.node.name}-err"),
        ]
        for thread in self._threads:
            thread.start()
        self._timer.start()

    def _expire(self) -> None:
        self._expired = True
        self.stop()

    def _send(self) -> None:
        assert self.proc.stdin
        with contextlib.suppress(OSError):
            self.proc.stdin.write(self.request)
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.request = b""  # the hosts' variables are not kept longer than needed

    def _read(self) -> None:
        assert self.proc.stdout
        try:
            while line := self.proc.stdout.readline(node_results.MAX_LINE + 1):
                if not line.endswith(b"\n") and len(line) <= node_results.MAX_LINE:
                    break  # the stream ended inside a line: the node died writing it
                result = self.reader.read(line)
                if result is not None:
                    self.deliver(result)
        except node_results.BadLine as exc:
            self._refused = str(exc)
            self.stop()  # nothing more is read from this node
        except OSError:
            pass  # the link broke: the hosts left are reported lost below
        finally:
            self._finish()

    def _finish(self) -> None:
        """Every host the node did not answer, as lost (or refused), once the stream has ended."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._threads[2].join(timeout=5)  # the node's last words, for the reason
        self._timer.cancel()
        if self._refused is not None:
            reason = f"execution node {self.node.name} refused: it sent {self._refused}"
        elif self._expired and self.reader.done is None:
            reason = f"{LOST}: execution node {self.node.name} lost: no end within {self.budget:.0f}s"
        elif self.reader.done is None:
            reason = f"{LOST}: execution node {self.node.name} lost: {self._why_lost()}"
        else:
            return
        elapsed = time.monotonic() - self._started
        for name, os_name in list(self.reader.expected.items()):
            self.deliver(HostResult(name, os_name, "error", plain(reason[:500]), duration_s=elapsed))
        self.reader.expected.clear()

    def _why_lost(self) -> str:
        lines = self._stderr.decode("utf-8", "replace").strip().splitlines()
        rc = self.proc.poll()
        return (lines[-1].strip() if lines else "") or f"the link ended (ssh exit code {rc})"

    def _drain_stderr(self) -> None:
        """The last STDERR_LIMIT bytes (ssh says why the link ended last), read in chunks: a node's
        stderr may be one endless line."""
        assert self.proc.stderr
        while chunk := self.proc.stderr.read1(65536):
            self._stderr = (self._stderr + chunk)[-STDERR_LIMIT:]

    def wait(self) -> None:
        for thread in self._threads:
            thread.join()

    def stop(self) -> None:
        """Ends the link (the agent dies at its next write): on Ctrl-C or a refused line."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
