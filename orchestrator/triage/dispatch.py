"""Where each host of a triage is checked, and one stream of results from all of them.

A host with a `recovery_execution_node` (the variable playbook runs place stages by) is checked by
that node's agent (node_link), next to it behind the site's WAN link and firewall; every other host
(the nodes themselves, Windows hosts kept with the controller, sites without a node) is checked here
by the same engine. Results from the local pool and from every node arrive on one queue and are
handed to the caller in its own thread as they come, so the database and the progress bar see one
run; while nothing arrives, `idle` is called about every second (the recorder writes what is
pending, so a quiet stretch never holds finished hosts back).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from orchestrator.inventory import Host
from orchestrator.node_access import Node
from orchestrator.triage import evidence, transports
from orchestrator.triage.engine import HostResult, Settings, Triage, secrets_of
from orchestrator.triage.node_link import NodeTriage
from orchestrator.triage.packs import Pack

IDLE_SECONDS = 1.0


def placement(inventory_hosts: Mapping[str, Host], hosts: Sequence[Host]) -> dict[str, Node]:
    """Each host's execution node, for the hosts that have one (the inventory was checked: a node is
    an SSH host of the inventory without a node of its own)."""
    out: dict[str, Node] = {}
    for host in hosts:
        name = host.execution_node
        if name is not None and name != host.name and name in inventory_hosts:
            out[host.name] = Node.from_host(inventory_hosts[name])
    return out


class Dispatch:
    """One triage run's hosts, local and through nodes."""

    def __init__(
        self, hosts: Sequence[Host], packs: Sequence[Pack], settings: Settings, nodes: Mapping[str, Node]
    ) -> None:
        self.hosts = list(hosts)
        self.settings = settings
        self.local = Triage([h for h in self.hosts if h.name not in nodes], packs, settings)
        by_node: dict[Node, list[Host]] = {}
        for host in self.hosts:
            if host.name in nodes:
                by_node.setdefault(nodes[host.name], []).append(host)
        remote = [h for group in by_node.values() for h in group]
        scrub = evidence.Scrubber(secrets_of(remote))  # what comes back is scrubbed here again
        # Every login key of the run is ours on every host, checked here or by a node (as with --local).
        keys = self.local.trusted_keys
        keys |= transports.login_key_fingerprints([h for h in remote if h.os == "linux"], self.local.ssh)
        self._queue: queue.Queue[HostResult] = queue.Queue()
        self.links = [
            NodeTriage(node, group, packs, settings, self.local.started, keys, scrub, self._queue.put)
            for node, group in by_node.items()
        ]

    def run(
        self,
        on_result: Callable[[HostResult], None],
        idle: Callable[[], None],
        stop: threading.Event,
    ) -> list[HostResult]:
        """Every host checked; `on_result` in this thread as each finishes, wherever it ran. When
        `stop` is set (Ctrl-C, see interrupt.py) no further host is started or handed on, and
        KeyboardInterrupt is raised from here, between two results."""
        workers = max(1, min(self.settings.forks, len(self.local.hosts) or 1))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="triage")
        results: list[HostResult] = []
        try:
            for link in self.links:
                link.start()
            for host in self.local.hosts:
                if stop.is_set():
                    break
                pool.submit(self.local.check_host, host).add_done_callback(self._put)
            while len(results) < len(self.hosts) and not stop.is_set():
                try:
                    result = self._queue.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    idle()
                    continue
                results.append(result)
                on_result(result)
            if len(results) < len(self.hosts):
                raise KeyboardInterrupt
        except BaseException:
            # Interrupted: local hosts not yet started are dropped, those in flight end within their
            # timeout (their results are not handed on), the nodes' links are closed; the caller
            # stores what is done.
            pool.shutdown(wait=False, cancel_futures=True)
            for link in self.links:
                link.stop()
            raise
        pool.shutdown()
        for link in self.links:
            link.wait()
        order = {h.name: i for i, h in enumerate(self.hosts)}
        results.sort(key=lambda r: order[r.host])
        return results

    def _put(self, future: Future[HostResult]) -> None:
        if not future.cancelled():
            self._queue.put(future.result())
