"""`orchestrator run` (the approved plan through the stage playbooks) and `orchestrator contain`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from orchestrator import inventory as inventory_lib
from orchestrator import lifecycle
from orchestrator.cli.context import AppContext
from orchestrator.cli.options import (
    console,
    emit_json,
    err_console,
    inventory_option,
    json_option,
    pass_app,
)
from orchestrator.errors import HostsFailed, OrchestratorError
from orchestrator.execution import DEFAULT_EVIDENCE_PATH
from orchestrator.safe_text import optional, plain, text
from orchestrator.triage import DEFAULT_TIMEOUT

# The engine (with SQLAlchemy and the models) is imported inside the commands: `run` first starts
# loading the inventory in a helper process, which then overlaps those imports.
if TYPE_CHECKING:
    from orchestrator.execution import engine
    from orchestrator.execution.runner import HostResult


class ProgressObserver:
    """Progress bars per wave and per stage run, advanced by runner events as hosts finish. Several
    waves and stage runs progress at once (the engine overlaps them), so each host's events go to the
    bar of the stage run it is in.

    Host names, task names and failure messages are shown as plain text (`safe_text`): the bars'
    descriptions are rich markup, so they are escaped too. Runner events arrive on the runs' writer
    threads; rich's Progress takes its own lock."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.wave_tasks: dict[int, TaskID] = {}
        self.wave_of: dict[str, int] = {}
        self.ended: set[str] = set()
        self.host_task: dict[str, TaskID] = {}  # host -> the bar of the stage run it is in
        self.run_hosts: dict[TaskID, set[str]] = {}
        self.parked: set[str] = set()  # isolated, awaiting dependencies (maybe before their wave's bar)

    def wave(self, number: int, hosts: list[str]) -> None:
        self.wave_tasks[number] = self.progress.add_task(f"wave {number}", total=len(hosts))
        for host in hosts:
            self.wave_of[host] = number
            self.ended.discard(host)
        self._count_parked({number})

    def stage(self, wave: int, stage: str, attempt: int, hosts: list[str]) -> None:
        retry = f" (attempt {attempt})" if attempt > 1 else ""
        label = f"  {stage}{retry}" if wave == 0 else f"  w{wave} {stage}{retry}"
        task = self.progress.add_task(label, total=len(hosts))
        self.run_hosts[task] = set(hosts)
        for host in hosts:
            self._leave(host)  # a retried host's previous attempt
            self.host_task[host] = task

    def task(self, host: str, task: str) -> None:
        bar = self.host_task.get(host)
        if bar is not None and len(self.run_hosts.get(bar, ())) == 1:  # the task of a run of one host
            self.progress.update(bar, description="  " + escape(plain(task[:40])))

    def host_done(self, host: str, ok: bool) -> None:
        bar = self.host_task.get(host)
        if bar is not None:
            self.progress.advance(bar)

    def _leave(self, host: str) -> None:
        bar = self.host_task.pop(host, None)
        if bar is not None and bar in self.run_hosts:
            self.run_hosts[bar].discard(host)
            if not self.run_hosts[bar]:
                del self.run_hosts[bar]
                self.progress.remove_task(bar)

    def stage_end(self, wave: int, stage: str, results: dict[str, HostResult]) -> None:
        for host in results:
            self._leave(host)
        failed = [h for h, r in results.items() if not r.ok]
        for host in failed:
            ended = "interrupted" if results[host].interrupted else "failed"
            line = Text.assemble(
                text(host, style="red"), f": {stage} {ended}: ", optional(results[host].message)
            )
            self.progress.console.print(line)
        # A host's way ends at reconnect, or (containment, "wave 0") once its evidence is collected.
        finished = list(failed)
        if stage == lifecycle.RECONNECT or (wave == 0 and stage == lifecycle.CONTAIN[-1]):
            finished += [h for h, r in results.items() if r.ok]
        for host in finished:
            self._end(host, wave)
        if stage == lifecycle.RECONNECT:
            self.parked -= set(results)
            self._count_parked({wave})

    def awaiting(self, hosts: list[str]) -> None:
        """Parked hosts have done this run's work for them: their wave's bar counts them, and says how
        many wait (a "2/6" bar that never moves looks stuck)."""
        self.parked |= set(hosts)
        self._count_parked({self.wave_of[h] for h in hosts if h in self.wave_of})

    def _end(self, host: str, wave: int) -> None:
        bar = self.wave_tasks.get(self.wave_of.get(host, wave))
        if bar is not None and host not in self.ended:
            self.ended.add(host)
            self.progress.advance(bar)

    def _count_parked(self, waves: set[int]) -> None:
        for wave in waves:
            bar = self.wave_tasks.get(wave)
            if bar is None:
                continue
            parked = [h for h in self.parked if self.wave_of.get(h) == wave]
            for host in parked:
                self._end(host, wave)
            waiting = f" ({len(parked)} awaiting dependencies)" if parked else ""
            self.progress.update(bar, description=f"wave {wave}{waiting}")

    def note(self, message: str) -> None:
        self.progress.console.print(text(message))


def _confirm(pending: engine.Pending) -> bool:
    click.echo(
        f"About to REBUILD {len(pending.rebuild)} host(s) (isolate, collect evidence, wipe, reimage, restore) "
        f"and verify {len(pending.verify)} in wave(s) {', '.join(map(str, pending.waves))}.",
        err=True,
    )
    shown = plain(", ".join(pending.rebuild[:10]) + (" ..." if len(pending.rebuild) > 10 else ""))
    if shown:
        click.echo(f"Rebuilt: {shown}", err=True)
    return click.confirm("Wipe and rebuild these hosts?", default=False, err=True)


@click.command("run")
@inventory_option
@click.option("--wave", type=int, metavar="N", help="Run wave N only (what it depends on reconnects first).")
@click.option(
    "--all",
    "all_waves",
    is_flag=True,
    help="Run every wave: in plan order, overlapping within the capacity limits.",
)
@click.option("--check", is_flag=True, help="Ansible check mode for every stage: change nothing on any host.")
@click.option(
    "--forks",
    type=click.IntRange(1, 500),
    metavar="N",
    help="Hosts worked on at once, shared by the stage runs of every wave (default: the plan's 'plan --forks', which it was estimated for).",
)
@click.option(
    "--max-fail-percentage",
    type=click.FloatRange(0, 100),
    default=25.0,
    show_default=True,
    help="Start no further stage run (in any wave) once more than this share of a wave's hosts failed.",
)
@click.option(
    "--retries", type=click.IntRange(0, 10), default=1, show_default=True, help="Retries per stage."
)
@click.option(
    "--contain-forks",
    type=click.IntRange(1, 1000),
    metavar="N",
    help="Hosts contained (isolated, evidence collected) at once, before the waves (default: --forks).",
)
@click.option("--yes", is_flag=True, help="Do not ask before the first destructive stage.")
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Where each stage run's ansible-runner artifacts are kept.",
)
@click.option(
    "--evidence-host", metavar="HOST", help="Evidence store (default: first host of group evidence_store)."
)
@click.option("--evidence-path", default=DEFAULT_EVIDENCE_PATH, show_default=True, help="Directory on it.")
@click.option(
    "--pack", "packs", multiple=True, metavar="FILE", help="Extra check pack for scans (repeatable)."
)
@click.option(
    "--scan-timeout",
    type=click.FloatRange(1, 86400),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds per host for the validate stage's triage re-check (as triage --timeout).",
)
@click.option(
    "--node",
    metavar="HOST",
    help="Run every stage on this execution node (an inventory host reached over SSH) instead of each "
    "host's recovery_execution_node.",
)
@json_option
@pass_app
@click.pass_context
def run(
    ctx: click.Context,
    app: AppContext,
    inventory: tuple[str, ...],
    wave: int | None,
    all_waves: bool,
    check: bool,
    forks: int | None,
    max_fail_percentage: float,
    retries: int,
    contain_forks: int | None,
    yes: bool,
    runs_dir: Path,
    evidence_host: str | None,
    evidence_path: str,
    packs: tuple[str, ...],
    scan_timeout: float,
    node: str | None,
    as_json: bool,
) -> None:
    """Run the approved plan: containment first, then each wave's stages, resumable after a crash.

    Containment comes first and waits for nothing: every host the plan rebuilds, whatever its wave,
    is isolated and its evidence collected (as 'orchestrator contain' does), and the hosts nobody can
    reach are listed for the network team. Then the waves, in plan order but not one after the
    other: a host starts as soon as a worker (--forks) and its capacity units (plan --capacity,
    --max-wave-size) are free, so several stage runs of several waves work at once. A host whose
    dependencies are not recovered is still rebuilt and validated, then awaits them isolated, and
    reconnects once they are. Ctrl-C stops the stage runs under way: run again to resume.

    Hosts with a `recovery_execution_node` (or all, with --node) run their stages on that node
    through ansible-runner's streaming mode (`ansible-runner worker` over SSH); their events arrive
    here as for a local run. A node lost mid-stage leaves its hosts interrupted: run again.

    Exit 1 when some hosts failed or were interrupted; 2 when refused (no approved or a changed
    plan, not confirmed, a wave held by another run).

    \b
    Examples:
      orchestrator run -i lab-data/inventory --all --check
      orchestrator run -i inventory/hospital --wave 1 --forks 20 --retries 2
      orchestrator run -i lab-data/inventory --all --yes --json
      orchestrator run -i inventory/hospital --wave 2 --node exec-north-01
    """
    if (wave is None) == (not all_waves):
        raise OrchestratorError("give exactly one of --wave N or --all")
    _execute(
        app,
        inventory,
        as_json,
        wave=wave,
        check=check,
        forks=forks,
        max_fail_percentage=max_fail_percentage,
        retries=retries,
        contain_forks=contain_forks,
        runs_dir=runs_dir,
        evidence_host=evidence_host,
        evidence_path=evidence_path,
        packs=list(packs),
        scan_timeout=scan_timeout,
        node=node,
        confirm=None if (yes or check) else _confirm,
    )


@click.command("contain")
@inventory_option
@click.option("--check", is_flag=True, help="Ansible check mode: change nothing on any host.")
@click.option(
    "--forks",
    type=click.IntRange(1, 1000),
    metavar="N",
    help="Hosts contained at once (default: the plan's 'plan --forks').",
)
@click.option(
    "--retries", type=click.IntRange(0, 10), default=1, show_default=True, help="Retries per stage."
)
@click.option("--yes", is_flag=True, help="Do not ask before isolating.")
@click.option(
    "--runs-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Where each stage run's artifacts (and the network team's request) are kept.",
)
@click.option(
    "--evidence-host", metavar="HOST", help="Evidence store (default: first host of group evidence_store)."
)
@click.option("--evidence-path", default=DEFAULT_EVIDENCE_PATH, show_default=True, help="Directory on it.")
@json_option
@pass_app
def contain(
    app: AppContext,
    inventory: tuple[str, ...],
    check: bool,
    forks: int | None,
    retries: int,
    yes: bool,
    runs_dir: Path,
    evidence_host: str | None,
    evidence_path: str,
    as_json: bool,
) -> None:
    """Contain now: isolate every host the approved plan rebuilds and collect its evidence, all waves
    at once; list the hosts nobody can reach for the network team (CSV and nftables, in the run's
    directory) and record them as "containment requested". 'orchestrator run' does this first anyway.

    \b
    Examples:
      orchestrator contain -i lab-data/inventory --yes
      orchestrator contain -i inventory/hospital --forks 200 --json
    """
    _execute(
        app,
        inventory,
        as_json,
        contain_only=True,
        check=check,
        forks=forks,
        contain_forks=forks,
        retries=retries,
        max_fail_percentage=100.0,
        runs_dir=runs_dir,
        evidence_host=evidence_host,
        evidence_path=evidence_path,
        confirm=None if (yes or check) else _confirm,
    )


def _execute(app: AppContext, inventory: tuple[str, ...], as_json: bool, **fields: Any) -> None:
    """Build the engine's options, run it under progress bars, render, and exit 1 if hosts failed."""
    with (
        inventory_lib.Prefetch(inventory) as prefetched,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console(),
            transient=False,
            disable=as_json,
        ) as progress,
    ):
        from orchestrator.execution import engine, preflight

        options = engine.RunOptions(
            inventory=list(inventory),
            prefetched=prefetched,
            operator=app.operator,
            observer=ProgressObserver(progress),
            **fields,
        )
        try:
            report = engine.run(app.store(), options)
        except preflight.PreflightError as exc:
            missing = exc.missing
        else:
            missing = []
    if missing:  # one line per missing thing, then exit 2 (nothing started)
        for finding in missing:
            click.echo(f"error: {finding}", err=True)
        raise click.exceptions.Exit(2)
    if as_json:
        emit_json(report.to_dict())
    else:
        _render(report)
    if report.failed or report.interrupted or report.held:
        parts = [f"{len(report.failed)} host(s) failed"] if report.failed else []
        if report.held:
            parts.append(f"{len(report.held)} held for a person's restore-point decision")
        if report.interrupted:
            parts.append(f"{len(report.interrupted)} interrupted (run again to resume them)")
        raise HostsFailed(f"{', '.join(parts)}: see 'orchestrator status' and {report.runs_dir}")


def _render(report: engine.RunReport) -> None:
    title = f"plan {report.plan_id}{' (check mode: nothing changed)' if report.check else ''}"
    table = Table(title=title)
    for column in ("host", "action", "wave", "state", "outcome", "reason"):
        table.add_column(column, overflow="fold")
    for h in sorted(report.hosts.values(), key=lambda h: (h.wave or 0, h.name)):
        cells = (h.name, h.action, h.wave, h.state or "", h.outcome, h.reason or "")
        table.add_row(*(text(c) for c in cells))
    console().print(table)
    if report.containment_requested:
        click.echo(
            f"containment requested for {len(report.containment_requested)} host(s) nobody could isolate "
            f"({', '.join(sorted(report.containment_requested)[:8])}): give the network team "
            f"{report.containment_files[0]} (nftables: {report.containment_files[1]})",
            err=True,
        )
    awaiting = sorted(h.name for h in report.hosts.values() if h.outcome == "awaiting")
    if awaiting:
        click.echo(
            f"{len(awaiting)} host(s) rebuilt and validated, isolated until their dependencies are recovered: "
            "see 'orchestrator status' (a person may 'orchestrator host decide HOST --release')",
            err=True,
        )
    if report.stopped:
        click.echo(plain(report.stopped), err=True)
    click.echo(f"artifacts: {plain(report.runs_dir)}", err=True)


commands = [run, contain]
