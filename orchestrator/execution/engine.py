"""The approved plan: containment first, then every wave's hosts stage by stage, with retries, the
failure threshold, dependencies, the first-destructive-stage confirmation, and resumption after a crash.

Waves order the work but are not barriers (`lifecycle.pipeline`, the same policy the plan's estimate
replays): stage runs of several waves and stages work at once, sharing the --forks workers and the
plan's capacity limits; dependencies gate reconnection only. Each stage run's ansible-runner run is
on a thread of its own; everything else (the database, the hooks, the decisions, the prompt) stays on
the calling thread, one stage run's start or end at a time.

Every decision is taken from the database, never from memory of an earlier run: on start, stage runs
left "running" in the waves this run claims are marked interrupted (only a killed orchestrator can have
left them: a live one would hold the claim) and each host continues from its state
(a host caught inside a stage repeats that stage, which every playbook is written to allow; the state
machine forbids the repeats that must never happen, wipe after restore began and collect after wipe).
Each stage attempt commits its hosts' "-ing" state and StageRun rows before the playbook starts and
their results, evidence and restore points after its events, in one transaction each.

Runs on different waves may work at once, from one controller or several on one PostgreSQL database:
each claims its waves (`locks`), and each transaction locks the host rows it changes, whose version
refuses a lost update (`store.hosts.locked`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import col, func, select

from orchestrator import inventory as inventory_lib
from orchestrator import lifecycle, observers
from orchestrator import private as private_lib
from orchestrator.errors import OrchestratorError, RefusedError
from orchestrator.execution import (
    containment,
    dependencies,
    extravars,
    nodes,
    placement,
    preflight,
    resume,
    runner,
    states,
)
from orchestrator.execution.locks import claim_waves
from orchestrator.execution.run_model import (  # noqa: F401 (engine.RunOptions etc., as before)
    EngineObserver,
    HostReport,
    Pending,
    Planned,
    RunOptions,
    RunReport,
    forks_for,
)
from orchestrator.execution.runner import HostResult
from orchestrator.execution.stages import evidence
from orchestrator.execution.stages import hooks as stage_hooks
from orchestrator.execution.stages.base import Hook
from orchestrator.inventory import cache as inventory_cache
from orchestrator.lifecycle import DECIDE_DONE, EXECUTABLE_ACTIONS, UNKNOWN, concurrency, pipeline
from orchestrator.store import Store, audit, triage_results
from orchestrator.store import decisions as decisions_lib
from orchestrator.store import hosts as host_store
from orchestrator.store.models import (
    Host,
    StageRun,
    utcnow,
)
from orchestrator.store.plans import PlanView, load_approved_plan

AFTER_CONTAINMENT = lifecycle.next_on(states.REBUILD, states.CONTAIN[-1])  # wipe


@dataclass
class _Prepared:
    """An attempt whose hosts are committed as begun: what its end needs."""

    private: Path
    run_ids: dict[str, int]
    refused: dict[str, HostResult]
    hooks: list[Hook]
    where: dict[str, nodes.Node]
    spec: runner.StageSpec | None


@dataclass
class _Started:
    """A pipeline launch once started: hosts passed out of band, results known before any playbook
    (refusals), and the attempt running, if any."""

    skipped: list[str] = field(default_factory=list)
    results: dict[str, HostResult] = field(default_factory=dict)
    hooks: list[Hook] = field(default_factory=list)
    prepared: _Prepared | None = None
    spec: runner.StageSpec | None = None


def _now_tag() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


class Engine:
    def __init__(self, store: Store, options: RunOptions) -> None:
        self.store = store
        self.o = options
        # A display that fails must not stop a recovery halfway (see observers).
        self.observer = observers.guarded(options.observer)
        self.confirmed = options.confirm is None
        self.attempts = 0
        self.hooks = stage_hooks(self)  # what stages record besides their StageRun
        self.held: set[str] = set()  # waiting for a person's restore-point decision: not wave failures
        self.cancel = threading.Event()  # set by Ctrl-C or SIGTERM while the waves run

    # --- setup ---------------------------------------------------------------------------------

    def _load(self) -> None:
        with self.store.read() as session:
            self.view: PlanView = load_approved_plan(session)
            self.plan_id = int(self.view.plan.id or 0)
            self.forks_given = self.o.forks
            forks, self.plan_forks = forks_for(self.o.forks, self.view.plan.params)
            self.o = dataclasses.replace(self.o, forks=forks)
            self.members = {
                m.host_name: Planned(m.host_name, m.action, m.wave, m.tier, m.verdict)
                for m in self.view.members
                if m.wave is not None and m.action in EXECUTABLE_ACTIONS
            }
            self.triage = triage_results.by_host(session, self.view.plan.triage_run_id)
            everyone = [m.host_name for m in self.view.members]  # held ones too: a decision adds them
            self.restore_choices = decisions_lib.restore_cutoffs(session, everyone)
            self.decisions = decisions_lib.standing(session, everyone)
        self.out_of_band: dict[str, str] = {}  # host -> why its SSH stages are skipped
        self._apply_decisions()
        self.inventory = (
            self.o.prefetched.result() if self.o.prefetched else inventory_cache.load(self.o.inventory)
        )
        missing = sorted(set(self.members) - set(self.inventory.hosts))
        if missing:
            raise RefusedError(
                f"{len(missing)} host(s) of plan {self.plan_id} are not in the inventory: {', '.join(missing[:5])}"
            )
        if self.observer is not None and self.o.forks != self.plan_forks:
            self.observer.note(
                f"warning: --forks {self.o.forks}, the plan was packed and estimated for {self.plan_forks}"
            )
        if self.observer is not None:
            from orchestrator import winrm_auth

            planned = [self.inventory.hosts[name] for name in self.members]
            for warning in winrm_auth.plaintext_warnings(planned):
                self.observer.note(f"warning: {warning}")
        with self.store.read() as session:
            rows = {
                h.name: h for h in session.exec(select(Host).where(col(Host.name).in_(list(self.members))))
            }
        unknown = sorted(set(self.members) - set(rows))
        if unknown:
            raise RefusedError(f"host(s) of the plan missing from the database: {', '.join(unknown[:5])}")
        self.paths: dict[str, tuple[str, ...]] = {}
        for name, member in self.members.items():
            # Protected in the plan, the database or today's inventory: the verify path, whatever else says.
            protected = (
                rows[name].protected or self.inventory.hosts[name].protected or member.action == "protected"
            )
            self.paths[name] = states.path_for(member.action, protected)
        self.evidence_host = evidence.evidence_host(self.inventory, self.o.evidence_host)
        self.nodes = placement.nodes_for(self.inventory, self.members, self.o.node)
        if self.evidence_host is None and any(p is states.REBUILD for p in self.paths.values()):
            raise RefusedError(
                f"no evidence store: name one with --evidence-host or put it in the '{evidence.EVIDENCE_GROUP}' group"
            )
        self.waves = sorted({m.wave for m in self.members.values() if m.wave is not None})
        if self.o.wave is not None:
            if self.o.wave not in self.waves:
                raise OrchestratorError(
                    f"plan {self.plan_id} has no wave {self.o.wave} (waves: {self.waves})"
                )
            self.waves = [self.o.wave]
        if self.o.contain_only:  # containment claims its own "wave 0" only
            self.waves = []
        self._preflight()

    def _preflight(self) -> None:
        """Refuse before anything starts when the controller lacks what these waves' stages need
        (and containment's, which takes every wave's rebuilt hosts)."""
        stage_hosts: dict[str, list[inventory_lib.Host]] = {}
        for name, member in self.members.items():
            stages = self.paths[name] if member.wave in self.waves else ()
            if self.paths[name] is states.REBUILD and name not in self.out_of_band:
                stages = (*stages, *states.CONTAIN)
            for stage in dict.fromkeys(stages):
                stage_hosts.setdefault(stage, []).append(self.inventory.hosts[name])
        findings = preflight.check(self.o.playbooks, stage_hosts, self.store.url, self.o.runs_dir)
        preflight.require(findings)

    def _apply_decisions(self) -> None:
        """People's standing decisions over the approved plan, without re-planning: a held host
        decided rebuild or verify joins the first wave of its tier (an unreachable one rebuilt out of
        band); a host decided hold, or rebuilt by hand, leaves the run."""
        waves = sorted(self.view.waves, key=lambda w: w.number)
        for member in self.view.members:
            row = self.decisions.get(member.host_name)
            if row is None:
                continue
            name = member.host_name
            if row.decision in ("hold", DECIDE_DONE):
                self.members.pop(name, None)
            elif row.decision in ("rebuild", "verify"):
                planned = self.members.get(name)
                if planned is None:
                    later = [w.number for w in waves if w.tier >= member.tier]
                    wave = later[0] if later else (waves[-1].number if waves else 1)
                    planned = Planned(name, member.action, wave, member.tier, member.verdict)
                action = "protected" if planned.action == "protected" else row.decision
                self.members[name] = dataclasses.replace(planned, action=action)
                if row.decision == "rebuild" and member.verdict in UNKNOWN:
                    self.out_of_band[name] = (
                        f"skipped: {member.verdict} at triage, rebuilt out of band by decision "
                        f"{decisions_lib.said(row)}"
                    )

    # --- the run -------------------------------------------------------------------------------

    def run(self) -> RunReport:
        self._load()
        # ansible-runner and ansible-playbook write env/, artifacts and staged evidence themselves.
        with private_lib.umask(), claim_waves(self.store, self.waves, self.o.runs_dir) as self.claim:
            return self._run()

    def _run(self) -> RunReport:
        interrupted = 0 if self.o.check else resume.mark_interrupted(self.store, self.o.operator, self.waves)
        self.root = private_lib.unique_dir(
            self.o.runs_dir.absolute(), f"{_now_tag()}-plan{self.plan_id}{'-check' if self.o.check else ''}"
        )
        report = RunReport(plan_id=self.plan_id, check=self.o.check, runs_dir=str(self.root))
        with self.store.write() as session:
            audit.record(
                session,
                self.o.operator,
                "run start",
                args={"wave": self.o.wave, "check": self.o.check, "forks": self.forks_given,
                      "max_fail_percentage": self.o.max_fail_percentage, "retries": self.o.retries},
                details={"plan": self.plan_id, "runs_dir": str(self.root), "resumed_stage_runs": interrupted,
                         "forks": self.o.forks, "plan_forks": self.plan_forks},
            )  # fmt: skip
        if interrupted and self.observer:
            self.observer.note(f"resuming: {interrupted} stage run(s) were interrupted")
        self._contain(report)
        if not self.o.contain_only:
            report.stopped = self._waves(report)
        self._final_states(report)
        with self.store.write() as session:
            audit.record(
                session,
                self.o.operator,
                "run end",
                details={
                    "plan": self.plan_id,
                    "check": self.o.check,
                    "stopped": report.stopped,
                    "failed": sorted(h.name for h in report.failed),
                },
            )
        return report

    def _final_states(self, report: RunReport) -> None:
        with self.store.read() as session:
            rows = {
                h.name: h for h in session.exec(select(Host).where(col(Host.name).in_(list(self.members))))
            }
        for name, member in self.members.items():
            row = rows[name]
            entry = report.hosts.setdefault(name, HostReport(name, member.action, member.wave, row.state))
            entry.state, entry.stage = row.state, row.stage
            if entry.outcome in ("blocked", "refused", "checked", "interrupted", "held"):
                continue
            if row.state == states.RECOVERED:
                entry.outcome = "recovered"
            elif row.state == states.AWAITING:
                entry.outcome, entry.reason = "awaiting", row.state_reason
            elif self.o.contain_only and row.state in {states.DONE[s] for s in states.CONTAIN}:
                entry.outcome = "contained"
            elif row.state == states.FAILED:
                entry.outcome, entry.reason = "failed", row.state_reason

    def _positions(self, hosts: list[str], report: RunReport) -> dict[str, str | None]:
        with self.store.read() as session:
            rows = {h.name: h for h in session.exec(select(Host).where(col(Host.name).in_(hosts)))}
        out: dict[str, str | None] = {}
        for name in hosts:
            member = self.members[name]
            try:
                out[name] = states.position(rows[name], self.paths[name]).next_stage
            except RefusedError as exc:
                report.hosts[name] = HostReport(name, member.action, member.wave, rows[name].state,
                                                rows[name].stage, str(exc), "refused")  # fmt: skip
        return out

    def _waiting(self, hosts: list[str]) -> dict[str, str]:
        """Hosts that may not reconnect yet, and why (see `dependencies.waiting`)."""
        if self.o.check:
            return {}
        plan = {m.host_name: m for m in self.view.members}
        return dependencies.waiting(
            self.store, hosts, plan, self.inventory, self.decisions, set(self.members)
        )

    def _await(self, wave: int, waiting: dict[str, str], report: RunReport) -> None:
        """Park validated hosts whose dependencies are not recovered: isolated, audited, visible."""
        with self.store.write() as session:
            rows = host_store.locked(session, list(waiting))
            parked = {}
            for name, reason in waiting.items():
                row = rows[name]
                if row.state != states.AWAITING:
                    states.await_dependencies(row, self.paths[name][-2], reason)
                    session.add(row)
                    parked[name] = reason
                elif states.still_awaiting(row, reason):
                    session.add(row)
            if parked:
                audit.record(
                    session,
                    self.o.operator,
                    "run await",
                    details={"plan": self.plan_id, "wave": wave, "hosts": parked},
                )
        for name, reason in waiting.items():
            member = self.members[name]
            report.hosts[name] = HostReport(name, member.action, member.wave, states.AWAITING, None, reason,
                                            "awaiting")  # fmt: skip
        if self.observer and waiting:
            self.observer.awaiting(sorted(waiting))

    def _skip(self, wave: int, stage: str, hosts: list[str]) -> None:
        """Out-of-band rebuilds: a stage that needs the host's own connection is passed, the reason
        recorded on a "skipped" StageRun and in the audit log, in one transaction."""
        with self.store.write() as session:
            rows = host_store.locked(session, hosts)
            for name in hosts:
                reason = self.out_of_band[name]
                session.add(
                    StageRun(plan_id=self.plan_id, wave=wave, host_name=name, stage=stage, status="skipped",
                             check_mode=self.o.check, finished_at=utcnow(), message=reason)
                )  # fmt: skip
                if not self.o.check:
                    states.skip(rows[name], stage, self.paths[name], reason)
                    session.add(rows[name])
            audit.record(
                session,
                self.o.operator,
                "run stage skipped",
                details={"plan": self.plan_id, "wave": wave, "stage": stage, "check": self.o.check,
                         "skipped": {h: self.out_of_band[h] for h in hosts}},
            )  # fmt: skip

    # --- containment ---------------------------------------------------------------------------

    def _contain(self, report: RunReport) -> None:
        """Every host the plan rebuilds, whatever its wave, tier or dependencies: isolate, then
        collect its evidence, in batches of the containment capacity. Containment claims its own
        "wave" (0), so two runs never contain at once. Then the network team's list for the hosts
        nobody could isolate."""
        targets = sorted(
            h for h, p in self.paths.items() if p is states.REBUILD and h not in self.out_of_band
        )
        with self.store.read() as session:
            rows = {h.name: h for h in session.exec(select(Host).where(col(Host.name).in_(targets)))}
        nxt: dict[str, str | None] = {}
        for name in targets:
            try:
                stage = states.position(rows[name], states.REBUILD).next_stage
            except RefusedError:
                continue  # the wave reports it
            if stage in states.CONTAIN:
                nxt[name] = stage
        failed: dict[str, str] = {}
        self.contained_in_check: set[str] = set()
        if nxt:
            with claim_waves(self.store, [containment.CONTAINMENT_WAVE], self.o.runs_dir) as claim:
                outer, self.claim = self.claim, claim
                try:
                    failed = self._contain_stages(nxt)
                finally:
                    self.claim = outer
        self._request_containment(report, failed)

    def _contain_stages(self, nxt: dict[str, str | None]) -> dict[str, str]:
        wave = containment.CONTAINMENT_WAVE
        if not self.o.check:
            resumed = resume.mark_interrupted(self.store, self.o.operator, [wave])
            if resumed and self.observer:
                self.observer.note(f"resuming containment: {resumed} stage run(s) were interrupted")
        if self.observer:
            self.observer.note(f"containment: {len(nxt)} host(s), every wave at once")
            self.observer.wave(wave, sorted(nxt))
        size = concurrency.contain_batch(self.o.forks, self.o.contain_forks)
        failed: dict[str, str] = {}
        for stage in states.CONTAIN:
            group = sorted(h for h, s in nxt.items() if s == stage)
            if not group:
                continue
            if lifecycle.stage(stage).destructive and not self.o.check and not self.confirmed:
                self._confirm()
            for batch in concurrency.batches(group, size):
                for host, result in self._stage(wave, stage, list(batch)).items():
                    if result.ok:
                        nxt[host] = lifecycle.next_on(states.CONTAIN, stage)
                        if self.o.check and stage == states.CONTAIN[-1]:
                            self.contained_in_check.add(host)
                    else:
                        nxt[host] = None
                        if stage == states.CONTAIN[0] and not result.interrupted:
                            failed[host] = f"isolate failed: {_reason(result)}"
        return failed

    def _request_containment(self, report: RunReport, failed: dict[str, str]) -> None:
        """The network team's list for the hosts nobody could isolate (see `containment.unisolated`).
        Not in check mode."""
        if self.o.check:
            return
        needed = containment.unisolated(self.view.members, self.decisions, self.inventory, failed)
        asked, files = containment.request_unisolated(
            self.store,
            self.o.operator,
            self.plan_id,
            needed,
            self.inventory,
            self.root / "containment",
            utcnow(),
        )
        report.containment_requested = asked
        report.containment_files = [str(f) for f in files]
        if files and self.observer:
            self.observer.note(
                f"containment requested for {len(asked)} host(s) nobody could isolate: give the network team {files[0]}"
            )

    def _waves(self, report: RunReport) -> str | None:
        """Every wave's hosts through `lifecycle.pipeline`: stage runs start as workers and capacity
        allow, several at once, each in a thread of its own (only ansible-runner's run: the database,
        the hooks and the decisions stay on this thread). Returns why the run stopped, if it did."""
        order = {name: i for i, name in enumerate(self.members)}
        hosts = sorted(
            (n for n, m in self.members.items() if m.wave in self.waves),
            key=lambda n: (self.members[n].wave or 0, order[n]),
        )
        nxt = self._positions(hosts, report)
        if self.o.check:  # contained in check mode just before: the rehearsal goes on from wipe
            nxt = {
                h: AFTER_CONTAINMENT if h in self.contained_in_check and s in states.CONTAIN else s
                for h, s in nxt.items()
            }
        self.wave_size = {w: 0 for w in self.waves}
        self.wave_failed: dict[int, set[str]] = {w: set() for w in self.waves}
        for host in hosts:
            wave = self.members[host].wave or 0
            self.wave_size[wave] += 1
            if report.hosts.get(host) and report.hosts[host].outcome == "refused":
                self.wave_failed[wave].add(host)
                nxt[host] = None
        for wave in self.waves:
            of_wave = {h: s for h, s in nxt.items() if self.members[h].wave == wave}
            for host, (stage, reason) in self._hold_before_wave(wave, of_wave).items():
                nxt[host] = None
                report.hosts[host] = HostReport(
                    host, self.members[host].action, wave, "", stage, reason, "held"
                )
        work = []
        for host in hosts:
            stage = nxt[host]
            if stage is None:
                continue
            path, member, inv = self.paths[host], self.members[host], self.inventory.hosts[host]
            remaining = path[path.index(stage) :]
            # Hosts of one kind take the same time at each stage: the same stages, and the same method
            # at each stage whose time depends on one (as the planner's durations count them).
            methods = {"reimage_method": inv.reimage_method, "restore_method": inv.restore_method}
            work.append(
                pipeline.Work(
                    name=host,
                    wave=member.wave or 0,
                    stages=remaining,
                    kind=(
                        remaining,
                        tuple(
                            methods.get(lifecycle.METHOD_STAGES[s])
                            for s in remaining
                            if s in lifecycle.METHOD_STAGES
                        ),
                    ),
                    resources=pipeline.resources(
                        member.action, inv.tier, inv.site, inv.reimage_method, inv.restore_method
                    ),
                )
            )
        # Asked before any stage run starts: a refusal then leaves no run of another wave half done.
        destructive = any(lifecycle.stage(stage).destructive for w in work for stage in w.stages)
        if destructive and not self.o.check and not self.confirmed:
            self._confirm()
        params = self.view.plan.params or {}
        limits = pipeline.limits_of(params.get("max_wave_size"), params.get("capacities") or {})
        self.report = report
        flow = pipeline.Pipeline(work, limits, self.o.forks, self._park)
        stopped: str | None = None
        announced: set[int] = set()
        with ThreadPoolExecutor(max_workers=self.o.forks) as pool, self._cancel_on_signals():
            running: dict[Future[runner.StageOutcome], tuple[pipeline.Launch, _Started]] = {}
            while True:
                launched = flow.launches()
                for launch in launched:
                    if launch.wave not in announced:
                        announced.add(launch.wave)
                        report.waves.append(launch.wave)
                        if self.observer:
                            # The hosts with work in this run: those recovered before are not.
                            self.observer.wave(launch.wave, [w.name for w in work if w.wave == launch.wave])
                    started = self._start(launch)
                    if started.spec is None:  # nothing to run: skipped out of band or refused
                        stopped = self._ended(flow, launch, started, {}) or stopped
                        continue
                    future = pool.submit(
                        runner.run_stage, started.spec, self.store, self.observer, self.cancel.is_set
                    )
                    running[future] = (launch, started)
                if launched:
                    continue  # those that ended at once (skipped, refused) may have freed the next
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    launch, started = running.pop(future)
                    stopped = self._ended(flow, launch, started, future.result().hosts) or stopped
        if self.cancel.is_set():
            return "interrupted: the stage runs under way were stopped; run again to resume"
        # A dependency that failed or stopped after the last recheck: the reasons say where it ended.
        if flow.parked:
            self._park(flow.parked)
        return stopped

    def _park(self, hosts: Sequence[str]) -> set[str]:
        """Of these hosts at reconnect, those whose dependencies are not recovered: parked (see `_await`)."""
        waiting = self._waiting(list(hosts))
        for wave in sorted({self.members[h].wave or 0 for h in waiting}):
            self._await(wave, {h: r for h, r in waiting.items() if self.members[h].wave == wave}, self.report)
        return set(waiting)

    def _start(self, launch: pipeline.Launch) -> _Started:
        """Everything before a stage run's playbook, on this thread: out-of-band skips, the hooks'
        refusals, the "-ing" states and StageRun rows."""
        wave, stage = launch.wave, launch.stage
        hosts = list(launch.hosts)
        skipped = [h for h in hosts if h in self.out_of_band and lifecycle.stage(stage).own_connection]
        if skipped:
            self._skip(wave, stage, skipped)
            hosts = [h for h in hosts if h not in skipped]
        started = _Started(skipped=skipped)
        if not hosts:
            return started
        hooks = [self.hooks[kind] for kind in lifecycle.stage(stage).records]
        started.hooks = hooks
        # Every attempt: a hook's choices (the restore point) serve the attempt that follows at once,
        # and other stage runs start in between. A retried restore keeps the point it recorded.
        hosts = self._refuse_before(wave, stage, hosts, hooks, started.results)
        if not hosts:
            return started
        started.prepared = self._prepare(wave, stage, hosts, launch.attempt, hooks)
        started.spec = started.prepared.spec
        started.results.update(started.prepared.refused)
        return started

    def _ended(
        self, flow: pipeline.Pipeline, launch: pipeline.Launch, started: _Started, ran: dict[str, HostResult]
    ) -> str | None:
        """After a stage run: commit it, tell the pipeline who goes on, and stop the run when a wave
        fails beyond --max-fail-percentage. Returns why it stopped, if it did."""
        wave, stage = launch.wave, launch.stage
        results = dict(started.results)
        if started.prepared is not None:
            if (
                self.cancel.is_set()
            ):  # cut off by Ctrl-C: the host stays where it was, the next run repeats it
                ran = {
                    h: r
                    if r.ok
                    else HostResult(False, r.task, "stopped by the operator (Ctrl-C)", interrupted=True)
                    for h, r in ran.items()
                }
            results.update(self._collect(wave, stage, launch.attempt, started.prepared, ran))
        ok = set(started.skipped) | {h for h, r in results.items() if r.ok}
        retry = {
            h
            for h, r in results.items()
            if not r.ok
            and not r.interrupted
            and not self.o.check
            and h not in self.held
            and launch.attempt <= self.o.retries
        }
        flow.ended(launch, ok, retry)
        final = {h: r for h, r in results.items() if h not in retry}
        if self.observer and final:
            self.observer.stage_end(wave, stage, final)
        report = self.report
        for host, result in final.items():
            member = self.members[host]
            if result.ok:
                if stage == lifecycle.RECONNECT:
                    report.hosts.pop(host, None)  # parked earlier in this run, now recovered
                elif self.o.check and self.paths[host][-1] == stage:
                    report.hosts[host] = HostReport(host, member.action, wave, "", None, None, "checked")
            elif result.interrupted:
                report.hosts[host] = HostReport(
                    host, member.action, wave, "", stage, result.message, "interrupted"
                )
            elif host in self.held:
                report.hosts[host] = HostReport(host, member.action, wave, "", stage, result.message, "held")
            else:
                self.wave_failed[wave].add(host)
                if self.o.check or stage == lifecycle.RECONNECT:
                    report.hosts[host] = HostReport(
                        host, member.action, wave, "", stage, result.message, "failed"
                    )
        if self.cancel.is_set():
            flow.stop()
            return None
        counted = self.wave_failed[wave] - self.held
        share = 100.0 * len(counted) / max(1, self.wave_size[wave])
        if counted and share > self.o.max_fail_percentage and not flow.stopped:
            flow.stop()
            return (
                f"wave {wave} stopped after {stage}: {len(counted)} of {self.wave_size[wave]} hosts failed "
                f"({share:.0f}% > --max-fail-percentage {self.o.max_fail_percentage:g})"
            )
        return None

    @contextlib.contextmanager
    def _cancel_on_signals(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM stops every stage run under way (ansible-runner's own handler only
        exists on the main thread, and the runs are on others); the hosts stay where they were."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in saved:
            signal.signal(sig, lambda *_: self.cancel.set())
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

    def _hold_before_wave(self, wave: int, nxt: dict[str, str | None]) -> dict[str, tuple[str, str]]:
        """Before anything destructive: the hosts a stage further on would hold for a person (no
        restore point can be chosen) are held now, never wiped first. Returns host -> (stage, why)."""
        held: dict[str, tuple[str, HostResult]] = {}
        for hook in self.hooks.values():
            held.update(hook.hold_before_wave(nxt))
        for stage in sorted({s for s, _ in held.values()}, key=states.STAGE_ORDER.index):
            self._fail_without_running(wave, stage, {h: r for h, (s, r) in held.items() if s == stage})
        self.held.update(held)
        return {h: (s, str(r.message)) for h, (s, r) in held.items()}

    def _confirm(self) -> None:
        pending_waves = self.waves or sorted({m.wave for m in self.members.values() if m.wave is not None})
        rebuild = sorted(
            h for h, p in self.paths.items() if p is states.REBUILD and self.members[h].wave in pending_waves
        )
        verify = sorted(
            h for h, p in self.paths.items() if p is states.VERIFY and self.members[h].wave in pending_waves
        )
        assert self.o.confirm is not None
        if not self.o.confirm(Pending(pending_waves, rebuild, verify)):
            raise RefusedError("not confirmed: nothing destructive was run")
        self.confirmed = True
        with self.store.write() as session:
            audit.record(
                session,
                self.o.operator,
                "run confirm",
                details={"plan": self.plan_id, "rebuild": len(rebuild)},
            )

    # --- one stage -----------------------------------------------------------------------------

    def _stage(self, wave: int, stage: str, hosts: list[str]) -> dict[str, HostResult]:
        """A containment stage over `hosts` (one batch), retried up to --retries times for the hosts
        that fail; the waves go through `_waves`."""
        final: dict[str, HostResult] = {}
        hooks = [self.hooks[kind] for kind in lifecycle.stage(stage).records]
        remaining = self._refuse_before(wave, stage, hosts, hooks, final)
        for attempt in range(1, self.o.retries + 2):
            if not remaining:
                break
            results = self._attempt(wave, stage, remaining, attempt, hooks)
            final.update(results)
            remaining = [h for h, r in results.items() if not r.ok and not r.interrupted and not self.o.check]
        if self.observer:
            self.observer.stage_end(wave, stage, final)
        return final

    def _refuse_before(
        self, wave: int, stage: str, hosts: list[str], hooks: list[Hook], results: dict[str, HostResult]
    ) -> list[str]:
        """The hosts the stage's hooks let run; the others are held for a person, failed without
        running, their results added to `results`."""
        for hook in hooks:
            refused = hook.before(hosts)
            if refused:
                self.held.update(refused)
                self._fail_without_running(wave, stage, refused)
                results.update(refused)
                hosts = [h for h in hosts if h not in refused]
        return hosts

    def _attempt(
        self, wave: int, stage: str, hosts: list[str], attempt: int, hooks: list[Hook]
    ) -> dict[str, HostResult]:
        prepared = self._prepare(wave, stage, hosts, attempt, hooks)
        ran = runner.run_stage(prepared.spec, self.store, self.observer).hosts if prepared.spec else {}
        return self._collect(wave, stage, attempt, prepared, ran)

    def _prepare(self, wave: int, stage: str, hosts: list[str], attempt: int, hooks: list[Hook]) -> _Prepared:
        """One attempt up to its playbook: committed "-ing" states and StageRun rows, the hooks'
        inputs, and what ansible-runner is to run (None when every host was refused)."""
        self.claim.verify()
        self.attempts += 1
        private = self.root / f"{self.attempts:03d}-w{wave}-{stage}-a{attempt}"
        private_lib.mkdir(private)
        run_ids, refused = self._begin(wave, stage, hosts, private, hooks)
        running = [h for h in hosts if h in run_ids and h not in refused]
        if self.observer:
            self.observer.stage(wave, stage, attempt, running)
        where = placement.placement(self.nodes, self.inventory, stage, running)
        for name in running:
            private_lib.mkdir(private / "staging" / name, exist_ok=True)
        for hook in hooks:
            hook.inputs(running, private)
        spec = None
        if running:
            spec = runner.StageSpec(
                stage=stage,
                playbook=self.o.playbooks / lifecycle.stage(stage).playbook,
                inventory=self.o.inventory,
                hosts=running,
                extravars=extravars.build(self, wave, stage, attempt, running, private, hooks),
                private_dir=private,
                forks=min(len(running), self.o.forks),
                check=self.o.check,
                stage_run_ids={h: run_ids[h] for h in running},
                placement=where,
            )
        return _Prepared(private, run_ids, refused, hooks, where, spec)

    def _collect(
        self, wave: int, stage: str, attempt: int, prepared: _Prepared, ran: dict[str, HostResult]
    ) -> dict[str, HostResult]:
        """One attempt after its playbook: the hooks' reading of it, then its results committed."""
        results: dict[str, HostResult] = dict(prepared.refused)
        if prepared.spec is not None:
            results.update(ran)
            for hook in prepared.hooks:
                hook.after(results, prepared.private)
        self._end(
            wave, stage, attempt, results, prepared.run_ids, prepared.private, prepared.hooks, prepared.where
        )
        return results

    def _begin(
        self, wave: int, stage: str, hosts: list[str], private: Path, hooks: list[Hook]
    ) -> tuple[dict[str, int], dict[str, HostResult]]:
        """Commit the "-ing" states, StageRun rows (and what the stage records on entry, its restore
        points) before the playbook starts."""
        started: dict[str, StageRun] = {}
        refused: dict[str, HostResult] = {}
        with self.store.write() as session:
            rows = host_store.locked(session, hosts)
            counts = dict(
                session.exec(
                    select(StageRun.host_name, func.count())
                    .where(col(StageRun.host_name).in_(hosts), StageRun.stage == stage)
                    .group_by(StageRun.host_name)
                ).all()
            )
            for name in hosts:
                row = rows[name]
                run = StageRun(
                    plan_id=self.plan_id,
                    wave=wave,
                    host_name=name,
                    stage=stage,
                    attempt=counts.get(name, 0) + 1,
                    status="running",
                    check_mode=self.o.check,
                    runner_dir=str(private),
                )
                if not self.o.check:
                    try:
                        states.begin(row, stage, self.paths[name])
                    except RefusedError as exc:
                        refused[name] = HostResult(False, None, f"refused: {exc}")
                        run.status, run.message, run.finished_at = "failed", str(exc), utcnow()
                        session.add(run)
                        continue
                    session.add(row)
                    for hook in hooks:
                        hook.on_begin(session, name)
                session.add(run)
                started[name] = run
            session.flush()  # once for the stage: one statement per host would cost seconds at 1,000 hosts
            run_ids = {name: int(run.id or 0) for name, run in started.items()}
        return run_ids, refused

    def _end(
        self,
        wave: int,
        stage: str,
        attempt: int,
        results: dict[str, HostResult],
        run_ids: dict[str, int],
        private: Path,
        hooks: list[Hook],
        placement: dict[str, nodes.Node],
    ) -> None:
        now = utcnow()
        with self.store.write() as session:
            rows = host_store.locked(session, list(run_ids))
            runs = {
                r.id: r
                for r in session.exec(select(StageRun).where(col(StageRun.id).in_(list(run_ids.values()))))
            }
            for name, run_id in run_ids.items():
                run = runs[run_id]
                if run.status != "running":
                    continue
                result = results[name]
                run.status = "ok" if result.ok else "interrupted" if result.interrupted else "failed"
                run.finished_at = now
                run.task, run.message = result.task, result.message
                session.add(run)
                if self.o.check or result.interrupted:  # interrupted: stays "-ing", the next run repeats it
                    continue
                row = rows[name]
                if result.ok:
                    states.finish(row, stage)
                    for hook in hooks:
                        hook.on_finish(session, name, run_id, now)
                else:
                    states.fail(row, stage, _reason(result))
                session.add(row)
            audit.record(
                session,
                self.o.operator,
                "run stage",
                details={
                    "plan": self.plan_id,
                    "wave": wave,
                    "stage": stage,
                    "attempt": attempt,
                    "check": self.o.check,
                    "runner_dir": str(private),
                    "ok": sorted(h for h, r in results.items() if r.ok),
                    "failed": {
                        h: _reason(r) for h, r in sorted(results.items()) if not r.ok and not r.interrupted
                    },
                    "interrupted": {h: _reason(r) for h, r in sorted(results.items()) if r.interrupted},
                    "nodes": {h: n.name for h, n in sorted(placement.items())},
                },
            )

    def _fail_without_running(self, wave: int, stage: str, failed: dict[str, HostResult]) -> None:
        """Hosts refused before their playbook (no clean restore point): entered and failed at once."""
        with self.store.write() as session:
            rows = host_store.locked(session, list(failed))
            for name, result in failed.items():
                row = rows[name]
                session.add(
                    StageRun(plan_id=self.plan_id, wave=wave, host_name=name, stage=stage, status="failed",
                             check_mode=self.o.check, finished_at=utcnow(), message=result.message)
                )  # fmt: skip
                if not self.o.check:
                    states.begin(row, stage, self.paths[name])
                    states.fail(row, stage, _reason(result))
                    session.add(row)
            audit.record(
                session,
                self.o.operator,
                "run stage",
                details={"plan": self.plan_id, "wave": wave, "stage": stage, "check": self.o.check,
                         "failed": {h: _reason(r) for h, r in failed.items()}},
            )  # fmt: skip


def _reason(result: HostResult) -> str:
    task = f"{result.task}: " if result.task else ""
    return f"{task}{result.message or 'failed'}"


def run(store: Store, options: RunOptions) -> RunReport:
    """Run the approved plan (see the module docstring); raises RefusedError when it may not."""
    return Engine(store, options).run()
