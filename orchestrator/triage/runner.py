"""One triage run, stored: the entry point the CLI (or a script) calls."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.inventory import Host
from orchestrator.lifecycle import UNKNOWN
from orchestrator.node_access import Node
from orchestrator.store import Store
from orchestrator.triage.dispatch import Dispatch
from orchestrator.triage.engine import HostResult, Settings, counts
from orchestrator.triage.interrupt import Interrupt
from orchestrator.triage.packs import Pack
from orchestrator.triage.results import RunRecorder

COMMAND = "triage"


@dataclass
class Outcome:
    run_id: int
    results: list[HostResult]
    counts: dict[str, int]
    started_at: Any
    finished_at: Any

    @property
    def failed(self) -> list[HostResult]:
        """Hosts that could not be checked (unreachable or error): the run is incomplete for them."""
        return [r for r in self.results if r.verdict in UNKNOWN]


def run(
    store: Store,
    operator: str,
    hosts: Sequence[Host],
    packs: Sequence[Pack],
    settings: Settings,
    *,
    limit: str | None = None,
    args: dict[str, Any] | None = None,
    on_result: Callable[[HostResult], None] | None = None,
    nodes: Mapping[str, Node] | None = None,
    stage: str | None = None,
) -> Outcome:
    """Check `hosts` against `packs` and store the run. Packs are validated before this is called, so a
    bad pack never costs a connection; the run row exists before the first host is contacted. Hosts in
    `nodes` (dispatch.placement) are checked by their execution node, the others here.

    `stage`: the recovery stage that re-checks its hosts (validate); its run is kept apart from the
    fleet's triages (plans are made from those) and does not refresh the host rows, which the run
    that executes the stage owns."""
    from orchestrator.observers import guarded_callback

    triage = Dispatch(hosts, packs, settings, nodes or {})
    display = guarded_callback(on_result)  # a failing progress bar must not stop the triage
    recorder = RunRecorder(store, operator)
    done: list[HostResult] = []

    def record_and_keep(result: HostResult) -> None:
        done.append(result)
        recorder.add(result)
        if display is not None:
            display(result)

    placed = {host: node.name for host, node in (nodes or {}).items()}
    # From the run row to the last write, Ctrl-C is taken between results, never inside a write.
    with Interrupt() as interrupt:
        run_id = recorder.start(hosts, sorted({p.path for p in packs}), settings, limit, stage)
        try:
            interrupt.check()
            results = triage.run(record_and_keep, recorder.tick, interrupt.requested)
        except BaseException:
            recorder.finish(done, COMMAND, args or {}, complete=False, nodes=placed)
            raise
        row = recorder.finish(results, COMMAND, args or {}, nodes=placed)
    return Outcome(run_id, results, counts(results), row.started_at, row.finished_at)
