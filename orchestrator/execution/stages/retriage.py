"""The re-triage (validate): a host passes only if the triage checks now find it clean. The check is
recorded as a triage run of its own (`triage_run.stage` names the stage), in the same tables as
`orchestrator triage`, so `triage show`, `host show` and `status` see what it found; the planner reads
only fleet triages (stage empty)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import inventory as inventory_lib
from orchestrator import lifecycle
from orchestrator.execution.runner import HostResult
from orchestrator.execution.stages.base import Hook

if TYPE_CHECKING:
    from orchestrator.execution.engine import Engine
    from orchestrator.triage.engine import HostResult as TriageHostResult

STAGE = next(s.name for s in lifecycle.STAGES if "retriage" in s.records)
Validator = Callable[[list[inventory_lib.Host]], dict[str, tuple[bool, str]]]


class Retriage(Hook):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.wave: int | None = None

    def after(self, results: dict[str, HostResult], private: Path) -> None:
        run = self.run
        ok = [run.inventory.hosts[h] for h, r in results.items() if r.ok]
        if run.o.check:
            ok = [h for h in ok if run.paths[h.name] is lifecycle.VERIFY_STAGES]
        if not ok:
            return
        if run.evidence_host:  # the evidence directory holds ransom notes on purpose: never walked
            ok = [excluding(h, run.o.evidence_path) if h.name == run.evidence_host else h for h in ok]
        validator = run.o.validator or recorded_validator(run, private)
        try:
            verdicts = validator(ok)
        except Exception as exc:  # a triage that cannot run proves nothing: those hosts are not validated
            verdicts = {h.name: (False, f"could not run: {type(exc).__name__}: {exc}") for h in ok}
        for name, (clean, reason) in verdicts.items():
            if not clean:
                results[name] = HostResult(False, "triage re-check", reason)


def excluding(host: inventory_lib.Host, path: str) -> inventory_lib.Host:
    """The host as triage should see it: `path` added to its `recovery_triage_exclude`."""
    from orchestrator.triage.engine import excluded_paths

    excluded = [*excluded_paths(host), path]
    return dataclasses.replace(host, vars={**host.vars, "recovery_triage_exclude": excluded})


def recorded_validator(run: Engine, private: Path) -> Validator:
    """The triage engine itself over the hosts that passed the playbook, each within --scan-timeout,
    stored as a triage run of the validate stage (its audit entry names the plan and the attempt)."""

    def validate(hosts: list[inventory_lib.Host]) -> dict[str, tuple[bool, str]]:
        from orchestrator.triage import engine as triage_engine
        from orchestrator.triage import packs as packs_lib
        from orchestrator.triage import runner as triage_runner

        loaded = packs_lib.load(run.o.packs)
        settings = triage_engine.Settings(forks=run.o.forks, timeout=run.o.scan_timeout)
        args = {"plan": run.plan_id, "stage": STAGE, "check": run.o.check, "runner_dir": str(private)}
        outcome = triage_runner.run(
            run.store, run.o.operator, hosts, loaded, settings, args=args, stage=STAGE
        )
        return verdicts(outcome.results)

    return validate


def verdicts(results: Sequence[TriageHostResult]) -> dict[str, tuple[bool, str]]:
    """Each host: clean or not, and the verdict with the checks that found something."""
    out = {}
    for r in results:
        found = ", ".join(h.check_id for h in r.hits if h.severity != "info")
        detail = (f" ({found})" if found else "") + (f": {r.reason}" if r.reason else "")
        out[r.host] = (r.verdict == lifecycle.CLEAN, f"{r.verdict}{detail}")
    return out


HOOK = Retriage
